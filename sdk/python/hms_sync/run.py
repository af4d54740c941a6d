"""How a plugin module's function is called and its result turned into what the world returns:
shared by the component's entry (made by ``hms-sync-build``) and the test harness, so a plugin
behaves the same under both.

Every failure comes out as a :class:`~hms_sync.PluginError`: the plugin's own, or ``internal``
for any other exception (its type, message and the line of the plugin that raised it) and for a
result the world cannot return. So a plugin built with the SDK fails an event with a recorded
error rather than crashing the instance. The one exception is ``MemoryError``, left to trap so
the engine records its memory limit (``memory-limit``), as it does for a Rust plugin.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
from typing import Any, Callable, List, Optional

from . import (
    Deliver,
    Drop,
    Emit,
    Header,
    Keep,
    Merged,
    PluginError,
    Replace,
    _headers,
    _integer,
    _S64,
    _string,
    _U64,
    internal,
    to_bytes,
)

__all__ = ["WORLDS", "world_of", "function_of", "as_plugin_error", "run_transform", "run_handle", "run_resolve"]

#: Each world, and the function a plugin module defines for it.
WORLDS = {"transformer": "transform", "handler": "handle", "resolver": "resolve"}

#: Called with every exception that is not a PluginError before it becomes ``internal``; the
#: component's entry sets it to print the traceback to stderr (which the engine records).
on_unexpected: Optional[Callable[[BaseException], None]] = None


def world_of(plugin: Any) -> str:
    """The world a plugin module implements: the one whose function it defines."""
    found = [world for world, fn in WORLDS.items() if callable(getattr(plugin, fn, None))]
    if len(found) != 1:
        names = ", ".join(f"`{fn}`" for fn in WORLDS.values())
        if not found:
            raise TypeError(f"the plugin module defines none of {names}: define one of them")
        both = " and ".join(f"`{WORLDS[w]}`" for w in found)
        raise TypeError(f"the plugin module defines {both}: define exactly one")
    return found[0]


def function_of(plugin: Any, name: str) -> Callable[..., Any]:
    """The function ``name`` of a plugin module (or object); a bare function is taken as it is."""
    fn = getattr(plugin, name, None)
    if callable(fn):
        return fn
    if callable(plugin) and not isinstance(plugin, types.ModuleType):
        return plugin
    raise TypeError(f"the plugin defines no `{name}` function")


def _location(e: BaseException, fn: Callable[..., Any]) -> str:
    """Where in the plugin's own file ``e`` was raised: `` (at app.py:7, in transform)``."""
    code = getattr(fn, "__code__", None)
    home = code.co_filename if code is not None else None
    tb, found = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == home:
            found = tb
        tb = tb.tb_next
    if found is None:
        return ""
    return f" (at {os.path.basename(home)}:{found.tb_lineno}, in {found.tb_frame.f_code.co_name})"


def as_plugin_error(e: BaseException, fn: Optional[Callable[..., Any]] = None) -> PluginError:
    """A failure of the plugin's code as a PluginError: its own, or ``internal`` naming the
    exception (``KeyError: 'rate' (at app.py:7, in transform)``).

    A ``MemoryError`` is raised again, not converted: in a component it then traps, and the
    engine, which refused the memory growth behind it, records ``memory-limit``."""
    if isinstance(e, PluginError):
        return e
    if isinstance(e, MemoryError):
        raise e
    if on_unexpected is not None:
        on_unexpected(e)
    message = str(e)
    what = f"{type(e).__name__}: {message}" if message else type(e).__name__
    return internal(what + (_location(e, fn) if fn is not None else ""))


_CAUGHT = (Exception, SystemExit)


def _call(fn: Callable[..., Any], name: str, args: tuple) -> Any:
    try:
        result = fn(*args)
    except _CAUGHT as e:
        raise as_plugin_error(e, fn) from None
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise internal(
            f"`{name}` returned a coroutine: plugins run synchronously, one event at a time "
            "(define it with `def`, not `async def`)"
        )
    return result


def run_transform(plugin: Any, event: Any) -> bytes:
    """Runs a transformer: its result (bytes, a string, or a value sent as JSON) as bytes."""
    fn = function_of(plugin, "transform")
    result = _call(fn, "transform", (event,))
    if result is None:
        raise internal(
            "`transform` returned None: return the payload (bytes, a string or a JSON value)"
        )
    try:
        return to_bytes(result)
    except _CAUGHT as e:
        raise as_plugin_error(e, fn) from None


def _checked(action: Any, i: int) -> Any:
    """``action`` with its fields checked and normalized, so the component can always return
    it; ``internal`` naming the field when one has the wrong type."""
    try:
        if isinstance(action, Deliver):
            if not isinstance(action.body, (bytes, bytearray, memoryview)):
                raise internal(
                    f"the body must be bytes, not {type(action.body).__name__}: build it with deliver()"
                )
            return dataclasses.replace(
                action,
                destination=_string("destination", action.destination),
                body=bytes(action.body),
                content_type=_string("content type", action.content_type, True),
                headers=[
                    Header(_string("header name", h.name), _string("header value", h.value))
                    for h in _headers(action.headers)
                ],
                key=_string("key", action.key, True),
                version=_integer("version", action.version, *_U64),
                timestamp=_integer("timestamp", action.timestamp, *_S64),
            )
        if isinstance(action, Emit):
            if not isinstance(action.payload, (bytes, bytearray, memoryview)):
                raise internal(
                    f"the payload must be bytes, not {type(action.payload).__name__}: build it with emit()"
                )
            return dataclasses.replace(
                action,
                event_type=_string("event type", action.event_type),
                payload=bytes(action.payload),
                content_type=_string("content type", action.content_type, True),
                key=_string("key", action.key, True),
                version=_integer("version", action.version, *_U64),
                timestamp=_integer("timestamp", action.timestamp, *_S64),
            )
        if isinstance(action, Drop):
            return Drop(_string("drop reason", action.reason))
    except PluginError as e:
        raise internal(f"action {i}: {e.message}") from None
    except (TypeError, ValueError) as e:
        raise internal(f"action {i}: {e}") from None
    raise internal(
        f"action {i} is not an action but {type(action).__name__}: build actions with deliver, "
        "emit and drop"
    )


def run_handle(plugin: Any, event: Any) -> List[Any]:
    """Runs a handler: its result must be a list (or any iterable) of actions built with
    ``deliver``, ``emit`` and ``drop``; None is no action."""
    fn = function_of(plugin, "handle")
    result = _call(fn, "handle", (event,))
    if result is None:
        return []
    if isinstance(result, (str, bytes, bytearray, dict, Deliver, Emit, Drop)) or not hasattr(
        result, "__iter__"
    ):
        raise internal(
            f"`handle` must return a list of actions (built with deliver, emit and drop), "
            f"not {type(result).__name__}"
        )
    try:
        actions = list(result)
    except _CAUGHT as e:
        raise as_plugin_error(e, fn) from None
    return [_checked(action, i) for i, action in enumerate(actions)]


def run_resolve(plugin: Any, current: Any, incoming: Any) -> Any:
    """Runs a resolver: its result must be ``keep()``, ``replace()`` or ``merged(payload)``."""
    fn = function_of(plugin, "resolve")
    result = _call(fn, "resolve", (current, incoming))
    if isinstance(result, (Keep, Replace)):
        return result
    if isinstance(result, Merged):
        if not isinstance(result.payload, (bytes, bytearray, memoryview)):
            raise internal(
                f"the merged payload must be bytes, not {type(result.payload).__name__}: build it "
                "with merged()"
            )
        return Merged(bytes(result.payload))
    raise internal(
        "`resolve` must return keep(), replace() or merged(payload), not "
        f"{type(result).__name__}"
    )
