"""The seed's inbound handler, in Python: a state agency's webhook `{"currentRate", "taxYear"}`
becomes an HMS `tax.rate.updated` event `{"rate", "year"}`, keyed by the tax year. The route may
set `event-type` in its plugin config to emit another type."""

from hms_sync import config, emit, json, log


def handle(event):
    payload = json(event, {"currentRate": "number", "taxYear": "integer"})
    rate, year = payload["currentRate"], payload["taxYear"]
    event_type = config.get("event-type", "tax.rate.updated")
    log.debug(f"tax year {year} from {event.origin}")
    return [emit(event_type, {"rate": rate, "year": year}, key=f"tax-rate/{year}")]
