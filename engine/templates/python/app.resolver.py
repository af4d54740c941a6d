"""{{name}}: a conflict resolver for the HMS Synchronization Engine (routes whose conflict
strategy is ``plugin``). It delivers the incoming version of an entity when it is at least as
new as the one the destination holds, and keeps the current one otherwise. Change the rule to
yours: ``merged(payload)`` delivers a merged payload instead."""

from hms_sync import keep, replace


def resolve(current, incoming):
    if incoming.version is not None and current.version is not None:
        newer = incoming.version >= current.version
    else:
        newer = incoming.timestamp >= current.timestamp
    return replace() if newer else keep()
