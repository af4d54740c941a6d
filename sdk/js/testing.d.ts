// The types of `@hms/sync-sdk/testing`: a test harness that runs a plugin module's logic under
// Node, without WebAssembly and without the engine, with the engine's `log` and `config`
// behaviour and output rules.
//
//   import { test } from 'node:test';
//   import assert from 'node:assert/strict';
//   import { TestHost, event } from '@hms/sync-sdk/testing';
//   import * as plugin from '../src/index.js';
//
//   test('maps the payload', () => {
//     const outcome = new TestHost().transform(plugin, event('tax.rate.updated', { rate: 5, year: 2024 }));
//     assert.deepEqual(outcome.json(), { newRates: 5, effectiveYear: 2024 });
//   });

import type {
  Action, Body, Entity, ErrorPayload, Event, HandlerModule, Header, Integer, LogLevel, PluginModule,
  Resolution, ResolverModule, TransformerModule,
} from './index.js';
import { Refusal } from './rules.js';

/** Why the engine would refuse a plugin's output (`malformed-output`, `output-too-large`). */
export { Refusal };

/** One line a plugin logged (cut to 4096 bytes, as the engine cuts it). */
export interface LogLine {
  /** The line's level. */
  level: LogLevel;
  /** The message. */
  message: string;
}

/** A handler's action in a readable form, as `Outcome.actions()` gives it: bodies and payloads parsed as JSON when they are JSON, else as text. */
export type ReadableAction =
  | { deliver: { destination: string; body: unknown; contentType?: string; headers?: Header[]; key?: string; version?: bigint; timestamp?: bigint } }
  | { emit: { eventType: string; payload: unknown; contentType?: string; key?: string; version?: bigint; timestamp?: bigint } }
  | { drop: string };

/** What a plugin returned for one call, with what it logged on the way. */
export class Outcome<T> {
  /** The plugin's result, when it returned one (also when the engine would refuse it: see `refusal`). */
  readonly result?: T;
  /** The error the plugin failed with, when it failed (anything it threw that is not a PluginError is `internal`). */
  readonly error?: ErrorPayload;
  /** Why the engine would refuse the result, when it would (only from the `try` methods; the others throw it). */
  readonly refusal?: Refusal;
  /** The lines the plugin logged, in order (at most 256, as in the engine). */
  readonly logs: LogLine[];
  /** Whether the plugin returned a result the engine accepts: no error, no refusal. */
  get ok(): boolean;
  /** The result; throws when the plugin failed, or the Refusal when the engine would refuse the result. */
  unwrap(): T;
  /** A transformer's payload, or a merged resolution's, parsed as JSON (`J` is what you take it to be). */
  json<J = unknown>(this: Outcome<Uint8Array> | Outcome<Resolution>): J;
  /** A handler's actions in a readable form, for `assert.deepEqual`. */
  actions(this: Outcome<Action[]>): ReadableAction[];
}

/** Stands in for the engine while a plugin module runs under Node. */
export class TestHost {
  /** A host with an empty route configuration and the engine's default limits. */
  constructor();
  /** The route's plugin configuration. */
  config: Map<string, string>;
  /** The output limit, in bytes (default 1 MiB). */
  outputLimit: number;
  /** How many actions a handler may return for one event (default 256). */
  actionLimit: number;
  /** Sets one key of the route's plugin configuration (the value as a string, as the engine's are). */
  withConfig(key: string, value: string | number | boolean): this;
  /** Sets the output limit in bytes, as the route's `limits.output` does in the engine. */
  withOutputLimit(bytes: number): this;
  /** Sets how many actions a handler may return for one event, as `limits.actions` does in the engine. */
  withActionLimit(actions: number): this;
  /** Runs a transformer module on one event; throws a Refusal when the engine would refuse its payload. */
  transform(plugin: TransformerModule, event: Event): Outcome<Uint8Array>;
  /** Runs a handler module on one event; throws a Refusal when the engine would refuse its actions. */
  handle(plugin: HandlerModule, event: Event): Outcome<Action[]>;
  /** Runs a resolver module on two versions of an entity; throws a Refusal when the engine would refuse its merged payload. */
  resolve(plugin: ResolverModule, current: Entity, incoming: Entity): Outcome<Resolution>;
  /** As `transform`, but a refusal is returned in the outcome's `refusal`. */
  tryTransform(plugin: TransformerModule, event: Event): Outcome<Uint8Array>;
  /** As `handle`, but a refusal is returned in the outcome's `refusal`. */
  tryHandle(plugin: HandlerModule, event: Event): Outcome<Action[]>;
  /** As `resolve`, but a refusal is returned in the outcome's `refusal`. */
  tryResolve(plugin: ResolverModule, current: Entity, incoming: Entity): Outcome<Resolution>;
}

/** Fields of a test event to set instead of `event`'s defaults. */
export interface EventFields {
  /** The event's id (default `test-event-1`). */
  id?: string;
  /** Where the event came from (default `hms`). */
  origin?: string;
  /** The entity's key (default none). */
  key?: string;
  /** The entity's version (default none); a number is made a BigInt. */
  version?: Integer;
  /** When the change happened, in Unix milliseconds (default 0); a number is made a BigInt. */
  timestamp?: Integer;
  /** The payload's media type (default `application/json`). */
  contentType?: string;
  /** The inbound headers the plugin sees, as an object or a list (default none). Give lower-case names, as the engine does. */
  headers?: Readonly<Record<string, string>> | readonly Header[];
}

/**
 * An event as the engine gives it to a plugin: type `eventType`, `payload` as bytes (as they
 * are), a string (as UTF-8, need not be JSON: to test bad input) or any other value (as JSON),
 * id `test-event-1`, origin `hms`, timestamp 0, no key, version or headers unless `fields` sets them.
 */
export function event(eventType: string, payload: Body, fields?: EventFields): Event;

/** Fields of a test entity to set instead of `entity`'s defaults. */
export interface EntityFields {
  /** When this version was made, in Unix milliseconds (default 0); a number is made a BigInt. */
  timestamp?: Integer;
  /** The id of the event that carried it (default `test-event-<version>`). */
  eventId?: string;
  /** The payload's media type (default `application/json`). */
  contentType?: string;
}

/** One version of the entity `key` for a resolver, carrying `value` as JSON (bytes as they are). */
export function entity(key: string, version: Integer | null | undefined, value: Body, fields?: EntityFields): Entity;

/** How `runFixtures` runs the cases: what the route would set (`sync-engine plugin test --set key=value`). */
export interface FixtureOptions {
  /** The route's plugin configuration. */
  config?: Readonly<Record<string, string>>;
  /** The output limit, in bytes (default 1 MiB). */
  outputLimit?: number;
  /** How many actions a handler may return for one event (default 256). */
  actionLimit?: number;
}

/** One fixture case's result. */
export interface FixtureResult {
  /** The case's name (`case <i> (<event type>)` when it has none, as the engine names it). */
  name: string;
  /** Whether the plugin did what the case expects. */
  ok: boolean;
  /** What differed, when it did not. */
  message?: string;
}

/**
 * Runs a fixtures file's cases (docs/plugins/fixtures.md) through the harness, matching as the
 * engine's `sync-engine plugin test` does: payloads and bodies compared as JSON (as serde_json
 * compares them: `5` is not `5.0`), `key`, `version`, `content_type` and `headers` when the case
 * gives them, errors by code. `fixtures` is the file's path (or URL), or its cases already
 * parsed (then integral numbers are taken as integers). Throws, naming the place, when the
 * engine would refuse the fixtures themselves (an unknown field, a missing one, no case).
 *
 *   const failed = runFixtures(plugin, new URL('../../my.fixtures.json', import.meta.url)).filter((r) => !r.ok);
 *   assert.deepEqual(failed, []);
 */
export function runFixtures(plugin: PluginModule, fixtures: string | URL | readonly unknown[], options?: FixtureOptions): FixtureResult[];
