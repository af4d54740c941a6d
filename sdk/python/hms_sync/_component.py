"""The bridge between a plugin module and the bindings componentize-py generates for its world.

Only importable inside a component being built by ``hms-sync-build``: it imports ``wit_world``
and ``componentize_py_types``, which componentize-py generates from ``wit/sync.wit``. It installs
the engine's ``log`` and ``config`` as the SDK's host, converts the WIT event to
:class:`hms_sync.Event` (so a plugin sees the same types as under the test harness), and makes
the export class componentize-py instantiates (``Transform``, ``Handle`` or ``Resolve``): it runs
the plugin's function through :mod:`hms_sync.run` and converts the SDK's actions and errors to
the WIT's.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from componentize_py_types import Err
from wit_world.imports import config as wit_config
from wit_world.imports import log as wit_log
from wit_world.imports import types as wit

import hms_sync
from hms_sync import Deliver, Emit, Entity, Event, Header, Keep, Merged, PluginError, run

_LEVELS = {
    "trace": wit_log.Level.TRACE,
    "debug": wit_log.Level.DEBUG,
    "info": wit_log.Level.INFO,
    "warn": wit_log.Level.WARN,
    "error": wit_log.Level.ERROR,
}

_KINDS = {
    "invalid-input": wit.ErrorKind.INVALID_INPUT,
    "rejected": wit.ErrorKind.REJECTED,
    "internal": wit.ErrorKind.INTERNAL,
}


class _Engine:
    """The engine's imports, as the SDK's host."""

    @staticmethod
    def log(level: str, message: str) -> None:
        wit_log.log(_LEVELS[level], message)

    @staticmethod
    def get(key: str) -> Any:
        return wit_config.get(key)

    @staticmethod
    def entries() -> Any:
        return [(k, v) for k, v in wit_config.entries()]


_SDK = os.path.dirname(os.path.abspath(hms_sync.__file__))


def _print_traceback(e: BaseException) -> None:
    # The engine records what the plugin writes to stderr, next to the event's `internal` error.
    # The SDK's own frames before the plugin's are left out.
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_SDK):
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb, file=sys.stderr)


hms_sync._set_host(_Engine())
run.on_unexpected = _print_traceback


def _event(e: Any) -> Event:
    return Event(
        id=e.id,
        event_type=e.event_type,
        origin=e.origin,
        key=e.key,
        version=e.version,
        timestamp=e.timestamp,
        content_type=e.content_type,
        payload=bytes(e.payload),
        headers=[Header(h.name, h.value) for h in e.headers],
    )


def _entity(e: Any) -> Entity:
    return Entity(
        key=e.key,
        version=e.version,
        timestamp=e.timestamp,
        event_id=e.event_id,
        content_type=e.content_type,
        payload=bytes(e.payload),
    )


def _err(e: PluginError) -> Err:
    return Err(wit.Error(_KINDS[e.kind], e.message))


def _action(a: Any) -> Any:
    if isinstance(a, Deliver):
        return wit.Action_Deliver(
            wit.Delivery(
                destination=a.destination,
                body=a.body,
                content_type=a.content_type,
                headers=[wit.Header(h.name, h.value) for h in a.headers],
                key=a.key,
                version=a.version,
                timestamp=a.timestamp,
            )
        )
    if isinstance(a, Emit):
        return wit.Action_Emit(
            wit.Emission(
                event_type=a.event_type,
                payload=a.payload,
                content_type=a.content_type,
                key=a.key,
                version=a.version,
                timestamp=a.timestamp,
            )
        )
    return wit.Action_Drop(a.reason)


def _guarded(call: Any) -> Any:
    """Runs ``call``; a PluginError becomes the WIT error, anything else ``internal``."""
    try:
        return call()
    except PluginError as e:
        raise _err(e) from None
    except MemoryError:
        raise  # traps: the engine records its memory limit
    except (Exception, SystemExit) as e:  # a bug in the conversion itself
        raise _err(run.as_plugin_error(e)) from None


def transformer(plugin: Any) -> type:
    """The ``Transform`` export class for a transformer module."""
    from wit_world import exports

    class Transform(exports.Transform):
        def transform(self, event: Any) -> bytes:
            return _guarded(lambda: run.run_transform(plugin, _event(event)))

    return Transform


def handler(plugin: Any) -> type:
    """The ``Handle`` export class for a handler module."""
    from wit_world import exports

    class Handle(exports.Handle):
        def handle(self, event: Any) -> Any:
            return _guarded(lambda: [_action(a) for a in run.run_handle(plugin, _event(event))])

    return Handle


def resolver(plugin: Any) -> type:
    """The ``Resolve`` export class for a resolver module."""
    from wit_world import exports
    from wit_world.exports import resolve as wit_resolve

    def resolution(r: Any) -> Any:
        if isinstance(r, Keep):
            return wit_resolve.Resolution_Keep()
        if isinstance(r, Merged):
            return wit_resolve.Resolution_Merged(r.payload)
        return wit_resolve.Resolution_Replace()

    class Resolve(exports.Resolve):
        def resolve(self, current: Any, incoming: Any) -> Any:
            return _guarded(
                lambda: resolution(run.run_resolve(plugin, _entity(current), _entity(incoming)))
            )

    return Resolve
