from hms_sync.testing import TestHost, event, run_fixtures

import app


def test_maps_a_person_to_a_contact():
    outcome = TestHost().transform(app, event("person.updated", {"firstName": "Ada", "lastName": "Lovelace"}))
    assert outcome.json() == {"fullName": "Ada Lovelace"}


def test_a_missing_field_is_invalid_input_naming_it():
    outcome = TestHost().transform(app, event("person.updated", {"firstName": "Ada"}))
    assert outcome.error.kind == "invalid-input"
    assert "lastName" in outcome.error.message


def test_passes_its_fixtures():
    failed = [r for r in run_fixtures(app, "fixtures.json") if not r.ok]
    assert failed == []
