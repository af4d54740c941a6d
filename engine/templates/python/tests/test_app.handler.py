from hms_sync.testing import TestHost, event, run_fixtures

import app


def test_delivers_the_contact_to_the_configured_destination():
    outcome = (
        TestHost()
        .with_config("destination", "crm")
        .handle(app, event("person.updated", {"firstName": "Ada", "lastName": "Lovelace"}))
    )
    assert outcome.actions() == [
        {"deliver": {"destination": "crm", "body": {"fullName": "Ada Lovelace"}, "content_type": "application/json"}}
    ]
    assert outcome.logs[0].message == "contact for event test-event-1"


def test_drops_a_person_without_a_last_name():
    outcome = TestHost().handle(app, event("person.updated", {"firstName": "Ada"}))
    assert outcome.actions() == [{"drop": "no last name"}]


def test_passes_its_fixtures():
    failed = [r for r in run_fixtures(app, "fixtures.json") if not r.ok]
    assert failed == []
