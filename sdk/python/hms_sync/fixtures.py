"""The fixtures format (docs/plugins/fixtures.md), read as the engine reads it
(engine/sandbox/src/fixtures.rs): the same fields, as strictly (an unknown field is an error),
and JSON values as serde_json holds them, so the harness's ``run_fixtures`` passes and fails the
cases the engine does. Used by :mod:`hms_sync.testing`; not part of the plugin-facing API.

serde_json, as the engine builds it, tells integers from floats (``5`` and ``5.0`` are different
values), keeps integers exact from -2^63 to 2^64 - 1 (others become floats), and writes objects
with their keys sorted and floats as the shortest text that reads back (``5.0``, ``1e21``). So
JSON values here are Python values (an integer an ``int``, a float a ``float``), compared
(:func:`same_json`) and written (:func:`write_json`) as serde_json does.
"""

from __future__ import annotations

import json as _json
import math
from typing import Any, Callable, Dict, List, Sequence, Tuple

__all__ = ["FixtureError", "parse_json", "same_json", "write_json", "parse_fixtures"]

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1


class FixtureError(ValueError):
    """Fixtures the engine would refuse; the message names the place."""


# ---------------------------------------------------------------------------------------------
# JSON as serde_json reads, compares and writes it.


def _int(literal: str) -> Any:
    if literal == "-0":
        return -0.0  # serde_json reads `-0` as a float
    value = int(literal)
    return value if _I64_MIN <= value <= _U64_MAX else float(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def _no_lone_surrogates(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone surrogate in a \\u escape") from None
    elif isinstance(value, list):
        for item in value:
            _no_lone_surrogates(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_lone_surrogates(key)
            _no_lone_surrogates(item)


def parse_json(data: Any) -> Any:
    """JSON text (or UTF-8 bytes) as serde_json reads it into a ``Value``; ``ValueError`` when it
    is not JSON."""
    text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
    value = _json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    _no_lone_surrogates(value)
    return value


def same_json(a: Any, b: Any) -> bool:
    """Whether two values are equal as serde_json's ``Value``s are: an integer never equals a
    float, a boolean never a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int) or isinstance(b, int):
        return isinstance(a, int) and isinstance(b, int) and a == b
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and a == b
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(same_json(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same_json(a[k], b[k]) for k in a)
        )
    return a == b


def _write_float(value: float) -> str:
    # Python's repr and ryu (serde_json's) both write the shortest digits that read back; they
    # differ in spelling: ryu writes `1e16` for `1e+16`, `1.5e-7` for `1.5e-07`, and
    # `0.00001234` where repr writes `1.234e-05`.
    if not math.isfinite(value):
        return "null"
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    exp = int(exponent)
    if exp == -5:
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{exp}"


def write_json(value: Any) -> str:
    """``value`` as compact JSON text, as serde_json writes a ``Value`` (keys sorted, floats
    with a ``.0``)."""
    if value is None or isinstance(value, (bool, str)):
        return _json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _write_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(write_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0])
        return "{" + ",".join(f"{_json.dumps(k, ensure_ascii=False)}:{write_json(v)}" for k, v in items) + "}"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# ---------------------------------------------------------------------------------------------
# The format, with the checks and messages of serde (`#[serde(deny_unknown_fields)]`).


def _unexpected(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{write_json(value)}`"
    if isinstance(value, str):
        return f"string {_json.dumps(value, ensure_ascii=False)}"
    return "sequence" if isinstance(value, list) else "map"


def _fail(path: str, message: str) -> FixtureError:
    return FixtureError(f"the fixtures are not valid: at `{path or '.'}`: {message}")


def _at(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _invalid(path: str, value: Any, expected: str) -> FixtureError:
    return _fail(path, f"invalid type: {_unexpected(value)}, expected {expected}")


Reader = Callable[[Any, str], Any]


def _record(value: Any, path: str, fields: Dict[str, Reader], required: Sequence[str]) -> dict:
    if not isinstance(value, dict):
        raise _invalid(path, value, "a map")
    for key in value:
        if key not in fields:
            allowed = ", ".join(f"`{n}`" for n in fields)
            raise _fail(path, f"unknown field `{key}`, expected one of {allowed}")
    out = {}
    for name, read in fields.items():
        if name in value:
            out[name] = read(value[name], _at(path, name))
        elif name in required:
            raise _fail(path, f"missing field `{name}`")
    return out


def _variant(value: Any, path: str, variants: Dict[str, Reader]) -> Tuple[str, Any]:
    names = ", ".join(f"`{n}`" for n in variants)
    if isinstance(value, dict) and len(value) == 1:
        ((name, inner),) = value.items()
        if name not in variants:
            raise _fail(path, f"unknown variant `{name}`, expected one of {names}")
        return name, variants[name](inner, _at(path, name))
    raise _invalid(path, value, f"an object with one key, one of {names}")


def _any(value: Any, path: str) -> Any:
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _invalid(path, value, "a string")
    return value


def _integer(lo: int, hi: int, name: str) -> Reader:
    def read(value: Any, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(path, value, name)
        if not lo <= value <= hi:
            raise _fail(path, f"invalid value: integer `{value}`, expected {name}")
        return value

    return read


_u64 = _integer(0, _U64_MAX, "u64")
_i64 = _integer(_I64_MIN, _I64_MAX, "i64")


def _option(read: Reader) -> Reader:
    return lambda value, path: None if value is None else read(value, path)


def _list(read: Reader) -> Reader:
    def list_of(value: Any, path: str) -> list:
        if not isinstance(value, list):
            raise _invalid(path, value, "a sequence")
        return [read(item, _at(path, i)) for i, item in enumerate(value)]

    return list_of


def _string_map(value: Any, path: str) -> Dict[str, str]:
    if not isinstance(value, dict):
        raise _invalid(path, value, "a map")
    for key, item in value.items():
        _string(item, _at(path, key))
    return value


def _event(value: Any, path: str) -> dict:
    return _record(
        value,
        path,
        {
            "type": _string,
            "payload": _any,
            "origin": _option(_string),
            "key": _option(_string),
            "version": _option(_u64),
            "timestamp": _option(_i64),
            "headers": _string_map,
        },
        ("type", "payload"),
    )


def _expected_action(value: Any, path: str) -> Tuple[str, Any]:
    return _variant(
        value,
        path,
        {
            "deliver": lambda d, p: _record(
                d,
                p,
                {
                    "destination": _string,
                    "body": _any,
                    "key": _option(_string),
                    "version": _option(_u64),
                    "content_type": _option(_string),
                    "headers": _option(_string_map),
                },
                ("destination", "body"),
            ),
            "emit": lambda e, p: _record(
                e,
                p,
                {"type": _string, "payload": _any, "key": _option(_string), "version": _option(_u64)},
                ("type", "payload"),
            ),
            "drop": _string,
        },
    )


def _expectation(value: Any, path: str) -> Tuple[str, Any]:
    return _variant(value, path, {"payload": _any, "actions": _list(_expected_action), "error": _string})


def _case(value: Any, path: str) -> dict:
    return _record(
        value,
        path,
        {"name": _option(_string), "event": _event, "expect": _expectation},
        ("event", "expect"),
    )


def parse_fixtures(source: Any) -> List[dict]:
    """Reads fixtures: JSON text or bytes, or a list already parsed. Each case is ``{"name",
    "event", "expect": (kind, expected)}``. Raises :class:`FixtureError`, naming the place, when
    the engine would refuse them."""
    if isinstance(source, (str, bytes, bytearray)):
        try:
            value = parse_json(source)
        except ValueError as e:
            raise _fail("", str(e)) from None
    else:
        value = source
    cases = _list(_case)(value, "")
    if not cases:
        raise FixtureError("the fixtures hold no case")
    return cases
