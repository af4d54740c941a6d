"""{{name}}: a handler for the HMS Synchronization Engine. It turns a payload
``{"firstName", "lastName"}`` into a delivery of ``{"fullName"}`` to the destination the route's
``destination`` setting names (default ``contacts``), and drops events without a last name.
Change the shape and the actions to yours."""

from hms_sync import config, deliver, drop, json, log


def handle(event):
    person = json(event, {"firstName": "string", "lastName": "string?"})
    if person.get("lastName") is None:
        return [drop("no last name")]
    log.info(f"contact for event {event.id}")
    destination = config.get("destination") or "contacts"
    return [deliver(destination, {"fullName": f"{person['firstName']} {person['lastName']}"})]
