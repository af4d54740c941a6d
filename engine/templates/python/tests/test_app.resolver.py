from hms_sync import Keep, Replace
from hms_sync.testing import TestHost, entity

import app


def test_a_newer_version_replaces_and_an_older_one_is_kept_out():
    v1 = entity("person/1", 1, {"fullName": "Ada"})
    v2 = entity("person/1", 2, {"fullName": "Ada Lovelace"})
    host = TestHost()
    assert host.resolve(app, v1, v2).result == Replace()
    assert host.resolve(app, v2, v1).result == Keep()
