"""The outbound transformer's tests: the shared fixtures (the engine runs the same file when the
plugin is uploaded), and the behaviours the Rust plugin's tests check."""

from pathlib import Path

import pytest

import tax_rate_outbound
from hms_sync import PluginError
from hms_sync.testing import TestHost, event, run_fixtures

FIXTURES = Path(__file__).resolve().parents[2] / "tax-rate-outbound.fixtures.json"


def transform(payload):
    return TestHost().transform(tax_rate_outbound, event("tax.rate.updated", payload))


def test_passes_the_shared_fixtures():
    results = run_fixtures(tax_rate_outbound, FIXTURES)
    assert len(results) > 0
    assert [r for r in results if not r.ok] == []


def test_maps_the_seed_payload():
    assert transform({"rate": 0.0725, "year": 2025}).json() == {"newRates": 0.0725, "effectiveYear": 2025}


def test_keeps_the_rate_exactly_as_sent():
    assert transform('{"rate": 5, "year": 2024, "note": "ignored"}').result == b'{"newRates":5,"effectiveYear":2024}'
    assert transform('{"rate": 0.0725, "year": 2025}').result == b'{"newRates":0.0725,"effectiveYear":2025}'
    assert transform('{"rate": 1e-7, "year": 2025}').result == b'{"newRates":1e-07,"effectiveYear":2025}'


def test_a_missing_field_is_invalid_input_naming_it():
    error = transform({"year": 2025}).error
    assert error.kind == "invalid-input"
    assert error.message == "missing field `rate`"


def test_a_mistyped_field_is_invalid_input_naming_it():
    assert transform({"rate": 0.07, "year": "2025"}).error == PluginError(
        "invalid-input",
        'invalid type for field `year`: expected an integer, found the string "2025"',
    )
    assert "`rate`" in transform({"rate": "seven", "year": 2025}).error.message


def test_bad_json_is_invalid_input():
    outcome = transform("{not json")
    assert not outcome.ok
    assert outcome.error.kind == "invalid-input"
    assert outcome.error.message.startswith("the payload is not JSON")
    with pytest.raises(PluginError):
        outcome.unwrap()
