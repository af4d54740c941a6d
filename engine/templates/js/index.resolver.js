// {{name}}: a conflict resolver for the HMS Synchronization Engine (routes whose conflict
// strategy is `plugin`). It delivers the incoming version of an entity when it is at least as
// new as the one the destination holds, and keeps the current one otherwise. Change the rule to
// yours: `merged(payload)` delivers a merged payload instead.

import { keep, replace } from '@hms/sync-sdk';

export function resolve(current, incoming) {
  const newer = incoming.version !== undefined && current.version !== undefined
    ? incoming.version >= current.version
    : incoming.timestamp >= current.timestamp;
  return newer ? replace() : keep();
}
