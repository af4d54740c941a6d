// The types of `@hms/sync-sdk`: what a plugin module written in TypeScript (or checked with
// `// @ts-check`) sees. The WIT's own types (Event, Action, Entity, Resolution...) are
// generated from wit/sync.wit into types/ (`npm run types`); this file names them and types
// the helpers of index.js in their terms.

/// <reference path="./types/interfaces/hms-sync-types.d.ts" />
/// <reference path="./types/interfaces/hms-sync-resolve.d.ts" />
/// <reference path="./types/interfaces/hms-sync-log.d.ts" />

import type * as wit from 'hms:sync/types@0.1.0';
import type * as resolve from 'hms:sync/resolve@0.1.0';
import type * as logging from 'hms:sync/log@0.1.0';

// ---- The WIT's types, under the names a plugin uses.

/** One change event, as the engine accepted and stored it: what `transform` and `handle` receive. */
export type Event = wit.Event;
/** One header: a name and a value. */
export type Header = wit.Header;
/** What kind of failure a plugin reports: `invalid-input`, `rejected` or `internal`. */
export type ErrorKind = wit.ErrorKind;
/** The WIT `error` a plugin fails an event with: its kind and a message for the operator. */
export type ErrorPayload = wit.Error;
/** A delivery of a body to a destination named in the engine's configuration. */
export type Delivery = wit.Delivery;
/** An event to publish on the HMS bus. */
export type Emission = wit.Emission;
/** One thing the engine should do because of an event: built with `deliver`, `emit` or `drop`. */
export type Action = wit.Action;
/** The action `deliver` builds. */
export type ActionDeliver = wit.ActionDeliver;
/** The action `emit` builds. */
export type ActionEmit = wit.ActionEmit;
/** The action `drop` builds. */
export type ActionDrop = wit.ActionDrop;
/** One version of an entity, as a resolver receives it (the current one and the incoming one). */
export type Entity = resolve.Entity;
/** A resolver's answer: built with `keep`, `replace` or `merged`. */
export type Resolution = resolve.Resolution;
/** The resolution `keep` builds. */
export type ResolutionKeep = resolve.ResolutionKeep;
/** The resolution `replace` builds. */
export type ResolutionReplace = resolve.ResolutionReplace;
/** The resolution `merged` builds. */
export type ResolutionMerged = resolve.ResolutionMerged;
/** How important a log line is: `trace`, `debug`, `info`, `warn` or `error`. */
export type LogLevel = logging.Level;

// ---- The plugin's own function, per world.

/**
 * A payload or body as a plugin gives it: bytes are sent as they are, a string as UTF-8, and
 * any other value as JSON (`JSON.stringify`).
 */
export type Body = Uint8Array | ArrayBuffer | string | number | boolean | null | object;

/**
 * A transformer's function, exported as `transform`: maps the event's payload to the payload
 * to send on (the route says where). It runs synchronously: a Promise is an `internal` error.
 */
export type Transform = (event: Event) => Body;

/**
 * A handler's function, exported as `handle`: turns the event into the actions the engine
 * should take (an empty list when it needs nothing). It runs synchronously.
 */
export type Handle = (event: Event) => readonly Action[];

/**
 * A resolver's function, exported as `resolve`: decides between the version of an entity a
 * destination holds (`current`) and the incoming one. It runs synchronously.
 */
export type Resolve = (current: Entity, incoming: Entity) => Resolution;

/** A plugin module of the transformer world: it exports `transform`. */
export interface TransformerModule {
  /** The plugin's function. */
  transform: Transform;
}

/** A plugin module of the handler world: it exports `handle`. */
export interface HandlerModule {
  /** The plugin's function. */
  handle: Handle;
}

/** A plugin module of the resolver world: it exports `resolve`. */
export interface ResolverModule {
  /** The plugin's function. */
  resolve: Resolve;
}

/** A plugin module of any world (it exports exactly one of `transform`, `handle`, `resolve`). */
export type PluginModule = TransformerModule | HandlerModule | ResolverModule;

// ---- Errors.

/**
 * A failure the plugin reports for one event: the engine records its kind and message, fails
 * the event and keeps it for an operator. Throw one (built with `invalidInput`, `rejected` or
 * `internal`); anything else a plugin throws is recorded as `internal`.
 */
export class PluginError extends Error {
  /** Throws a TypeError when `kind` is not one of the WIT's error kinds. */
  constructor(kind: ErrorKind, message: string);
  /** What kind of failure this is. */
  kind: ErrorKind;
  /** The WIT `error` the component returns for it. */
  readonly payload: ErrorPayload;
}

/** An `invalid-input` error: the event is not what the plugin can read. Name the field. */
export function invalidInput(message: string): PluginError;

/** A `rejected` error: the event is readable, but the plugin refuses it on purpose. */
export function rejected(message: string): PluginError;

/** An `internal` error: the plugin itself failed. */
export function internal(message: string): PluginError;

// ---- Reading the event.

/** Anything with a payload: an `Event` or an `Entity`. */
export interface HasPayload {
  /** The payload's bytes. */
  readonly payload: Uint8Array;
}

/** The payload as text (UTF-8); throws `invalid-input` when it is not UTF-8. */
export function text(event: HasPayload): string;

/** A field's type in a `Shape`: the JSON type it must have. `integer` is a number without a fraction; `any` takes anything. */
export type FieldType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'any';

/**
 * What a `Shape` says of one field: its type (`'number'`), the same with a `?` when the field
 * may be absent or null (`'string?'`), or a shape for an object (required).
 */
export type FieldSpec = FieldType | `${FieldType}?` | Shape;

/** The fields a JSON object must have, for `json` and `check`: `{rate: 'number', year: 'integer', note: 'string?'}`. */
export interface Shape {
  readonly [field: string]: FieldSpec;
}

/** The TypeScript type of a value of the given `FieldType`. */
export type FieldValue<T extends FieldType> =
  T extends 'string' ? string
    : T extends 'number' | 'integer' ? number
      : T extends 'boolean' ? boolean
        : T extends 'object' ? { [key: string]: unknown }
          : T extends 'array' ? unknown[]
            : unknown;

/** The TypeScript type of a field with the given `FieldSpec`. */
export type SpecValue<F> =
  F extends `${infer T extends FieldType}?` ? FieldValue<T> | null
    : F extends FieldType ? FieldValue<F>
      : F extends Shape ? Shaped<F>
        : never;

/** The TypeScript type of an object `check` accepted against shape `S` (fields it does not name are not typed). */
export type Shaped<S extends Shape> = {
  -readonly [K in keyof S as S[K] extends `${string}?` ? never : K]: SpecValue<S[K]>;
} & {
  -readonly [K in keyof S as S[K] extends `${string}?` ? K : never]?: SpecValue<S[K]>;
};

/**
 * The payload parsed as JSON, with the fields `shape` names checked and typed:
 * `const { rate, year } = json(event, { rate: 'number', year: 'integer' })`. Throws
 * `invalid-input` when the payload is not JSON, or naming the first field missing (``missing
 * field `rate` ``) or of the wrong type (``invalid type for field `year`: expected an
 * integer, found the string "2025"``).
 */
export function json<const S extends Shape>(event: HasPayload, shape: S): Shaped<S>;
/** The payload parsed as JSON, unchecked (`T` is what you take it to be); throws `invalid-input` when it is not JSON. */
export function json<T = unknown>(event: HasPayload): T;

/**
 * Checks `value` against `shape` (see `json`) and returns it, typed; throws `invalid-input`
 * naming the first field missing or of the wrong type. `path` prefixes the field names in the
 * message (`address.city`).
 */
export function check<const S extends Shape>(value: unknown, shape: S, path?: string): Shaped<S>;

// ---- Building the result.

/** A body as the engine takes it: bytes as they are, a string as UTF-8, anything else as JSON. */
export function bytes(body: Body): Uint8Array;

/** `value` as JSON bytes; throws `internal` when it has no JSON form (`undefined`, a function). */
export function toJson(value: unknown): Uint8Array;

/** A WIT `u64` or `s64` as a plugin may give it: a safe integer, or a BigInt. */
export type Integer = number | bigint;

/** The options of `deliver`. */
export interface DeliverOptions {
  /** The body's media type; `application/json` for a body sent as JSON, else the destination's. */
  contentType?: string;
  /** Extra request headers, as an object or a list; headers the engine sets (`host`, `hms-*`, `webhook-*`, ...) are refused. */
  headers?: Readonly<Record<string, string>> | readonly Header[];
  /** The entity's key, for ordering and conflict checks; the event's when absent. */
  key?: string;
  /** The entity's version (at most 2^63 - 1); the event's when absent. */
  version?: Integer;
  /** When this version was made, in Unix milliseconds; the event's when absent. */
  timestamp?: Integer;
}

/** The options of `emit`. */
export interface EmitOptions {
  /** The payload's media type; `application/json` for a payload sent as JSON, and when absent. */
  contentType?: string;
  /** The key of the entity the new event is about; the handled event's when absent. */
  key?: string;
  /** The entity version the new event carries (at most 2^63 - 1); the handled event's when absent. */
  version?: Integer;
  /** When the change happened, in Unix milliseconds; the handled event's when absent. */
  timestamp?: Integer;
}

/**
 * An action delivering `body` to the destination named `destination` in the engine's
 * configuration. A body that is not bytes or a string is sent as JSON. Throws `internal` when
 * `version` or `timestamp` is not an integer the WIT can carry.
 */
export function deliver(destination: string, body: Body, options?: DeliverOptions): ActionDeliver;

/**
 * An action publishing an event of type `eventType` (`tax.rate.updated`) on the HMS bus. A
 * payload that is not bytes or a string is sent as JSON. Throws `internal` when `version` or
 * `timestamp` is not an integer the WIT can carry.
 */
export function emit(eventType: string, payload: Body, options?: EmitOptions): ActionEmit;

/** An action dropping the event on purpose; `reason` (at most 1024 bytes) is recorded. */
export function drop(reason: string): ActionDrop;

/** A resolver's answer: keep the version the destination holds (the incoming one is superseded). */
export function keep(): ResolutionKeep;

/** A resolver's answer: deliver the incoming version as it is. */
export function replace(): ResolutionReplace;

/** A resolver's answer: deliver this payload, the two versions merged (bytes, a string, or a value sent as JSON). */
export function merged(payload: Body): ResolutionMerged;

// ---- What the engine offers.

/** Writes log lines at one level: the parts are joined with spaces, values that are not strings written as JSON. */
export type LogFunction = (...parts: unknown[]) => void;

/**
 * Log lines, recorded by the engine with the plugin's name and version and the event's id.
 * A line longer than 4096 bytes is cut; lines past 256 for one event are dropped.
 */
export const log: Readonly<{
  /** Very detailed tracing, normally off. */
  trace: LogFunction;
  /** Detail useful while debugging a plugin. */
  debug: LogFunction;
  /** A normal, noteworthy step. */
  info: LogFunction;
  /** Something unexpected that the plugin could handle. */
  warn: LogFunction;
  /** Something failed. */
  error: LogFunction;
}>;

/** The route's settings for this plugin: the string keys and values under its `config`. */
export const config: Readonly<{
  /** The value of one key, or undefined when the route does not set it. */
  get(key: string): string | undefined;
  /** Every key and value the route sets, sorted by key. */
  entries(): Array<[string, string]>;
}>;

/** What `log` and `config` call: the engine's imports, or the test harness's stand-ins. */
export interface Host {
  /** Records one log line. */
  log(level: LogLevel, message: string): void;
  /** One key of the route's configuration. */
  get(key: string): string | undefined;
  /** The route's configuration, sorted by key. */
  entries(): Array<[string, string]>;
}

/**
 * Installs what `log` and `config` call, and returns what it replaces. Used by the component's
 * entry and the test harness; a plugin never calls it.
 * @internal
 */
export function __setHost(next: Host): Host;

/**
 * The engine's output rules for single values, as the harness applies them (each returns
 * null when the value passes, else why it does not): `checkEventType(type)`,
 * `checkName(what, value)` (a destination or key), `checkVersion(version)`,
 * `checkContentType(value)` and `checkHeader(name, value)`. A plugin may use them to check
 * input it turns into output (an event type read from its configuration).
 */
export { checkEventType, checkName, checkVersion, checkContentType, checkHeader } from './rules.js';
