// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.
declare module 'hms:sync/config@0.1.0' {
  /**
   * Returns the value of one key, or none when the route does not set it.
   */
  export function get(key: string): string | undefined;
  /**
   * Returns every key and value the route sets, sorted by key.
   */
  export function entries(): Array<[string, string]>;
}
