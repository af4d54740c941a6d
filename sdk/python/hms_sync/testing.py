"""A test harness: runs a plugin module's logic under pytest (or any runner), without
WebAssembly and without the engine, with the engine's ``log`` and ``config`` behaviour and output
rules::

    import app
    from hms_sync.testing import TestHost, event, run_fixtures

    def test_maps_the_seed_payload():
        outcome = TestHost().transform(app, event("tax.rate.updated", {"rate": 0.07, "year": 2025}))
        assert outcome.json() == {"newRates": 0.07, "effectiveYear": 2025}

    def test_fixtures():
        assert [r for r in run_fixtures(app, "../tax-rate-outbound.fixtures.json") if not r.ok] == []

:class:`TestHost` plays the engine's part: it gives the plugin a route configuration (its entries
sorted by key), records what the plugin logs (lines cut to 4 KiB, at most 256 per event, as the
engine does) and returns an :class:`Outcome`. It checks the result against the engine's output
rules (:mod:`hms_sync.rules`): ``transform``, ``handle`` and ``resolve`` raise a
:class:`Refusal` with the code the engine would record (``malformed-output``,
``output-too-large``), so the plugin's own tests fail; ``try_transform`` and its siblings return
it in the outcome instead. An exception that is not a :class:`~hms_sync.PluginError` becomes an
``internal`` error, as in the component.

:func:`run_fixtures` runs a fixtures file (docs/plugins/fixtures.md) through the harness and
matches the results as ``sync-engine plugin test`` does (engine/sandbox/src/fixtures.rs).
"""

from __future__ import annotations

import json as _json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from . import (
    Deliver,
    Drop,
    Emit,
    Entity,
    Event,
    Header,
    Merged,
    PluginError,
    _set_host,
    to_json,
)
from . import rules
from .fixtures import FixtureError, parse_fixtures, parse_json, same_json, write_json
from .rules import Refusal
from .run import run_handle, run_resolve, run_transform, world_of

__all__ = [
    "TestHost",
    "Outcome",
    "LogLine",
    "Refusal",
    "event",
    "entity",
    "FixtureError",
    "FixtureResult",
    "run_fixtures",
]


class LogLine(NamedTuple):
    """One line a plugin logged."""

    level: str
    message: str


def _decode(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload
    try:
        return _json.loads(text)
    except ValueError:
        return text


def _readable(action: Any) -> Dict[str, Any]:
    if isinstance(action, Deliver):
        fields = {
            "destination": action.destination,
            "body": _decode(action.body),
            "content_type": action.content_type,
            "headers": list(action.headers) or None,
            "key": action.key,
            "version": action.version,
            "timestamp": action.timestamp,
        }
        return {"deliver": {k: v for k, v in fields.items() if v is not None}}
    if isinstance(action, Emit):
        fields = {
            "event_type": action.event_type,
            "payload": _decode(action.payload),
            "content_type": action.content_type,
            "key": action.key,
            "version": action.version,
            "timestamp": action.timestamp,
        }
        return {"emit": {k: v for k, v in fields.items() if v is not None}}
    return {"drop": action.reason}


@dataclass
class Outcome:
    """What a plugin returned for one call, with what it logged on the way.

    ``result`` is a transformer's payload (bytes), a handler's list of actions or a resolver's
    resolution; ``error`` the :class:`~hms_sync.PluginError` it failed with instead; ``refusal``
    the :class:`Refusal` the engine would answer the result with (only from ``try_*``)."""

    result: Any = None
    error: Optional[PluginError] = None
    logs: List[LogLine] = field(default_factory=list)
    refusal: Optional[Refusal] = None

    @property
    def ok(self) -> bool:
        """Whether the plugin returned a result the engine accepts (not an error, not a refused
        output)."""
        return self.error is None and self.refusal is None

    def unwrap(self) -> Any:
        """The result; raises the plugin's error, or the refusal when the engine would refuse
        the result."""
        if self.error is not None:
            raise self.error
        if self.refusal is not None:
            raise self.refusal
        return self.result

    def _payload(self) -> bytes:
        result = self.unwrap()
        payload = result.payload if isinstance(result, Merged) else result
        if not isinstance(payload, bytes):
            what = type(result).__name__.lower() if not isinstance(result, list) else "actions"
            raise TypeError(f"the result has no payload to read: {what}")
        return payload

    def json(self) -> Any:
        """A transformer's payload (or a merged resolution's) parsed as JSON."""
        return _json.loads(self._payload())

    def text(self) -> str:
        """A transformer's payload (or a merged resolution's) as text."""
        return self._payload().decode("utf-8")

    def actions(self) -> List[Dict[str, Any]]:
        """A handler's actions in a readable form: ``{"emit": {"event_type", "payload", ...}}``,
        ``{"deliver": {"destination", "body", ...}}`` or ``{"drop": reason}``, with bodies and
        payloads decoded from JSON when they are (else text, else bytes), and unset fields left
        out."""
        return [_readable(a) for a in self.unwrap()]


class _Host:
    """The engine's imports while one call runs."""

    def __init__(self, config: Dict[str, str], logs: List[LogLine]):
        self.config = dict(sorted(config.items()))
        self.logs = logs

    def log(self, level: str, message: str) -> None:
        # As in the engine: long lines are cut, and lines past the per-event cap dropped.
        if len(self.logs) < rules.MAX_LOG_LINES:
            self.logs.append(LogLine(level, rules.truncate_log_line(str(message))))

    def get(self, key: str) -> Optional[str]:
        return self.config.get(key)

    def entries(self) -> List[Tuple[str, str]]:
        return list(self.config.items())


class TestHost:
    """Stands in for the engine while a plugin module runs under pytest.

    ``plugin`` is the plugin module (or any object with the world's function, or the function
    itself)."""

    __test__ = False  # not a test class, for pytest

    def __init__(self) -> None:
        self.config: Dict[str, str] = {}
        self.output_limit = rules.DEFAULT_OUTPUT_LIMIT
        self.action_limit = rules.DEFAULT_ACTION_LIMIT

    def with_config(self, key: str, value: str) -> "TestHost":
        """Sets one key of the route's plugin configuration."""
        self.config[str(key)] = str(value)
        return self

    def with_output_limit(self, size: int) -> "TestHost":
        """Sets the output limit in bytes, as ``limits.output`` does in the engine."""
        self.output_limit = size
        return self

    def with_action_limit(self, actions: int) -> "TestHost":
        """Sets how many actions a handler may return, as ``limits.actions`` does in the
        engine."""
        self.action_limit = actions
        return self

    def transform(self, plugin: Any, event: Event) -> Outcome:
        """Runs a transformer on one event; raises a :class:`Refusal` when the engine would
        refuse the output."""
        return _accepted(self.try_transform(plugin, event))

    def handle(self, plugin: Any, event: Event) -> Outcome:
        """Runs a handler on one event; raises a :class:`Refusal` when the engine would refuse
        the output."""
        return _accepted(self.try_handle(plugin, event))

    def resolve(self, plugin: Any, current: Entity, incoming: Entity) -> Outcome:
        """Runs a resolver on two versions of an entity; raises a :class:`Refusal` when the
        engine would refuse the output."""
        return _accepted(self.try_resolve(plugin, current, incoming))

    def try_transform(self, plugin: Any, event: Event) -> Outcome:
        """As :meth:`transform`, but a refusal is returned in the outcome's ``refusal``."""
        return self._run(
            lambda: run_transform(plugin, event),
            lambda payload: rules.check_size(len(payload), self.output_limit),
        )

    def try_handle(self, plugin: Any, event: Event) -> Outcome:
        """As :meth:`handle`, but a refusal is returned in the outcome's ``refusal``."""
        return self._run(
            lambda: run_handle(plugin, event),
            lambda actions: rules.check_actions(actions, self.output_limit, self.action_limit),
        )

    def try_resolve(self, plugin: Any, current: Entity, incoming: Entity) -> Outcome:
        """As :meth:`resolve`, but a refusal is returned in the outcome's ``refusal``."""

        def check(resolution: Any) -> None:
            if isinstance(resolution, Merged):
                rules.check_size(len(resolution.payload), self.output_limit)

        return self._run(lambda: run_resolve(plugin, current, incoming), check)

    def _run(self, call: Callable[[], Any], check: Callable[[Any], None]) -> Outcome:
        logs: List[LogLine] = []
        previous = _set_host(_Host(self.config, logs))
        try:
            outcome = Outcome(result=call(), logs=logs)
        except PluginError as e:
            outcome = Outcome(error=e, logs=logs)
        finally:
            _set_host(previous)
        if outcome.ok:
            try:
                check(outcome.result)
            except Refusal as refusal:
                outcome.refusal = refusal
        return outcome


def _accepted(outcome: Outcome) -> Outcome:
    if outcome.refusal is not None:
        r = outcome.refusal
        raise Refusal(r.code, f"the engine would refuse this output ({r.code}): {r.message}")
    return outcome


def _body(payload: Any) -> bytes:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return to_json(payload)


def event(event_type: str, payload: Any, **fields: Any) -> Event:
    """An event as the engine gives it to a plugin, with ``payload`` (bytes, a string, or a value
    sent as JSON) and defaults for the rest: id ``test-event-1``, origin ``hms``, no key or
    version, timestamp 0, content type ``application/json``, no headers. ``fields`` overrides
    any of them; ``headers`` may be a dict, and its names are lower-cased as the engine does."""
    values: Dict[str, Any] = dict(
        id="test-event-1",
        event_type=event_type,
        origin="hms",
        key=None,
        version=None,
        timestamp=0,
        content_type="application/json",
        headers=[],
    )
    values.update(fields)
    headers = values["headers"]
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    values["headers"] = [
        Header(str(getattr(h, "name", h[0])).lower(), str(getattr(h, "value", h[1]))) for h in pairs
    ]
    return Event(payload=_body(payload), **values)


def entity(key: str, version: Optional[int], value: Any, **fields: Any) -> Entity:
    """One version of an entity, for a resolver, with its payload (bytes as they are, anything
    else as JSON): event id ``test-event-<version>``, timestamp 0, content type
    ``application/json`` unless ``fields`` says otherwise."""
    values: Dict[str, Any] = dict(
        key=key,
        version=version,
        timestamp=0,
        event_id=f"test-event-{version if version is not None else 0}",
        content_type="application/json",
    )
    values.update(fields)
    payload = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else to_json(value)
    return Entity(payload=payload, **values)



# ---------------------------------------------------------------------------------------------
# Fixtures: the engine's fixtures files, run through the harness.


class FixtureResult(NamedTuple):
    """One fixture case's result: its name, whether it passed, and what differed when not."""

    name: str
    ok: bool
    message: Optional[str] = None


def _ascii_lower(s: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in s)


def _fixture_event(e: Dict[str, Any], index: int) -> Event:
    """What the engine makes of a fixture's event (engine/sandbox/src/fixtures.rs, ``to_event``)."""
    headers = e.get("headers") or {}
    return Event(
        id=f"fixture-{index}",
        event_type=e["type"],
        origin="hms" if e.get("origin") is None else e["origin"],
        key=e.get("key"),
        version=e.get("version"),
        timestamp=e.get("timestamp") or 0,
        content_type="application/json",
        payload=write_json(e["payload"]).encode("utf-8"),
        headers=[Header(_ascii_lower(name), headers[name]) for name in sorted(headers)],
    )


def _same_json_as(what: str, expected: Any, got: bytes) -> Optional[str]:
    try:
        value = parse_json(got)
    except ValueError:
        text = got.decode("utf-8", "replace")
        return f"expected {what} {write_json(expected)}, got bytes that are not JSON: {text}"
    if same_json(expected, value):
        return None
    return f"expected {what} {write_json(expected)}, got {write_json(value)}"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return _json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def _same_opt(what: str, expected: Any, got: Any) -> Optional[str]:
    if expected is None or expected == got:
        return None
    return f"expected {what} {_show(expected)}, got {_show(got)}"


def _describe_action(action: Any) -> str:
    text = lambda b: b.decode("utf-8", "replace")  # noqa: E731
    if isinstance(action, Deliver):
        return f"a delivery to `{action.destination}` of {text(action.body)}"
    if isinstance(action, Emit):
        return f"an emission of `{action.event_type}` with {text(action.payload)}"
    return f"a drop ({_json.dumps(action.reason, ensure_ascii=False)})"


def _describe(output: Any) -> str:
    if isinstance(output, bytes):
        return f"the payload {output.decode('utf-8', 'replace')}"
    return "[" + ", ".join(_describe_action(a) for a in output) + "]"


def _check_action(expected: Tuple[str, Any], got: Any) -> Optional[str]:
    """One expected action against the one the plugin returned (``ExpectedAction::check``)."""
    kind, e = expected
    if kind == "deliver" and isinstance(got, Deliver):
        if e["destination"] != got.destination:
            return f"expected a delivery to `{e['destination']}`, got one to `{got.destination}`"
        differs = (
            _same_json_as("the body", e["body"], got.body)
            or _same_opt("the key", e.get("key"), got.key)
            or _same_opt("the version", e.get("version"), got.version)
            or _same_opt("the content type", e.get("content_type"), got.content_type)
        )
        if differs or e.get("headers") is None:
            return differs
        # The engine lower-cases the names of the headers a plugin sets; the fixture's are
        # compared as written.
        got_headers = {_ascii_lower(h.name): h.value for h in got.headers}
        if e["headers"] == got_headers:
            return None
        show = lambda m: _json.dumps(m, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
        return f"expected headers {show(e['headers'])}, got {show(got_headers)}"
    if kind == "emit" and isinstance(got, Emit):
        if e["type"] != got.event_type:
            return f"expected an emission of `{e['type']}`, got one of `{got.event_type}`"
        return (
            _same_json_as("the payload", e["payload"], got.payload)
            or _same_opt("the key", e.get("key"), got.key)
            or _same_opt("the version", e.get("version"), got.version)
        )
    if kind == "drop" and isinstance(got, Drop) and e == got.reason:
        return None
    if kind == "deliver":
        wanted = f"a delivery to `{e['destination']}`"
    elif kind == "emit":
        wanted = f"an emission of `{e['type']}`"
    else:
        wanted = f"a drop ({_json.dumps(e, ensure_ascii=False)})"
    return f"expected {wanted}, got {_describe_action(got)}"


def _check_case(plugin: Any, world: str, host: TestHost, case: Dict[str, Any], index: int) -> Optional[str]:
    """What the engine would make of one case: None when it passes, else what differed."""
    kind, expected = case["expect"]
    outcome, code, failure = None, None, None
    if world == "resolver":
        code = "wrong-world"
        failure = "the plugin implements the resolver world, which cannot run on events"
    else:
        event = _fixture_event(case["event"], index)
        outcome = host.try_transform(plugin, event) if world == "transformer" else host.try_handle(plugin, event)
        if outcome.error is not None:
            code = outcome.error.kind
            failure = f"the plugin failed the event ({code}): {outcome.error.message}"
        elif outcome.refusal is not None:
            code, failure = outcome.refusal.code, outcome.refusal.message
    if kind == "error":
        if code is None:
            return f"expected error `{expected}`, got a result: {_describe(outcome.result)}"
        return None if code == expected else f"expected error `{expected}`, got: {failure}"
    if code is not None:
        return f"failed: {failure}"
    output = outcome.result
    if kind == "payload":
        if world == "transformer":
            return _same_json_as("the payload", expected, output)
        return f"expected a payload (a transformer's output), got {_describe(output)}"
    if world != "handler":
        return f"expected actions (a handler's output), got {_describe(output)}"
    if len(expected) != len(output):
        return f"expected {len(expected)} action(s), got {len(output)}: {_describe(output)}"
    for j, (e, a) in enumerate(zip(expected, output)):
        differs = _check_action(e, a)
        if differs:
            return f"action {j}: {differs}"
    return None


def run_fixtures(
    plugin: Any,
    fixtures: Any,
    config: Optional[Mapping[str, Any]] = None,
    *,
    output_limit: Optional[int] = None,
    action_limit: Optional[int] = None,
) -> List[FixtureResult]:
    """Runs a fixtures file's cases (a path, or the cases already parsed as a list) through the
    harness, matching as the engine's ``sync-engine plugin test`` does, with the route's
    ``config`` (as ``--set key=value`` gives it) and limits; returns each case's
    :class:`FixtureResult`. Raises :class:`FixtureError` when the engine would refuse the
    fixtures themselves::

        assert [r for r in run_fixtures(app, "../app.fixtures.json") if not r.ok] == []
    """
    if isinstance(fixtures, (str, os.PathLike)):
        with open(fixtures, "rb") as f:
            cases = parse_fixtures(f.read())
    else:
        cases = parse_fixtures(fixtures)
    world = world_of(plugin)
    host = TestHost()
    for key, value in (config or {}).items():
        host.with_config(key, value)
    if output_limit is not None:
        host.with_output_limit(output_limit)
    if action_limit is not None:
        host.with_action_limit(action_limit)
    results = []
    for i, case in enumerate(cases):
        name = case.get("name")
        if name is None:
            name = f"case {i} ({case['event']['type']})"
        message = _check_case(plugin, world, host, case, i)
        results.append(FixtureResult(name, message is None, message))
    return results
