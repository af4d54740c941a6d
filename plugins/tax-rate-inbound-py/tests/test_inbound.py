"""The inbound handler's tests: the shared fixtures (the engine runs the same file when the
plugin is uploaded), and the behaviours the Rust plugin's tests check."""

from pathlib import Path

import tax_rate_inbound
from hms_sync import Emit
from hms_sync.testing import FixtureResult, LogLine, TestHost, event, run_fixtures

FIXTURES = Path(__file__).resolve().parents[2] / "tax-rate-inbound.fixtures.json"


def test_passes_the_shared_fixtures():
    results = run_fixtures(tax_rate_inbound, FIXTURES)
    assert len(results) > 0
    assert [r for r in results if not r.ok] == []


def test_emits_the_seed_mapping_on_the_hms_bus():
    webhook = event("tax-rate.changed", {"currentRate": 0.0725, "taxYear": 2025})
    outcome = TestHost().handle(tax_rate_inbound, webhook)
    assert outcome.result == [
        Emit(
            event_type="tax.rate.updated",
            payload=b'{"rate":0.0725,"year":2025}',
            content_type="application/json",
            key="tax-rate/2025",
        )
    ]
    assert outcome.logs == [LogLine("debug", "tax year 2025 from hms")]


def test_the_route_can_rename_the_emitted_event():
    webhook = event("x", {"currentRate": 1, "taxYear": 2026})
    outcome = TestHost().with_config("event-type", "tax.rate.corrected").handle(tax_rate_inbound, webhook)
    assert outcome.actions() == [
        {
            "emit": {
                "event_type": "tax.rate.corrected",
                "payload": {"rate": 1, "year": 2026},
                "content_type": "application/json",
                "key": "tax-rate/2026",
            }
        }
    ]
    assert outcome.result[0].payload == b'{"rate":1,"year":2026}'
    # The same, through fixtures with the route's configuration.
    renamed = run_fixtures(
        tax_rate_inbound,
        [
            {
                "event": {"type": "x", "payload": {"currentRate": 1, "taxYear": 2026}},
                "expect": {"actions": [{"emit": {"type": "tax.rate.corrected", "payload": {"rate": 1, "year": 2026}, "key": "tax-rate/2026"}}]},
            }
        ],
        config={"event-type": "tax.rate.corrected"},
    )
    assert renamed == [FixtureResult("case 0 (x)", True)]


def test_the_origin_of_the_webhook_is_logged():
    outcome = TestHost().handle(tax_rate_inbound, event("x", {"currentRate": 1, "taxYear": 2026}, origin="state-tax-api"))
    assert outcome.logs == [LogLine("debug", "tax year 2026 from state-tax-api")]


def test_missing_and_mistyped_fields_are_invalid_input_naming_them():
    error = TestHost().handle(tax_rate_inbound, event("x", {"currentRate": 0.07})).error
    assert (error.kind, error.message) == ("invalid-input", "missing field `taxYear`")
    error = TestHost().handle(tax_rate_inbound, event("x", {"currentRate": [], "taxYear": 2025})).error
    assert error.kind == "invalid-input"
    assert error.message == "invalid type for field `currentRate`: expected a number, found an array"
