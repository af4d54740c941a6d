// The types of `@hms/sync-sdk/rules`: the engine's output rules (the Rust crate
// `hms-sync-rules`, sdk/rules/src/lib.rs), as the test harness applies them. The checks of
// single values return null when the value passes, else why it does not.

import type { Action } from './index.js';

/** The longest entity key, destination name or drop reason a plugin may return, in bytes (1024). */
export const MAX_NAME_LEN: number;
/** The longest event type, in bytes (128). */
export const MAX_EVENT_TYPE_LEN: number;
/** The output limit a plugin runs under unless its configuration sets another, in bytes (1 MiB). */
export const DEFAULT_OUTPUT_LIMIT: number;
/** How many actions a handler may return for one event unless its limits say otherwise (256). */
export const DEFAULT_ACTION_LIMIT: number;
/** What each action counts against the output limit beyond its own bytes (64). */
export const ACTION_OVERHEAD: number;
/** The longest log line a plugin may write, in bytes; longer ones are cut (4096). */
export const MAX_LOG_LINE: number;
/** How many log lines a plugin may write per event; later ones are dropped (256). */
export const MAX_LOG_LINES: number;
/** Headers the engine sets itself (or that HTTP reserves), which a plugin may not set (lower-case). */
export const RESERVED_HEADERS: readonly string[];
/** Prefixes of header names the engine owns (`webhook-`, `hms-`). */
export const RESERVED_PREFIXES: readonly string[];

/** Why the engine would refuse a plugin's output. */
export class Refusal extends Error {
  /** A refusal with the error code the engine records and a message saying which rule. */
  constructor(code: 'malformed-output' | 'output-too-large', message: string);
  /** The error code the engine records: `malformed-output` or `output-too-large`. */
  code: 'malformed-output' | 'output-too-large';
}

/**
 * Checks an event type: dot-separated segments of ASCII letters, digits, `_` and `-`, at most
 * 128 bytes (`tax.rate.updated`); so not `.`, `..`, nor a leading or trailing dot.
 */
export function checkEventType(eventType: string): string | null;

/** Checks a destination name or entity key (`what` names it): 1 to 1024 bytes, no control characters. */
export function checkName(what: string, value: string): string | null;

/** Checks a version: the engine keeps versions as signed 64-bit integers, so at most 2^63 - 1. */
export function checkVersion(version: bigint | number | null | undefined): string | null;

/** Checks a content type: a valid header value of the form `type/subtype`, parameters allowed. */
export function checkContentType(value: string): string | null;

/** Whether the engine sets a header itself (any case): `RESERVED_HEADERS`, or a name with a `RESERVED_PREFIXES` prefix. */
export function isReservedHeader(name: string): boolean;

/** Checks a header a plugin sets: a valid HTTP name and value, and not one the engine sets. */
export function checkHeader(name: string, value: string): string | null;

/** What one action counts against the output limit: 64 bytes plus its bodies, names, key, content type and headers. */
export function actionSize(action: Action): number;

/** The first rule `action` breaks, or null. */
export function checkAction(action: Action): string | null;

/** Throws an `output-too-large` Refusal when `size` is over `limit`. */
export function checkSize(size: number, limit: number): void;

/**
 * Checks a handler's actions as the engine does, throwing a Refusal: their count against
 * `maxActions` (default 256), their total size against `limit` (default 1 MiB), then each.
 */
export function checkActions(actions: readonly Action[], limit?: number, maxActions?: number): void;

/** Cuts a log line to 4096 bytes on a character boundary, saying how much was cut (as the engine does). */
export function truncateLogLine(line: string): string;
