"""{{name}}: a transformer for the HMS Synchronization Engine. It maps a payload
``{"firstName", "lastName"}`` to ``{"fullName"}``; the route in the engine's configuration says
where the result goes. Change the shape and the mapping to yours."""

from hms_sync import json


def transform(event):
    # A missing or mistyped field is `invalid-input`, naming the field.
    person = json(event, {"firstName": "string", "lastName": "string"})
    return {"fullName": f"{person['firstName']} {person['lastName']}"}
