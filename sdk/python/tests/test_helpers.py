"""The plugin-facing helpers of hms_sync: reading the event, building actions and resolutions,
errors, and `log` and `config` outside the harness."""

import pytest

from hms_sync import (
    Deliver,
    Drop,
    Emit,
    Header,
    Keep,
    Merged,
    PluginError,
    Replace,
    check,
    config,
    deliver,
    drop,
    emit,
    internal,
    invalid_input,
    json,
    keep,
    log,
    merged,
    rejected,
    replace,
    text,
    to_bytes,
    to_json,
)
from hms_sync.testing import event


def failure(f, kind):
    """The message of the PluginError of `kind` that `f` raises."""
    with pytest.raises(PluginError) as raised:
        f()
    assert raised.value.kind == kind
    return raised.value.message


def test_errors_carry_their_kind_and_message():
    for make, kind in [(invalid_input, "invalid-input"), (rejected, "rejected"), (internal, "internal")]:
        e = make("why")
        assert isinstance(e, Exception) and isinstance(e, PluginError)
        assert (e.kind, e.message) == (kind, "why")
        assert str(e) == f"{kind}: why"
        assert e == PluginError(kind, "why")
    with pytest.raises(ValueError, match="unknown error kind `fatal`"):
        PluginError("fatal", "x")


def test_text_is_the_payload_as_utf8_or_invalid_input():
    assert text(event("t", "héllo")) == "héllo"
    assert "not UTF-8" in failure(lambda: text(event("t", b"\xff\xfe")), "invalid-input")


def test_json_parses_the_payload_or_invalid_input():
    assert json(event("t", {"a": [1, 2]})) == {"a": [1, 2]}
    assert json(event("t", '"s"')) == "s"
    assert failure(lambda: json(event("t", "{not json")), "invalid-input").startswith("the payload is not JSON: ")
    assert "not UTF-8" in failure(lambda: json(event("t", b"\x80")), "invalid-input")
    # What is not JSON, though Python's json module would read it.
    for bad in ["NaN", "[Infinity]", "-Infinity", "1e400"]:
        failure(lambda: json(event("t", bad)), "invalid-input")


def test_json_keeps_numbers_exact():
    value = json(event("t", '{"rate": 0.0725, "n": 5, "f": 5.0, "big": 123456789012345678901234567890}'))
    assert value == {"rate": 0.0725, "n": 5, "f": 5.0, "big": 123456789012345678901234567890}
    assert type(value["n"]) is int and type(value["f"]) is float
    assert to_json(value) == b'{"rate":0.0725,"n":5,"f":5.0,"big":123456789012345678901234567890}'


def test_json_with_a_shape_names_the_first_field_missing_or_mistyped():
    shape = {"rate": "number", "year": "integer"}
    assert json(event("t", {"rate": 0.07, "year": 2025, "extra": True}), shape) == {"rate": 0.07, "year": 2025, "extra": True}
    assert failure(lambda: json(event("t", {"year": 2025}), shape), "invalid-input") == "missing field `rate`"
    assert (
        failure(lambda: json(event("t", {"rate": 0.07, "year": "2025"}), shape), "invalid-input")
        == 'invalid type for field `year`: expected an integer, found the string "2025"'
    )
    assert (
        failure(lambda: json(event("t", {"rate": 0.07, "year": 2025.5}), shape), "invalid-input")
        == "invalid type for field `year`: expected an integer, found the number 2025.5"
    )
    # A float is not an integer, even with no fraction (as in the Rust SDK; JavaScript cannot tell).
    assert (
        failure(lambda: json(event("t", '{"rate": 1, "year": 2025.0}'), shape), "invalid-input")
        == "invalid type for field `year`: expected an integer, found the number 2025.0"
    )
    assert (
        failure(lambda: json(event("t", {"rate": "seven", "year": 2025}), shape), "invalid-input")
        == 'invalid type for field `rate`: expected a number, found the string "seven"'
    )
    # A boolean is not a number (in Python, bool is a kind of int).
    assert (
        failure(lambda: json(event("t", {"rate": True, "year": 2025}), shape), "invalid-input")
        == "invalid type for field `rate`: expected a number, found boolean true"
    )
    assert failure(lambda: json(event("t", [1]), shape), "invalid-input") == "the payload should be an object, found an array"
    assert failure(lambda: json(event("t", "null"), shape), "invalid-input") == "the payload should be an object, found null"
    assert (
        failure(lambda: json(event("t", "{not json"), shape), "invalid-input").startswith("the payload is not JSON")
    )


def test_check_takes_every_field_type_optional_fields_and_nested_shapes():
    shape = {
        "s": "string", "n": "number", "i": "integer", "b": "boolean", "o": "object", "a": "array", "x": "any",
        "maybe": "string?", "address": {"city": "string", "zip": "string?"},
    }
    value = {"s": "", "n": 1.5, "i": -3, "b": False, "o": {}, "a": [], "x": None, "address": {"city": "Springfield"}}
    assert check(value, shape) is value
    check({**value, "maybe": None}, shape)
    check({**value, "maybe": "yes"}, shape)
    assert (
        failure(lambda: check({**value, "maybe": 1}, shape), "invalid-input")
        == "invalid type for field `maybe`: expected a string, found the integer 1"
    )
    assert (
        failure(lambda: check({**value, "o": []}, shape), "invalid-input")
        == "invalid type for field `o`: expected an object, found an array"
    )
    assert (
        failure(lambda: check({**value, "a": {}}, shape), "invalid-input")
        == "invalid type for field `a`: expected an array, found an object"
    )
    assert (
        failure(lambda: check({**value, "b": "false"}, shape), "invalid-input")
        == 'invalid type for field `b`: expected a boolean, found the string "false"'
    )
    assert failure(lambda: check({**value, "address": {}}, shape), "invalid-input") == "missing field `address.city`"
    assert (
        failure(lambda: check({**value, "address": "Main St"}, shape), "invalid-input")
        == 'the field `address` should be an object, found the string "Main St"'
    )
    # A required field may not be null.
    assert (
        failure(lambda: check({**value, "s": None}, shape), "invalid-input")
        == "invalid type for field `s`: expected a string, found null"
    )
    # A long string is cut in the message.
    assert failure(lambda: check({"n": "x" * 100}, {"n": "number"}), "invalid-input").endswith('found the string "' + "x" * 40 + '…"')
    with pytest.raises(TypeError):
        check({"d": 1}, {"d": "date"})


def test_to_bytes_bytes_as_they_are_a_string_as_utf8_anything_else_as_json():
    assert to_bytes(b"\x01\x02") == b"\x01\x02"
    assert to_bytes(bytearray(b"\x01")) == b"\x01"
    assert to_bytes(memoryview(b"\x01")) == b"\x01"
    assert to_bytes("é") == "é".encode()
    assert to_bytes({"a": 1}) == b'{"a":1}'
    assert to_bytes(None) == b"null"
    assert to_bytes(5) == b"5"
    assert to_bytes([1, (2, 3)]) == b"[1,[2,3]]"
    assert to_json("s") == b'"s"'
    assert to_json({"é": "ü"}) == '{"é":"ü"}'.encode()
    assert "cannot encode" in failure(lambda: to_json({"x": object()}), "internal")
    assert "cannot encode" in failure(lambda: to_json(float("nan")), "internal")


def test_deliver_a_json_body_is_application_json_bytes_and_strings_have_no_content_type():
    assert deliver("state", {"a": 1}) == Deliver("state", b'{"a":1}', "application/json", [], None, None, None)
    assert deliver("state", "text").content_type is None
    assert deliver("state", b"\x01").content_type is None
    assert deliver("state", "x", content_type="text/plain").content_type == "text/plain"
    assert deliver("state", {"a": 1}, content_type="application/vnd.state+json").content_type == "application/vnd.state+json"


def test_deliver_headers_as_a_mapping_or_a_list_key_version_and_timestamp():
    d = deliver("state", "", headers={"x-agency": "irs", "x-n": 5}, key="k", version=3, timestamp=1700000000000)
    assert d.headers == [Header("x-agency", "irs"), Header("x-n", "5")]
    assert d.headers[0] == ("x-agency", "irs")
    assert (d.key, d.version, d.timestamp) == ("k", 3, 1700000000000)
    listed = deliver("state", "", headers=[("x-a", "1"), Header("x-a", "2")])
    assert listed.headers == [Header("x-a", "1"), Header("x-a", "2")]


def test_versions_and_timestamps_the_wit_cannot_carry_are_internal():
    assert emit("t", {}, version=0).version == 0
    assert emit("t", {}, version=2**64 - 1).version == 2**64 - 1
    assert emit("t", {}, version=None).version is None
    assert emit("t", {}, timestamp=-1).timestamp == -1  # before 1970: an s64
    assert emit("t", {}, timestamp=-(2**63)).timestamp == -(2**63)
    assert failure(lambda: emit("t", {}, version=-1), "internal") == "the version -1 is out of range: 0 to 18446744073709551615"
    assert "out of range" in failure(lambda: emit("t", {}, version=2**64), "internal")
    assert failure(lambda: emit("t", {}, version=1.5), "internal") == "the version must be an integer, not float 1.5"
    assert "must be an integer" in failure(lambda: emit("t", {}, version="5"), "internal")
    assert "must be an integer" in failure(lambda: emit("t", {}, version=True), "internal")
    assert "the timestamp 9223372036854775808 is out of range" in failure(lambda: deliver("d", {}, timestamp=2**63), "internal")
    assert failure(lambda: deliver(5, {}), "internal") == "the destination must be a string, not int"
    assert failure(lambda: emit("t", {}, key=5), "internal") == "the key must be a string, not int"


def test_emit_a_json_payload_is_application_json_with_key_and_version():
    assert emit("tax.rate.updated", {"rate": 1}, key="tax-rate/2025", version=7) == Emit(
        "tax.rate.updated", b'{"rate":1}', "application/json", "tax-rate/2025", 7, None
    )
    assert emit("t", "raw").content_type is None
    assert emit("t", "raw").payload == b"raw"


def test_drop_keep_replace_and_merged():
    assert drop("not ours") == Drop("not ours")
    assert keep() == Keep()
    assert replace() == Replace()
    assert merged({"a": 1}) == Merged(b'{"a":1}')
    assert merged("text") == Merged(b"text")


def test_outside_the_engine_and_the_harness_log_writes_to_stderr_and_the_configuration_is_empty(capsys):
    log.info("step", 1, {"a": 1}, ValueError("boom"))
    log.warn("w")
    assert capsys.readouterr().err == '[info] step 1 {"a": 1} boom\n[warn] w\n'
    assert config.get("anything") is None
    assert config.get("anything", "default") == "default"
    assert config.entries() == []


def test_the_event_can_look_up_headers_in_any_case():
    e = event("t", {}, headers={"X-Agency": "irs"})
    assert e.headers == [Header("x-agency", "irs")]
    assert e.header("X-AGENCY") == "irs"
    assert e.header("missing") is None
