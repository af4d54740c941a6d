// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.
/// <reference path="./interfaces/hms-sync-config.d.ts" />
/// <reference path="./interfaces/hms-sync-log.d.ts" />
/// <reference path="./interfaces/hms-sync-transform.d.ts" />
/// <reference path="./interfaces/hms-sync-types.d.ts" />
declare module 'hms:sync/transformer@0.1.0' {
  export type * as HmsSyncConfig010 from 'hms:sync/config@0.1.0'; // import hms:sync/config@0.1.0
  export type * as HmsSyncLog010 from 'hms:sync/log@0.1.0'; // import hms:sync/log@0.1.0
  export type * as HmsSyncTypes010 from 'hms:sync/types@0.1.0'; // import hms:sync/types@0.1.0
  export * as transform from 'hms:sync/transform@0.1.0'; // export hms:sync/transform@0.1.0
}
