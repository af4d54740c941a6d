"""The output rules against the conformance table every SDK shares (sdk/rules/cases.json, format
in sdk/rules/CASES.md): the expected results are what the engine's Rust crate decides. Then the
Rust crate's own unit tests, ported."""

import json
from pathlib import Path

import pytest

from hms_sync import Deliver, Drop, Emit, Header
from hms_sync import rules
from hms_sync.rules import Refusal

CASES_PATH = Path(__file__).resolve().parents[2] / "rules" / "cases.json"
CASES = json.loads(CASES_PATH.read_text("utf-8")) if CASES_PATH.exists() else []


def _version(v):
    return None if v is None else int(v)


def action(entry):
    """An action of the table as the SDK builds it."""
    if "deliver" in entry:
        d = entry["deliver"]
        return Deliver(
            destination=d["destination"],
            body=d["body"].encode("utf-8"),
            content_type=d.get("contentType"),
            headers=[Header(n, v) for n, v in d.get("headers", [])],
            key=d.get("key"),
            version=_version(d.get("version")),
        )
    if "emit" in entry:
        e = entry["emit"]
        return Emit(
            event_type=e["eventType"],
            payload=e["payload"].encode("utf-8"),
            content_type=e.get("contentType"),
            key=e.get("key"),
            version=_version(e.get("version")),
        )
    return Drop(entry["drop"])


def decide(case):
    try:
        if "payloadSize" in case:
            rules.check_size(case["payloadSize"], case["limit"])
        else:
            rules.check_actions(
                [action(a) for a in case["actions"]],
                case.get("limit", rules.DEFAULT_OUTPUT_LIMIT),
                case.get("maxActions", rules.DEFAULT_ACTION_LIMIT),
            )
        return "ok", None
    except Refusal as refusal:
        return refusal.code, refusal.message


def test_the_table_is_there_and_well_formed():
    assert len(CASES) > 100, f"{CASES_PATH} is missing or short"
    names = set()
    for case in CASES:
        assert case["name"] not in names, f"two cases are named {case['name']}"
        names.add(case["name"])
        assert case["expect"] in ("ok", "malformed-output", "output-too-large"), case["name"]
        assert ("actions" in case) != ("payloadSize" in case), case["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rules_conform(case):
    result, message = decide(case)
    assert result == case["expect"], message
    if "message" in case:
        assert case["message"] in message


# The Rust crate's unit tests (sdk/rules/src/lib.rs), ported.


def test_event_types_are_dotted_names():
    assert rules.check_event_type("tax.rate.updated") is None
    assert rules.check_event_type("policy_v2-updated") is None
    assert "empty" in rules.check_event_type("")
    assert "'/'" in rules.check_event_type("a/b")
    assert "' '" in rules.check_event_type("tax rate")
    assert "129" in rules.check_event_type("a" * 129)
    for bad in [".", "..", "a..b", ".a", "a."]:
        assert "empty segment" in rules.check_event_type(bad), bad


def test_reserved_headers_include_the_engines_metadata():
    for name in ["Authorization", "idempotency-key", "webhook-signature", "hms-hops", "HMS-Origin", "content-type"]:
        assert rules.is_reserved_header(name), name
        assert "set by the engine" in rules.check_header(name, "x")
    assert rules.check_header("x-agency", "irs") is None
    assert "not a valid" in rules.check_header("bad name", "x")
    assert "value" in rules.check_header("x-a", "line\nbreak")
    assert "destination's configuration" in rules.check_destination_header("X-Api-Key", ["x-api-key"])
    assert rules.check_destination_header("x-other", ["x-api-key"]) is None


def test_output_is_checked_for_size_then_for_each_action():
    def deliver(destination):
        return Deliver(destination, b"{}", None, [Header("x-a", "1")], "k", 1)

    assert rules.action_size(deliver("state")) == rules.ACTION_OVERHEAD + 5 + 2 + 1 + 3 + 1
    rules.check_actions([deliver("state")], 1000, 10)
    with pytest.raises(Refusal) as refused:
        rules.check_actions([deliver("state")], 5, 10)
    assert refused.value.code == "output-too-large"
    assert refused.value.message == f"the plugin returned {rules.ACTION_OVERHEAD + 12} bytes of output, over its limit of 5 bytes"
    with pytest.raises(Refusal) as refused:
        rules.check_actions([deliver("state"), deliver("")], 1000, 10)
    assert refused.value.code == "malformed-output"
    assert "action 1: the destination is empty" in refused.value.message
    with pytest.raises(Refusal) as refused:
        rules.check_actions([Drop("")] * 11, 1 << 62, 10)
    assert refused.value.code == "output-too-large"
    assert refused.value.message == "the plugin returned 11 actions, over its limit of 10 per event"
    assert "empty segment" in rules.check_action(Emit("..", b"{}", "text"))
    assert "drop reason" in rules.check_action(Drop("r" * (rules.MAX_NAME_LEN + 1)))
    assert "2^63" in rules.check_version((1 << 64) - 1)
    assert rules.check_content_type("application/json; charset=utf-8") is None
    assert rules.check_content_type("json") is not None


def test_long_log_lines_are_cut_on_a_character_boundary():
    cut = rules.truncate_log_line("é" * rules.MAX_LOG_LINE)
    assert cut.endswith("bytes cut)")
    assert len(cut.encode()) < rules.MAX_LOG_LINE + 32
    assert cut == "é" * (rules.MAX_LOG_LINE // 2) + f"… ({rules.MAX_LOG_LINE} bytes cut)"
    assert rules.truncate_log_line("short") == "short"
    # As the crate's property: a prefix on a character boundary, and how much went.
    assert rules.truncate("aé", 2) == "a… (2 bytes cut)"
    assert rules.truncate("abc", 0) == "… (3 bytes cut)"
    assert rules.truncate("abc", 3) == "abc"


def test_messages_quote_values_as_rust_escape_debug_does():
    assert rules.escape_debug("k\r") == "k\\r"
    assert rules.escape_debug("a\"b'c\\") == "a\\\"b\\'c\\\\"
    assert rules.escape_debug("\x00\t\n\x7f\x85é") == "\\0\\t\\n\\u{7f}\\u{85}é"
    # A combining mark is escaped at the start only, as Rust does.
    assert rules.escape_debug("\u0301a\u0301") == "\\u{301}a\u0301"
    assert rules.check_name("key", "k\x1b") == "the key `k\\u{1b}` contains a control character"
    # A char is quoted as Rust's `{:?}`: single quotes, a double quote left as it is.
    assert "contains '\"'" in rules.check_event_type('a"b')
    assert "contains '\\''" in rules.check_event_type("a'b")
    assert "contains '\\n'" in rules.check_event_type("a\nb")
