"""The seed's outbound transformer, in Python: an HMS `tax.rate.updated` payload
`{"rate", "year"}` becomes the state tax API's body `{"newRates", "effectiveYear"}`.
The route in the engine's configuration says which destination receives the result."""

from hms_sync import json


def transform(event):
    payload = json(event, {"rate": "number", "year": "integer"})
    return {"newRates": payload["rate"], "effectiveYear": payload["year"]}
