"""The HMS Synchronization Engine's SDK for plugins written in Python.

A plugin is a Python module that defines one function: ``transform(event)`` (the transformer
world), ``handle(event)`` (the handler world) or ``resolve(current, incoming)`` (the resolver
world). ``hms-sync-build`` makes it a WebAssembly component (with componentize-py); the test
harness (:mod:`hms_sync.testing`) runs the same module under pytest, without WebAssembly::

    from hms_sync import json

    def transform(event):
        rate = json(event, {"rate": "number", "year": "integer"})
        return {"newRates": rate["rate"], "effectiveYear": rate["year"]}

A transformer returns bytes (sent as they are), a string (sent as UTF-8) or any other JSON
value (sent as JSON). A handler returns a list of actions built with :func:`deliver`,
:func:`emit` and :func:`drop`. A resolver returns :func:`keep`, :func:`replace` or
:func:`merged`. Any of them may raise a :class:`PluginError` (:func:`invalid_input`,
:func:`rejected`, :func:`internal`); any other exception fails the event as ``internal``.
"""

from __future__ import annotations

import dataclasses
import json as _json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

from .rules import (
    check_content_type,
    check_event_type,
    check_header,
    check_name,
    check_version,
)

__all__ = [
    "Header",
    "Event",
    "Entity",
    "Deliver",
    "Emit",
    "Drop",
    "Action",
    "Keep",
    "Replace",
    "Merged",
    "Resolution",
    "ERROR_KINDS",
    "PluginError",
    "invalid_input",
    "rejected",
    "internal",
    "text",
    "json",
    "check",
    "to_bytes",
    "to_json",
    "deliver",
    "emit",
    "drop",
    "keep",
    "replace",
    "merged",
    "log",
    "config",
    "check_event_type",
    "check_name",
    "check_version",
    "check_content_type",
    "check_header",
]

__version__ = "0.1.0"


# ---------------------------------------------------------------------------------------------
# What a plugin receives.


class Header(NamedTuple):
    """One header: a name and a value (a tuple, so ``name, value = header`` works)."""

    name: str
    value: str


@dataclass
class Event:
    """One change event, as the engine accepted and stored it (the WIT ``event``)."""

    #: The id the engine gave the event; it never changes (use it for idempotency keys).
    id: str
    #: The event type, such as ``tax.rate.updated``.
    event_type: str
    #: ``hms`` for the HMS bus, otherwise the external system whose webhook delivered it.
    origin: str
    #: The key of the entity the event is about, when known.
    key: Optional[str]
    #: The version of that entity after the change, when known.
    version: Optional[int]
    #: When the change happened, in Unix milliseconds.
    timestamp: int
    #: The media type of ``payload``.
    content_type: str
    #: The payload, byte for byte as the engine received it.
    payload: bytes
    #: The inbound headers the route lets plugins see, with lower-case names.
    headers: List[Header] = field(default_factory=list)

    def header(self, name: str) -> Optional[str]:
        """The value of the first header called ``name`` (any case), or None."""
        name = name.lower()
        return next((h.value for h in self.headers if h.name.lower() == name), None)


@dataclass
class Entity:
    """One version of an entity, for a resolver (the WIT ``entity``)."""

    key: str
    version: Optional[int]
    timestamp: int
    event_id: str
    content_type: str
    payload: bytes


# ---------------------------------------------------------------------------------------------
# What a plugin returns.


@dataclass
class Deliver:
    """Deliver a body to a destination named in the engine's configuration. Build it with
    :func:`deliver`."""

    _action: ClassVar[str] = "deliver"
    destination: str
    body: bytes
    content_type: Optional[str] = None
    headers: List[Header] = field(default_factory=list)
    key: Optional[str] = None
    version: Optional[int] = None
    timestamp: Optional[int] = None


@dataclass
class Emit:
    """Publish an event on the HMS bus. Build it with :func:`emit`."""

    _action: ClassVar[str] = "emit"
    event_type: str
    payload: bytes
    content_type: Optional[str] = None
    key: Optional[str] = None
    version: Optional[int] = None
    timestamp: Optional[int] = None


@dataclass
class Drop:
    """Do nothing with the event, on purpose; the reason is recorded. Build it with
    :func:`drop`."""

    _action: ClassVar[str] = "drop"
    reason: str


Action = Union[Deliver, Emit, Drop]


@dataclass
class Keep:
    """A resolver's answer: keep the version the destination holds."""


@dataclass
class Replace:
    """A resolver's answer: deliver the incoming version as it is."""


@dataclass
class Merged:
    """A resolver's answer: deliver this payload instead."""

    payload: bytes


Resolution = Union[Keep, Replace, Merged]


# ---------------------------------------------------------------------------------------------
# The engine's `log` and `config` imports, or the test harness's stand-ins for them.


class _Outside:
    """Outside the engine and the harness (a plugin's function called directly), as in the Rust
    and JavaScript SDKs: log lines go to stderr and the configuration is empty."""

    @staticmethod
    def log(level: str, message: str) -> None:
        print(f"[{level}] {message}", file=sys.stderr)

    @staticmethod
    def get(key: str) -> Optional[str]:
        return None

    @staticmethod
    def entries() -> List[Tuple[str, str]]:
        return []


_host: Any = _Outside()


def _set_host(host: Any) -> Any:
    """Installs what :data:`log` and :data:`config` call (``log(level, message)``,
    ``get(key)``, ``entries()``); returns the one it replaces. Used by the component's entry and
    by the test harness."""
    global _host
    previous, _host = _host, host
    return previous


# ---------------------------------------------------------------------------------------------
# Errors.

#: The kinds of error a plugin may report (the WIT ``error-kind``).
ERROR_KINDS = ("invalid-input", "rejected", "internal")


class PluginError(Exception):
    """A failure the plugin reports for one event: the engine records its kind and message.

    ``kind`` is ``invalid-input`` (the event is not what the plugin can read; the message should
    name the field), ``rejected`` (a business rule) or ``internal`` (the plugin failed)."""

    def __init__(self, kind: str, message: str):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind `{kind}`: one of {', '.join(ERROR_KINDS)}")
        self.kind = kind
        self.message = str(message)
        super().__init__(kind, self.message)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def __repr__(self) -> str:
        return f"PluginError({self.kind!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginError):
            return NotImplemented
        return (self.kind, self.message) == (other.kind, other.message)

    def __hash__(self) -> int:
        return hash((self.kind, self.message))


def invalid_input(message: str) -> PluginError:
    """An ``invalid-input`` error: the event is not what the plugin can read."""
    return PluginError("invalid-input", message)


def rejected(message: str) -> PluginError:
    """A ``rejected`` error: the plugin refuses the event on purpose."""
    return PluginError("rejected", message)


def internal(message: str) -> PluginError:
    """An ``internal`` error: the plugin itself failed."""
    return PluginError("internal", message)


# ---------------------------------------------------------------------------------------------
# Reading payloads.


def text(event: Any) -> str:
    """The payload of ``event`` (an :class:`Event` or :class:`Entity`) as text (UTF-8);
    ``invalid-input`` when it is not."""
    try:
        return bytes(event.payload).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_input("the payload is not UTF-8 text") from None


def _no_constant(name: str):
    raise ValueError(f"`{name}` is not a JSON value")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"the number {literal} is out of range")
    return number


def json(event: Any, shape: Optional[Mapping[str, Any]] = None) -> Any:
    """The payload parsed as JSON; ``invalid-input`` when it is not JSON. With ``shape``, the
    fields it names are checked (see :func:`check`) and the error names the first one missing or
    mistyped::

        rate = json(event, {"rate": "number", "year": "integer", "note": "string?"})
    """
    source = text(event)
    try:
        value = _json.loads(source, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as e:
        raise invalid_input(f"the payload is not JSON: {e}") from None
    if shape is not None:
        check(value, shape)
    return value


_FIELD_TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "any": lambda v: True,
}

_ARTICLES = {"integer": "an integer", "object": "an object", "array": "an array", "any": "any value"}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {_json.dumps(value)}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"the string {_json.dumps(shown, ensure_ascii=False)}"
    if isinstance(value, dict):
        return "an object"
    return f"{type(value).__name__} {value!r}"


def check(value: Any, shape: Mapping[str, Any], path: str = "") -> Any:
    """Checks ``value`` against ``shape`` and returns it; ``invalid-input`` naming the first
    field missing or of the wrong type.

    A shape maps field names to ``"string"``, ``"number"``, ``"integer"``, ``"boolean"``,
    ``"object"``, ``"array"`` or ``"any"`` (a trailing ``?`` for an optional field, which may
    also be null), or to a nested shape for an object. ``integer`` is a JSON number without a
    fraction or exponent (``2025``, not ``2025.0``)."""
    if not isinstance(value, dict):
        where = f"the field `{path}`" if path else "the payload"
        raise invalid_input(f"{where} should be an object, found {_describe(value)}")
    for name, want in shape.items():
        full = f"{path}.{name}" if path else name
        optional = isinstance(want, str) and want.endswith("?")
        kind = want[:-1] if optional else want
        if name not in value:
            if optional:
                continue
            raise invalid_input(f"missing field `{full}`")
        found = value[name]
        if isinstance(kind, Mapping):
            check(found, kind, full)
        elif kind not in _FIELD_TYPES:
            raise TypeError(f"unknown field type `{kind}` for `{full}`")
        elif not (optional and found is None) and not _FIELD_TYPES[kind](found):
            expected = _ARTICLES.get(kind, f"a {kind}")
            raise invalid_input(
                f"invalid type for field `{full}`: expected {expected}, found {_describe(found)}"
            )
    return value


# ---------------------------------------------------------------------------------------------
# Bodies.

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> bytes:
    """``value`` as compact JSON bytes (UTF-8, no spaces, as serde_json writes it)."""
    try:
        return _json.dumps(
            value,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise internal(f"cannot encode {type(value).__name__} as JSON: {e}") from None


def to_bytes(body: Any) -> bytes:
    """A body as the engine takes it: bytes as they are, a string as UTF-8, anything else as
    JSON."""
    if isinstance(body, _BYTES_LIKE):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return to_json(body)


def _is_json(body: Any) -> bool:
    return not isinstance(body, (*_BYTES_LIKE, str))


def _content_type(content_type: Any, body: Any) -> Optional[str]:
    if content_type is not None:
        return _string("content type", content_type)
    return "application/json" if _is_json(body) else None


def _string(what: str, value: Any, optional: bool = False) -> Optional[str]:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise internal(f"the {what} must be a string, not {type(value).__name__}")
    return value


def _integer(what: str, value: Any, lo: int, hi: int) -> Optional[int]:
    """An optional WIT integer (``u64`` version, ``s64`` timestamp); ``internal`` when the WIT
    cannot carry it."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise internal(f"the {what} must be an integer, not {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise internal(f"the {what} {value} is out of range: {lo} to {hi}")
    return value


_U64 = (0, (1 << 64) - 1)
_S64 = (-(1 << 63), (1 << 63) - 1)


def _headers(headers: Any) -> List[Header]:
    if headers is None:
        return []
    pairs: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for pair in pairs:
        if hasattr(pair, "name") and hasattr(pair, "value"):
            name, value = pair.name, pair.value
        else:
            name, value = pair
        out.append(Header(str(name), str(value)))
    return out


def deliver(
    destination: str,
    body: Any,
    *,
    content_type: Optional[str] = None,
    headers: Union[Mapping[str, str], Iterable[Tuple[str, str]], None] = None,
    key: Optional[str] = None,
    version: Optional[int] = None,
    timestamp: Optional[int] = None,
) -> Deliver:
    """A delivery of ``body`` to the destination named ``destination``. A body that is not bytes
    or a string is sent as JSON (content type ``application/json`` unless given). ``headers`` is
    a mapping or a list of ``(name, value)``; ``key``, ``version`` and ``timestamp`` default to
    the event's."""
    return Deliver(
        destination=_string("destination", destination),
        body=to_bytes(body),
        content_type=_content_type(content_type, body),
        headers=_headers(headers),
        key=_string("key", key, True),
        version=_integer("version", version, *_U64),
        timestamp=_integer("timestamp", timestamp, *_S64),
    )


def emit(
    event_type: str,
    payload: Any,
    *,
    content_type: Optional[str] = None,
    key: Optional[str] = None,
    version: Optional[int] = None,
    timestamp: Optional[int] = None,
) -> Emit:
    """An event of type ``event_type`` published on the HMS bus. A payload that is not bytes or a
    string is sent as JSON (content type ``application/json`` unless given). ``key``,
    ``version`` and ``timestamp`` default to the handled event's."""
    return Emit(
        event_type=_string("event type", event_type),
        payload=to_bytes(payload),
        content_type=_content_type(content_type, payload),
        key=_string("key", key, True),
        version=_integer("version", version, *_U64),
        timestamp=_integer("timestamp", timestamp, *_S64),
    )


def drop(reason: str) -> Drop:
    """The event dropped on purpose; ``reason`` is recorded."""
    return Drop(str(reason))


def keep() -> Keep:
    """A resolver's answer: keep the version the destination holds."""
    return Keep()


def replace() -> Replace:
    """A resolver's answer: deliver the incoming version as it is."""
    return Replace()


def merged(payload: Any) -> Merged:
    """A resolver's answer: deliver this payload (bytes, a string, or a value sent as JSON)."""
    return Merged(to_bytes(payload))


# ---------------------------------------------------------------------------------------------
# Logging and configuration.


def _part(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        try:
            return _json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            return str(value)
    return str(value)


class _Log:
    """Log lines, recorded by the engine with the plugin's name, version and the event's id.
    Each method joins its arguments with spaces (lists and dicts as JSON)."""

    __slots__ = ()

    def _at(self, level: str, parts: Tuple[Any, ...]) -> None:
        _host.log(level, " ".join(_part(p) for p in parts))

    def trace(self, *parts: Any) -> None:
        self._at("trace", parts)

    def debug(self, *parts: Any) -> None:
        self._at("debug", parts)

    def info(self, *parts: Any) -> None:
        self._at("info", parts)

    def warn(self, *parts: Any) -> None:
        self._at("warn", parts)

    warning = warn

    def error(self, *parts: Any) -> None:
        self._at("error", parts)


class _Config:
    """The route's settings for this plugin (its ``config`` in the engine's configuration)."""

    __slots__ = ()

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The value of ``key``, or ``default`` when the route does not set it."""
        value = _host.get(key)
        return default if value is None else value

    def entries(self) -> List[Tuple[str, str]]:
        """Every key and value the route sets, sorted by key."""
        return [(k, v) for k, v in _host.entries()]


log = _Log()
config = _Config()
