// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.
/// <reference path="./hms-sync-types.d.ts" />
declare module 'hms:sync/transform@0.1.0' {
  /**
   * Maps the event's payload to the payload to send on. Where the result goes (a
   * destination, or an HMS event type) is said by the route in the engine's configuration.
   */
  export function transform(event: Event): Uint8Array;
  export type Event = import('hms:sync/types@0.1.0').Event;
  export type Error = import('hms:sync/types@0.1.0').Error;
}
