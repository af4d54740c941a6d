"""run_fixtures: fixtures files run through the harness with the engine's matching rules
(engine/sandbox/src/fixtures.rs), and JSON compared as serde_json compares it."""

from types import SimpleNamespace as plugin

import pytest

from hms_sync import config, deliver, drop, emit, invalid_input, json, keep
from hms_sync.fixtures import parse_json, same_json, write_json
from hms_sync.testing import FixtureError, FixtureResult, run_fixtures


def run_text(p, text, tmp_path, **options):
    """Runs fixtures written as JSON text (from a file, as `sync-engine plugin test` reads them)."""
    path = tmp_path / "plugin.fixtures.json"
    path.write_text(text, "utf-8")
    return run_fixtures(p, path, **options)


echo = plugin(transform=lambda e: e.payload)
seen = []


def _record(e):
    seen.append(e)
    return []


recorder = plugin(handle=_record)


def test_json_is_read_as_serde_json_reads_it():
    assert parse_json("5") == 5 and type(parse_json("5")) is int
    assert parse_json("-5") == -5
    assert type(parse_json("5.0")) is float and type(parse_json("5e0")) is float
    assert str(parse_json("-0")) == "-0.0"
    assert parse_json("18446744073709551615") == 18446744073709551615
    assert type(parse_json("18446744073709551616")) is float, "past u64: a float"
    assert parse_json("-9223372036854775808") == -9223372036854775808
    assert type(parse_json("-9223372036854775809")) is float, "past i64: a float"
    assert parse_json(' {"a": [1, 2.5, "x", true, null], "a": {}} ') == {"a": {}}
    for bad in ["", "01", "1.", ".5", "+1", "[1,]", '{"a":1,}', "'a'", '"\u0001"', '"\\ud800"', "nul", "1 2", "1e400", "\ufeff1", "NaN"]:
        with pytest.raises(ValueError):
            parse_json(bad)
    assert same_json(parse_json('{"a":1,"b":[2.5]}'), parse_json('{"b":[2.5],"a":1}'))
    assert not same_json(parse_json("5"), parse_json("5.0"))
    assert not same_json(parse_json("1"), parse_json("true"))
    assert not same_json(parse_json('{"a":1}'), parse_json('{"a":1,"b":null}'))
    assert same_json(parse_json("0.0"), parse_json("-0.0"))


def test_json_is_written_as_serde_json_writes_it():
    assert write_json(parse_json('{"b":1,"a":[5.0,-0.0,1e21,0.5,"é"],"A":null}')) == '{"A":null,"a":[5.0,-0.0,1e21,0.5,"é"],"b":1}'
    # ryu's spelling of floats, not repr's.
    assert write_json([1e16, 1e15, 1.5e-7, 1.234e-5, 1e-5, 0.0001, -1.234e-5, 1.2345678901234568e17]) == (
        "[1e16,1000000000000000.0,1.5e-7,0.00001234,0.00001,0.0001,-0.00001234,1.2345678901234568e17]"
    )
    assert write_json({"s": 'q"\\\n\x7f'}) == '{"s":"q\\"\\\\\\n\x7f"}'


def test_the_event_is_the_engines(tmp_path):
    seen.clear()
    results = run_text(
        recorder,
        """[
        {"event": {"type": "t", "payload": {"b": 5.0, "a": 1}, "headers": {"X-B": "2", "x-a": "1"}}, "expect": {"actions": []}},
        {"event": {"type": "u", "payload": null, "origin": "state", "key": "k", "version": 18446744073709551615, "timestamp": -5},
         "expect": {"actions": []}}
        ]""",
        tmp_path,
    )
    assert results == [FixtureResult("case 0 (t)", True), FixtureResult("case 1 (u)", True)]
    first, second = seen
    assert (first.id, first.origin, first.key, first.version, first.timestamp) == ("fixture-0", "hms", None, None, 0)
    assert first.content_type == "application/json"
    assert first.payload == b'{"a":1,"b":5.0}'
    assert [tuple(h) for h in first.headers] == [("x-b", "2"), ("x-a", "1")]
    assert (second.id, second.origin, second.key, second.version, second.timestamp) == ("fixture-1", "state", "k", 2**64 - 1, -5)
    assert second.payload == b"null"


def test_a_transformers_payload_is_compared_as_json(tmp_path):
    results = run_text(
        echo,
        """[
        {"name": "same", "event": {"type": "t", "payload": {"a": [1, "x"]}}, "expect": {"payload": {"a": [1, "x"]}}},
        {"name": "different", "event": {"type": "t", "payload": {"a": 1}}, "expect": {"payload": {"a": 2}}},
        {"name": "an integer is not a float", "event": {"type": "t", "payload": {"a": 1}}, "expect": {"payload": {"a": 1.0}}}
        ]""",
        tmp_path,
    )
    assert results == [
        FixtureResult("same", True),
        FixtureResult("different", False, 'expected the payload {"a":2}, got {"a":1}'),
        FixtureResult("an integer is not a float", False, 'expected the payload {"a":1.0}, got {"a":1}'),
    ]
    # Parsed already by Python, `1.0` is still a float.
    assert run_fixtures(echo, [{"event": {"type": "t", "payload": {"a": 1}}, "expect": {"payload": {"a": 1.0}}}])[0].ok is False
    assert run_fixtures(plugin(transform=lambda e: "not json"), [{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1}}]) == [
        FixtureResult("case 0 (t)", False, "expected the payload 1, got bytes that are not JSON: not json")
    ]


def test_errors_are_matched_by_code():
    def transform(e):
        n = json(e, {"n": "integer"})["n"]
        if n < 0:
            raise invalid_input("negative")
        return "x" * n

    results = run_fixtures(
        plugin(transform=transform),
        [
            {"name": "invalid", "event": {"type": "t", "payload": {}}, "expect": {"error": "invalid-input"}},
            {"name": "wrong code", "event": {"type": "t", "payload": {"n": -1}}, "expect": {"error": "rejected"}},
            {"name": "too large", "event": {"type": "t", "payload": {"n": 20}}, "expect": {"error": "output-too-large"}},
            {"name": "no error", "event": {"type": "t", "payload": {"n": 2}}, "expect": {"error": "invalid-input"}},
            {"name": "an unexpected error", "event": {"type": "t", "payload": {}}, "expect": {"payload": "xx"}},
        ],
        output_limit=10,
    )
    assert results == [
        FixtureResult("invalid", True),
        FixtureResult("wrong code", False, "expected error `rejected`, got: the plugin failed the event (invalid-input): negative"),
        FixtureResult("too large", True),
        FixtureResult("no error", False, "expected error `invalid-input`, got a result: the payload xx"),
        FixtureResult("an unexpected error", False, "failed: the plugin failed the event (invalid-input): missing field `n`"),
    ]


def test_a_handlers_actions_are_compared_as_the_engine_compares_them():
    p = plugin(
        handle=lambda e: [
            emit("tax.rate.updated", {"rate": 1}, key="k", version=2),
            deliver("state", {"r": 1}, key="d", version=3, headers={"X-Agency": "irs"}),
            drop("why"),
        ]
    )

    def run(actions):
        return run_fixtures(p, [{"event": {"type": "t", "payload": {}}, "expect": {"actions": actions}}])[0].message

    emitted = {"emit": {"type": "tax.rate.updated", "payload": {"rate": 1}}}
    delivered = {"deliver": {"destination": "state", "body": {"r": 1}}}
    assert run([emitted, delivered, {"drop": "why"}]) is None
    assert run([
        {"emit": {**emitted["emit"], "key": "k", "version": 2}},
        {"deliver": {**delivered["deliver"], "key": "d", "version": 3, "content_type": "application/json", "headers": {"x-agency": "irs"}}},
        {"drop": "why"},
    ]) is None
    assert run([emitted]) == (
        'expected 1 action(s), got 3: [an emission of `tax.rate.updated` with {"rate":1}, a delivery to `state` of {"r":1}, a drop ("why")]'
    )
    assert run([{"emit": {**emitted["emit"], "type": "x"}}, delivered, {"drop": "why"}]) == "action 0: expected an emission of `x`, got one of `tax.rate.updated`"
    assert run([{"emit": {**emitted["emit"], "payload": {"rate": 2}}}, delivered, {"drop": "why"}]) == 'action 0: expected the payload {"rate":2}, got {"rate":1}'
    assert run([{"emit": {**emitted["emit"], "key": "other"}}, delivered, {"drop": "why"}]) == 'action 0: expected the key "other", got "k"'
    assert run([{"emit": {**emitted["emit"], "version": 9}}, delivered, {"drop": "why"}]) == "action 0: expected the version 9, got 2"
    assert run([emitted, {"deliver": {**delivered["deliver"], "destination": "x"}}, {"drop": "why"}]) == "action 1: expected a delivery to `x`, got one to `state`"
    assert run([emitted, {"deliver": {**delivered["deliver"], "content_type": "text/plain"}}, {"drop": "why"}]) == (
        'action 1: expected the content type "text/plain", got "application/json"'
    )
    # The engine lower-cases the names of the headers a plugin sets, not those of the fixture.
    assert run([emitted, {"deliver": {**delivered["deliver"], "headers": {"X-Agency": "irs"}}}, {"drop": "why"}]) == (
        'action 1: expected headers {"X-Agency":"irs"}, got {"x-agency":"irs"}'
    )
    assert run([emitted, {"deliver": {**delivered["deliver"], "headers": {}}}, {"drop": "why"}]) == 'action 1: expected headers {}, got {"x-agency":"irs"}'
    assert run([emitted, delivered, {"drop": "other"}]) == 'action 2: expected a drop ("other"), got a drop ("why")'
    assert run([delivered, emitted, {"drop": "why"}]) == (
        'action 0: expected a delivery to `state`, got an emission of `tax.rate.updated` with {"rate":1}'
    )


def test_a_routes_configuration_and_output_rules_apply():
    p = plugin(handle=lambda e: [emit(config.get("event-type") or "a..b", {})])
    cases = [{"event": {"type": "t", "payload": {}}, "expect": {"actions": [{"emit": {"type": "renamed", "payload": {}}}]}}]
    assert run_fixtures(p, cases, config={"event-type": "renamed"}) == [FixtureResult("case 0 (t)", True)]
    [refused] = run_fixtures(p, cases)
    assert not refused.ok
    assert refused.message.startswith("failed: the plugin returned a malformed result: action 0: the event type `a..b` has an empty segment")
    assert run_fixtures(p, [{"event": {"type": "t", "payload": {}}, "expect": {"error": "malformed-output"}}]) == [FixtureResult("case 0 (t)", True)]


def test_outputs_of_the_other_world_are_a_mismatch_a_resolver_cannot_run_fixtures():
    assert run_fixtures(echo, [{"event": {"type": "t", "payload": 1}, "expect": {"actions": []}}])[0].message == (
        "expected actions (a handler's output), got the payload 1"
    )
    assert run_fixtures(recorder, [{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1}}])[0].message == (
        "expected a payload (a transformer's output), got []"
    )
    resolver = plugin(resolve=lambda c, i: keep())
    assert run_fixtures(resolver, [{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1}}])[0].message == (
        "failed: the plugin implements the resolver world, which cannot run on events"
    )
    assert run_fixtures(resolver, [{"event": {"type": "t", "payload": 1}, "expect": {"error": "wrong-world"}}])[0].ok


def test_fixtures_the_engine_would_refuse_are_refused_naming_the_place(tmp_path):
    def message(text):
        with pytest.raises(FixtureError) as refused:
            run_text(echo, text, tmp_path)
        return str(refused.value)

    assert message("[]") == "the fixtures hold no case"
    assert message("{}") == "the fixtures are not valid: at `.`: invalid type: map, expected a sequence"
    assert "at `[0].event`: missing field `payload`" in message('[{"event": {"type": "t"}, "expect": {"payload": 1}}]')
    assert "at `[0].expect`: unknown variant `result`" in message('[{"event": {"type": "t", "payload": 1}, "expect": {"result": 1}}]')
    assert "at `[0].expect`" in message('[{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1, "error": "x"}}]')
    assert (
        "at `[0].expect.actions[0].emit`: unknown field `content_type`, expected one of `type`, `payload`, `key`, `version`"
        in message('[{"event": {"type": "t", "payload": 1}, "expect": {"actions": [{"emit": {"type": "t", "payload": 1, "content_type": "a/b"}}]}}]')
    )
    assert "at `[0].event.version`: invalid type: floating point `1.0`, expected u64" in message(
        '[{"event": {"type": "t", "payload": 1, "version": 1.0}, "expect": {"payload": 1}}]'
    )
    assert "expected u64" in message('[{"event": {"type": "t", "payload": 1, "version": -1}, "expect": {"payload": 1}}]')
    assert "at `[0].event.headers.a`: invalid type: integer `1`, expected a string" in message(
        '[{"event": {"type": "t", "payload": 1, "headers": {"a": 1}}, "expect": {"payload": 1}}]'
    )
    assert "at `[0]`: unknown field `extra`" in message('[{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1}, "extra": 1}]')
    assert message('[{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1}},]').startswith("the fixtures are not valid")
