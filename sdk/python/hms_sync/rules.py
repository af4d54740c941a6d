"""The rules a plugin's output must follow, as the engine applies them when a plugin runs.

The engine's own definition is the Rust crate ``hms-sync-rules`` (``sdk/rules/src/lib.rs``); this
is a port of it, message for message. The test harness (:mod:`hms_sync.testing`) applies these
rules, so a plugin that breaks one fails its own tests with the error code the engine would
record. ``sdk/rules/cases.json`` holds cases every SDK's rules are tested against, so the ports
cannot drift.

Strings are measured in UTF-8 bytes, as the engine measures them. Messages quote values the way
Rust's ``escape_debug`` does (see :func:`escape_debug`).
"""

from __future__ import annotations

import unicodedata
from typing import Iterable, Optional

__all__ = [
    "MAX_NAME_LEN",
    "MAX_EVENT_TYPE_LEN",
    "DEFAULT_OUTPUT_LIMIT",
    "DEFAULT_ACTION_LIMIT",
    "ACTION_OVERHEAD",
    "MAX_LOG_LINE",
    "MAX_LOG_LINES",
    "RESERVED_HEADERS",
    "RESERVED_PREFIXES",
    "Refusal",
    "check_event_type",
    "check_name",
    "check_version",
    "check_content_type",
    "is_reserved_header",
    "check_header",
    "check_destination_header",
    "action_size",
    "check_action",
    "check_size",
    "check_actions",
    "truncate",
    "truncate_log_line",
    "escape_debug",
]

#: The longest entity key, destination name or drop reason a plugin may return, in bytes.
MAX_NAME_LEN = 1024
#: The longest event type, in bytes.
MAX_EVENT_TYPE_LEN = 128
#: The output limit a plugin runs under unless its configuration sets another, in bytes.
DEFAULT_OUTPUT_LIMIT = 1 << 20
#: How many actions a handler may return for one event, unless its limits say otherwise.
DEFAULT_ACTION_LIMIT = 256
#: What each action counts against the output limit beyond its own bytes.
ACTION_OVERHEAD = 64
#: The longest single log line a plugin may write, in bytes; longer ones are cut.
MAX_LOG_LINE = 4096
#: How many log lines a plugin may write per event; later ones are dropped.
MAX_LOG_LINES = 256

#: Headers the engine sets itself (or that HTTP reserves), which a plugin may not set.
RESERVED_HEADERS = (
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "authorization",
    "proxy-authorization",
    "cookie",
    "idempotency-key",
    "user-agent",
)
#: Prefixes of header names the engine owns (Standard Webhooks and the HMS metadata headers).
RESERVED_PREFIXES = ("webhook-", "hms-")

_MAX_U64 = (1 << 64) - 1
_MAX_I64 = (1 << 63) - 1


class Refusal(Exception):
    """Why the engine refuses a plugin's output: ``code`` is what it records
    (``output-too-large`` or ``malformed-output``), ``message`` what it says."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, {self.message!r})"


def _too_large(size: int, limit: int) -> Refusal:
    return Refusal(
        "output-too-large",
        f"the plugin returned {size} bytes of output, over its limit of {limit} bytes",
    )


def _too_many(count: int, limit: int) -> Refusal:
    return Refusal(
        "output-too-large",
        f"the plugin returned {count} actions, over its limit of {limit} per event",
    )


def _malformed(reason: str) -> Refusal:
    return Refusal("malformed-output", f"the plugin returned a malformed result: {reason}")


# ---------------------------------------------------------------------------------------------
# Rust's `escape_debug`, so messages quote values exactly as the engine's do.

# Unicode's Other_Grapheme_Extend: with the categories Mn and Me, it makes Grapheme_Extend,
# which Python's unicodedata does not expose.
_OTHER_GRAPHEME_EXTEND = (
    (0x09BE, 0x09BE), (0x09D7, 0x09D7), (0x0B3E, 0x0B3E), (0x0B57, 0x0B57), (0x0BBE, 0x0BBE),
    (0x0BD7, 0x0BD7), (0x0CC2, 0x0CC2), (0x0CD5, 0x0CD6), (0x0D3E, 0x0D3E), (0x0D57, 0x0D57),
    (0x0DCF, 0x0DCF), (0x0DDF, 0x0DDF), (0x1B35, 0x1B35), (0x200C, 0x200C), (0x302E, 0x302F),
    (0xFF9E, 0xFF9F), (0x1133E, 0x1133E), (0x11357, 0x11357), (0x114B0, 0x114B0),
    (0x114BD, 0x114BD), (0x115AF, 0x115AF), (0x11930, 0x11930), (0x1D165, 0x1D165),
    (0x1D16E, 0x1D172), (0xE0020, 0xE007F),
)

_BACKSLASHED = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\"}


def _is_grapheme_extended(c: str) -> bool:
    if unicodedata.category(c) in ("Mn", "Me"):
        return True
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _OTHER_GRAPHEME_EXTEND)


def _is_printable(c: str) -> bool:
    # Rust's `is_printable` and Python's `isprintable` both exclude the categories Cc, Cf, Cs,
    # Co, Cn, Zl, Zp and Zs except the ASCII space (they may differ on the Unicode version).
    return c.isprintable()


def _escape_char(c: str, *, grapheme: bool, single: bool, double: bool) -> str:
    if c in _BACKSLASHED:
        return _BACKSLASHED[c]
    if c == '"' and double:
        return '\\"'
    if c == "'" and single:
        return "\\'"
    if grapheme and _is_grapheme_extended(c):
        return f"\\u{{{ord(c):x}}}"
    if _is_printable(c):
        return c
    return f"\\u{{{ord(c):x}}}"


def escape_debug(s: str) -> str:
    """``s`` as Rust's ``str::escape_debug`` writes it."""
    return "".join(
        _escape_char(c, grapheme=(i == 0), single=True, double=True) for i, c in enumerate(s)
    )


def _char_debug(c: str) -> str:
    """``c`` as Rust's ``{:?}`` writes a ``char``: ``'/'``, ``' '``, ``'\\n'``."""
    return "'" + _escape_char(c, grapheme=True, single=True, double=False) + "'"


def _len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------------------------------------
# The rules. Each `check_*` returns the reason the value breaks a rule, or None.


def check_event_type(event_type: str) -> Optional[str]:
    """Checks an event type: dot-separated names of ASCII letters, digits, ``_`` and ``-``, at
    most :data:`MAX_EVENT_TYPE_LEN` bytes."""
    if not event_type:
        return "the event type is empty"
    length = _len(event_type)
    if length > MAX_EVENT_TYPE_LEN:
        return f"the event type is {length} bytes long; the limit is {MAX_EVENT_TYPE_LEN}"
    for c in event_type:
        if not ((c.isascii() and c.isalnum()) or c in "._-"):
            return (
                f"the event type `{escape_debug(event_type)}` contains {_char_debug(c)}; only "
                "ASCII letters, digits, `.`, `_` and `-` are allowed"
            )
    if any(segment == "" for segment in event_type.split(".")):
        return (
            f"the event type `{event_type}` has an empty segment: dots separate names, as in "
            "`tax.rate.updated`, and cannot start or end it or stand next to each other"
        )
    return None


def check_name(what: str, value: str) -> Optional[str]:
    """Checks a destination name, entity key or similar: 1 to :data:`MAX_NAME_LEN` bytes, no
    control characters. ``what`` names it in the reason."""
    if not value:
        return f"the {what} is empty"
    length = _len(value)
    if length > MAX_NAME_LEN:
        return f"the {what} is {length} bytes long; the limit is {MAX_NAME_LEN}"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return f"the {what} `{escape_debug(value)}` contains a control character"
    return None


def check_version(version: Optional[int]) -> Optional[str]:
    """Checks a version: stores keep versions as signed 64-bit integers, so at most 2^63 - 1."""
    if version is not None and version > _MAX_I64:
        return f"the version {version} is over the largest the engine keeps (2^63 - 1)"
    return None


def _valid_header_value(value: str) -> bool:
    # http's HeaderValue: every byte is at least 32 and not 127, or a tab.
    return all(
        (b >= 32 and b != 127) or b == 9 for b in value.encode("utf-8", "surrogatepass")
    )


_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _valid_header_name(name: str) -> bool:
    # http's HeaderName: 1 to 65535 bytes, each a token character (RFC 9110).
    return 0 < len(name) <= 0xFFFF and all(c in _TCHARS for c in name)


def check_content_type(value: str) -> Optional[str]:
    """Checks a content type: a valid header value of the form ``type/subtype``, parameters
    allowed."""
    essence = value.split(";", 1)[0].strip()
    t, slash, s = essence.partition("/")
    if _valid_header_value(value) and slash and t and s:
        return None
    return f"the content type `{escape_debug(value)}` is not a media type such as `application/json`"


def _ascii_lower(s: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in s)


def is_reserved_header(name: str) -> bool:
    """Whether the engine sets a header itself; ``name`` is compared case-insensitively."""
    lower = _ascii_lower(name)
    return lower in RESERVED_HEADERS or any(lower.startswith(p) for p in RESERVED_PREFIXES)


def check_header(name: str, value: str) -> Optional[str]:
    """Checks a header a plugin sets: a valid HTTP name and value, and not one the engine sets."""
    if not _valid_header_name(name):
        return f"the header name `{escape_debug(name)}` is not a valid HTTP header name"
    if is_reserved_header(name):
        return (
            f"the header `{_ascii_lower(name)}` is set by the engine and cannot be set by a plugin"
        )
    if not _valid_header_value(value):
        return (
            f"the value of header `{_ascii_lower(name)}` is not a valid HTTP header value: "
            f"`{escape_debug(value)}`"
        )
    return None


def check_destination_header(name: str, configured: Iterable[str]) -> Optional[str]:
    """Checks a delivery's header against the headers the destination's configuration sets
    (the engine checks this; a plugin's own tests do not know the destinations)."""
    lower = _ascii_lower(name)
    if any(_ascii_lower(c) == lower for c in configured):
        return (
            f"the header `{lower}` is set by the destination's configuration and cannot be set "
            "by a plugin"
        )
    return None


# ---------------------------------------------------------------------------------------------
# Actions, as the SDK builds them (hms_sync.Deliver, hms_sync.Emit, hms_sync.Drop).


def _kind(action) -> str:
    return getattr(action, "_action", None) or type(action).__name__.lower()


def action_size(action) -> int:
    """What one action counts against the output limit: :data:`ACTION_OVERHEAD` plus its bodies,
    names, keys, content type and headers, in bytes."""
    opt = lambda s: 0 if s is None else _len(s)  # noqa: E731
    kind = _kind(action)
    if kind == "deliver":
        return (
            ACTION_OVERHEAD
            + _len(action.destination)
            + len(action.body)
            + opt(action.content_type)
            + opt(action.key)
            + sum(_len(h[0]) + _len(h[1]) for h in action.headers)
        )
    if kind == "emit":
        return (
            ACTION_OVERHEAD
            + _len(action.event_type)
            + len(action.payload)
            + opt(action.content_type)
            + opt(action.key)
        )
    if kind == "drop":
        return ACTION_OVERHEAD + _len(action.reason)
    raise _malformed(f"`{type(action).__name__}` is not an action")


def check_action(action) -> Optional[str]:
    """The first rule ``action`` breaks, or None."""
    kind = _kind(action)
    if kind == "deliver":
        reasons = [
            lambda: check_name("destination", action.destination),
            lambda: check_version(action.version),
            lambda: None if action.key is None else check_name("key", action.key),
            lambda: None
            if action.content_type is None
            else check_content_type(action.content_type),
            *[(lambda h=h: check_header(h[0], h[1])) for h in action.headers],
        ]
    elif kind == "emit":
        reasons = [
            lambda: check_event_type(action.event_type),
            lambda: check_version(action.version),
            lambda: None if action.key is None else check_name("key", action.key),
            lambda: None
            if action.content_type is None
            else check_content_type(action.content_type),
        ]
    elif kind == "drop":
        length = _len(action.reason)
        if length > MAX_NAME_LEN:
            return f"the drop reason is {length} bytes long; the limit is {MAX_NAME_LEN}"
        return None
    else:
        return f"`{type(action).__name__}` is not an action"
    for reason in reasons:
        found = reason()
        if found is not None:
            return found
    return None


def check_size(size: int, limit: int) -> None:
    """Checks the size of a payload (a transformer's result, a resolver's merged payload) against
    ``limit``; raises :class:`Refusal` (``output-too-large``) when over."""
    if size > limit:
        raise _too_large(size, limit)


def check_actions(
    actions, limit: int = DEFAULT_OUTPUT_LIMIT, max_actions: int = DEFAULT_ACTION_LIMIT
) -> None:
    """Checks a handler's actions: their count against ``max_actions``, their total size against
    ``limit``, then each action; raises :class:`Refusal` on the first rule broken."""
    actions = list(actions)
    if len(actions) > max_actions:
        raise _too_many(len(actions), max_actions)
    check_size(sum(action_size(a) for a in actions), limit)
    for i, action in enumerate(actions):
        reason = check_action(action)
        if reason is not None:
            raise _malformed(f"action {i}: {reason}")


def truncate(s: str, max_bytes: int) -> str:
    """Cuts ``s`` to at most ``max_bytes`` bytes (on a character boundary), saying how much was
    cut."""
    data = s.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return s
    end = max_bytes
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    kept = data[:end].decode("utf-8", "surrogatepass")
    return f"{kept}… ({len(data) - end} bytes cut)"


def truncate_log_line(line: str) -> str:
    """Cuts a log line to :data:`MAX_LOG_LINE` bytes, saying how much was cut (as the engine
    does)."""
    return truncate(line, MAX_LOG_LINE)
