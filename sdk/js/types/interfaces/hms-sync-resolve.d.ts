// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.
/// <reference path="./hms-sync-types.d.ts" />
declare module 'hms:sync/resolve@0.1.0' {
  /**
   * Decides between the current and the incoming version of one entity.
   */
  export function resolve(current: Entity, incoming: Entity): Resolution;
  export type Error = import('hms:sync/types@0.1.0').Error;
  /**
   * One version of an entity: the one last delivered to the destination, or the incoming one.
   */
  export interface Entity {
    /**
     * The entity key.
     */
    key: string,
    /**
     * The entity's version, when known.
     */
    version?: bigint,
    /**
     * When this version was made, in Unix milliseconds.
     */
    timestamp: bigint,
    /**
     * The id of the event that carried this version.
     */
    eventId: string,
    /**
     * The media type of `payload`.
     */
    contentType: string,
    /**
     * The body as delivered (current) or as it would be delivered (incoming).
     */
    payload: Uint8Array,
  }
  /**
   * What to do with the incoming version.
   */
  export type Resolution = ResolutionKeep | ResolutionReplace | ResolutionMerged;
  /**
   * Keep the current version: the incoming one is not delivered (it is superseded).
   */
  export interface ResolutionKeep {
    tag: 'keep',
  }
  /**
   * Deliver the incoming version as it is.
   */
  export interface ResolutionReplace {
    tag: 'replace',
  }
  /**
   * Deliver this payload instead: the two versions merged.
   */
  export interface ResolutionMerged {
    tag: 'merged',
    val: Uint8Array,
  }
}
