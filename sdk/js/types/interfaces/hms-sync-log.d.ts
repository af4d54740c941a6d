// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.
declare module 'hms:sync/log@0.1.0' {
  /**
   * Records one log line at the given level.
   */
  export function log(level: Level, message: string): void;
  /**
   * How important a log line is.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * Very detailed tracing, normally off.
   * ## `"debug"`
   * 
   * Detail useful while debugging a plugin.
   * ## `"info"`
   * 
   * A normal, noteworthy step.
   * ## `"warn"`
   * 
   * Something unexpected that the plugin could handle.
   * ## `"error"`
   * 
   * Something failed.
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
