// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.
/// <reference path="./hms-sync-types.d.ts" />
declare module 'hms:sync/handle@0.1.0' {
  /**
   * Turns one event into the actions the engine should take: any number of deliveries and
   * emissions, or a drop. An empty list means the event needs nothing.
   */
  export function handle(event: Event): Array<Action>;
  export type Event = import('hms:sync/types@0.1.0').Event;
  export type Action = import('hms:sync/types@0.1.0').Action;
  export type Error = import('hms:sync/types@0.1.0').Error;
}
