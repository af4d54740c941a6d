"""The test harness (hms_sync.testing): it must treat a plugin module as the engine treats the
component made of it."""

from types import SimpleNamespace as plugin

import pytest

from hms_sync import (
    Deliver,
    Emit,
    Entity,
    Event,
    Header,
    Keep,
    Merged,
    PluginError,
    Replace,
    config,
    deliver,
    drop,
    emit,
    invalid_input,
    keep,
    log,
    merged,
    rejected,
    replace,
)
from hms_sync.testing import LogLine, Outcome, Refusal, TestHost, entity, event


def test_event_defaults_as_the_engine_would_pass_an_event_from_the_hms_bus():
    assert event("tax.rate.updated", {"rate": 1}) == Event(
        id="test-event-1",
        event_type="tax.rate.updated",
        origin="hms",
        key=None,
        version=None,
        timestamp=0,
        content_type="application/json",
        payload=b'{"rate":1}',
        headers=[],
    )
    assert event("t", "{not json").payload == b"{not json"
    assert event("t", b"\x01\x02").payload == b"\x01\x02"


def test_event_fields_and_headers_as_a_mapping_or_a_list():
    e = event("t", {}, version=7, timestamp=1700000000000, key="k", origin="state", id="e-9", headers={"X-A": "b"})
    assert (e.version, e.timestamp, e.key, e.origin, e.id) == (7, 1700000000000, "k", "state", "e-9")
    assert e.headers == [Header("x-a", "b")]
    assert event("t", {}, headers=[("x-b", "c")]).headers == [Header("x-b", "c")]


def test_entity_a_version_of_an_entity_with_its_payload_as_json():
    assert entity("tax-rate/2025", 3, {"rate": 1}) == Entity(
        key="tax-rate/2025",
        version=3,
        timestamp=0,
        event_id="test-event-3",
        content_type="application/json",
        payload=b'{"rate":1}',
    )
    e = entity("k", None, "text", timestamp=5)
    assert (e.version, e.event_id, e.timestamp, e.payload) == (None, "test-event-0", 5, b'"text"')
    assert entity("k", 1, b"raw").payload == b"raw"


def test_a_transformer_its_result_as_bytes_with_its_log_lines():
    def transform(e):
        log.info("got", e.id)
        return {"seen": e.event_type}

    outcome = TestHost().transform(plugin(transform=transform), event("t", {}))
    assert isinstance(outcome, Outcome) and outcome.ok
    assert outcome.result == b'{"seen":"t"}'
    assert outcome.json() == {"seen": "t"}
    assert outcome.logs == [LogLine("info", "got test-event-1")]
    assert TestHost().transform(plugin(transform=lambda e: "text"), event("t", {})).result == b"text"
    assert TestHost().transform(plugin(transform=lambda e: "text"), event("t", {})).text() == "text"
    # A bare function is taken as the plugin's function.
    assert TestHost().transform(lambda e: b"raw", event("t", {})).result == b"raw"


def test_log_lines_are_cut_to_4096_bytes_and_capped_at_256_per_event():
    def transform(e):
        for _ in range(1000):
            log.debug("x" * 10000)
        return ""

    logs = TestHost().transform(plugin(transform=transform), event("t", {})).logs
    assert len(logs) == 256
    assert logs[0].level == "debug"
    assert logs[0].message == "x" * 4096 + "… (5904 bytes cut)"
    # Cut on a character boundary.
    [line] = TestHost().transform(plugin(transform=lambda e: log.warn("é" * 3000) or ""), event("t", {})).logs
    assert line.message == "é" * 2048 + "… (1904 bytes cut)"


def test_config_get_and_entries_sorted_by_key_as_the_engine_sorts_them():
    seen = {}

    def handle(e):
        seen.update(get=config.get("b"), missing=config.get("zz"), entries=config.entries())
        return []

    host = TestHost().with_config("b", 2).with_config("a", "one").with_config("B", "upper").with_config("é", "e")
    host.handle(plugin(handle=handle), event("t", {}))
    assert seen == {"get": "2", "missing": None, "entries": [("B", "upper"), ("a", "one"), ("b", "2"), ("é", "e")]}


def test_the_harness_restores_what_log_and_config_call_after_a_run(capsys):
    TestHost().with_config("a", "1").transform(plugin(transform=lambda e: ""), event("t", {}))
    log.warn("after")
    assert capsys.readouterr().err == "[warn] after\n"
    assert config.get("a") is None


def test_a_handler_its_actions_readable():
    def handle(e):
        return [
            emit("tax.rate.updated", {"rate": 1}, key="tax-rate/2025"),
            deliver("state", "plain", headers={"x-agency": "irs"}, version=2),
            drop("done"),
        ]

    outcome = TestHost().handle(plugin(handle=handle), event("t", {}))
    assert len(outcome.result) == 3
    assert outcome.actions() == [
        {"emit": {"event_type": "tax.rate.updated", "payload": {"rate": 1}, "content_type": "application/json", "key": "tax-rate/2025"}},
        {"deliver": {"destination": "state", "body": "plain", "headers": [("x-agency", "irs")], "version": 2}},
        {"drop": "done"},
    ]
    assert TestHost().handle(plugin(handle=lambda e: None), event("t", {})).result == []
    # Any iterable of actions, a generator too.
    gen = TestHost().handle(plugin(handle=lambda e: (drop(str(i)) for i in range(2))), event("t", {}))
    assert gen.actions() == [{"drop": "0"}, {"drop": "1"}]


def test_output_the_engine_refuses_raised_by_transform_and_handle_returned_by_the_try_methods():
    reserved = plugin(handle=lambda e: [deliver("state", {}, headers={"hms-hops": "0"})])
    with pytest.raises(Refusal) as refused:
        TestHost().handle(reserved, event("t", {}))
    assert refused.value.code == "malformed-output"
    assert str(refused.value).startswith(
        "the engine would refuse this output (malformed-output): the plugin returned a malformed result: "
        "action 0: the header `hms-hops` is set by the engine"
    )
    outcome = TestHost().try_handle(reserved, event("t", {}))
    assert not outcome.ok
    assert outcome.error is None
    assert outcome.refusal.code == "malformed-output"
    assert len(outcome.result) == 1, "the result is kept, to look at"
    with pytest.raises(Refusal):
        outcome.unwrap()

    dot_dot = plugin(handle=lambda e: [emit("..", {})])
    assert "empty segment" in TestHost().try_handle(dot_dot, event("t", {})).refusal.message

    big = plugin(transform=lambda e: "x" * 100)
    with pytest.raises(Refusal, match="output-too-large"):
        TestHost().with_output_limit(10).transform(big, event("t", {}))
    too_big = TestHost().with_output_limit(10).try_transform(big, event("t", {}))
    assert too_big.refusal.code == "output-too-large"
    assert too_big.refusal.message == "the plugin returned 100 bytes of output, over its limit of 10 bytes"
    assert TestHost().try_transform(big, event("t", {})).ok

    many = plugin(handle=lambda e: [drop(""), drop(""), drop("")])
    assert (
        TestHost().with_action_limit(2).try_handle(many, event("t", {})).refusal.message
        == "the plugin returned 3 actions, over its limit of 2 per event"
    )


def test_errors_the_plugin_raises_become_the_outcomes_error_with_their_kind():
    def failing(error):
        def transform(e):
            raise error

        return plugin(transform=transform)

    invalid = TestHost().transform(failing(invalid_input("missing field `rate`")), event("t", {}))
    assert not invalid.ok
    assert invalid.error == PluginError("invalid-input", "missing field `rate`")
    with pytest.raises(PluginError, match="invalid-input: missing field `rate`"):
        invalid.unwrap()

    def closed(e):
        raise rejected("closed")

    assert TestHost().handle(plugin(handle=closed), event("t", {})).error == PluginError("rejected", "closed")
    assert TestHost().transform(failing(PluginError("internal", "bug")), event("t", {})).error == PluginError("internal", "bug")


def test_anything_else_the_plugin_raises_is_internal_naming_the_line():
    def transform(e):
        return e.nothing.here

    outcome = TestHost().transform(plugin(transform=transform), event("t", {}))
    assert outcome.error.kind == "internal"
    assert outcome.error.message.startswith("AttributeError: 'Event' object has no attribute 'nothing' (at test_testing.py:")
    assert outcome.error.message.endswith(", in transform)")

    def failing(e):
        log.error("about to fail")
        raise KeyError("rate")

    logged = TestHost().transform(plugin(transform=failing), event("t", {}))
    # What the plugin logged before it failed is kept.
    assert logged.logs == [LogLine("error", "about to fail")]
    assert logged.error.kind == "internal"
    assert logged.error.message.startswith("KeyError: 'rate' (at test_testing.py:")

    def exits(e):
        raise SystemExit(3)

    assert TestHost().transform(plugin(transform=exits), event("t", {})).error.message.startswith("SystemExit: 3")


def test_a_coroutine_is_internal_plugins_run_synchronously():
    async def transform(e):
        return "x"

    async def handle(e):
        return []

    async def resolve(c, i):
        return keep()

    message = "returned a coroutine: plugins run synchronously, one event at a time (define it with `def`, not `async def`)"
    assert TestHost().transform(plugin(transform=transform), event("t", {})).error.message == f"`transform` {message}"
    assert TestHost().handle(plugin(handle=handle), event("t", {})).error.message == f"`handle` {message}"
    assert TestHost().resolve(plugin(resolve=resolve), entity("k", 1, {}), entity("k", 2, {})).error.message == f"`resolve` {message}"


def test_a_transformer_must_return_a_payload():
    error = TestHost().transform(plugin(transform=lambda e: None), event("t", {})).error
    assert error == PluginError("internal", "`transform` returned None: return the payload (bytes, a string or a JSON value)")
    error = TestHost().transform(plugin(transform=lambda e: {"x": object()}), event("t", {})).error
    assert error.kind == "internal" and "cannot encode dict as JSON" in error.message


def test_a_handler_must_return_actions():
    assert "must return a list of actions" in TestHost().handle(plugin(handle=lambda e: "x"), event("t", {})).error.message
    assert "not Drop" in TestHost().handle(plugin(handle=lambda e: drop("x")), event("t", {})).error.message
    assert "action 0 is not an action" in TestHost().handle(plugin(handle=lambda e: [{"deliver": "x"}]), event("t", {})).error.message
    # Actions built by hand are checked as the WIT would carry them.
    bad = TestHost().handle(plugin(handle=lambda e: [Deliver(destination=5, body=b"")]), event("t", {})).error
    assert bad == PluginError("internal", "action 0: the destination must be a string, not int")
    bad = TestHost().handle(plugin(handle=lambda e: [Emit("t", "not bytes")]), event("t", {})).error
    assert bad.message.startswith("action 0: the payload must be bytes, not str")


def test_a_resolver_keep_replace_merged_with_the_merged_payload_under_the_output_limit():
    current = entity("k", 1, {"tags": ["a"]})
    incoming = entity("k", 2, {"tags": ["b"]})
    assert TestHost().resolve(plugin(resolve=lambda c, i: keep()), current, incoming).result == Keep()
    assert TestHost().resolve(plugin(resolve=lambda c, i: replace()), current, incoming).result == Replace()

    def union(c, i):
        import json

        return merged({"tags": json.loads(c.payload)["tags"] + json.loads(i.payload)["tags"]})

    outcome = TestHost().resolve(plugin(resolve=union), current, incoming)
    assert outcome.result == Merged(b'{"tags":["a","b"]}')
    assert outcome.json() == {"tags": ["a", "b"]}
    assert TestHost().with_output_limit(5).try_resolve(plugin(resolve=union), current, incoming).refusal.code == "output-too-large"
    with pytest.raises(TypeError, match="no payload"):
        TestHost().resolve(plugin(resolve=lambda c, i: keep()), current, incoming).json()
    assert "must return keep(), replace() or merged(payload)" in (
        TestHost().resolve(plugin(resolve=lambda c, i: "keep"), current, incoming).error.message
    )


def test_a_memory_error_is_not_converted_in_the_engine_it_is_the_memory_limit():
    def transform(e):
        raise MemoryError()

    with pytest.raises(MemoryError):
        TestHost().transform(plugin(transform=transform), event("t", {}))
