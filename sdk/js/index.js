// The HMS Synchronization Engine's SDK for plugins written in JavaScript or TypeScript.
//
// A plugin is an ES module that exports one function: `transform(event)` (the transformer
// world), `handle(event)` (the handler world) or `resolve(current, incoming)` (the resolver
// world). `hms-sync-build` bundles it with this SDK and makes it a WebAssembly component; the
// test harness (`@hms/sync-sdk/testing`) runs the same module under Node. See index.d.ts for
// the documentation of every export.

import { checkEventType, checkName, checkVersion, checkContentType, checkHeader } from './rules.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * What `log` and `config` call: the engine's imports in a component, the test harness's
 * stand-ins under it. Elsewhere (calling a plugin's function directly under Node), as in the
 * Rust SDK: log lines go to stderr and the configuration is empty.
 */
let host = {
  log(level, message) {
    console.error(`[${level}] ${message}`);
  },
  get: () => undefined,
  entries: () => [],
};

/** Installs what `log` and `config` call (the component's entry, the harness); returns what it replaces. */
export function __setHost(next) {
  const previous = host;
  host = next;
  return previous;
}

const ERROR_KINDS = ['invalid-input', 'rejected', 'internal'];

/** A failure the plugin reports for one event: the engine records its kind and message. */
export class PluginError extends Error {
  constructor(kind, message) {
    if (!ERROR_KINDS.includes(kind)) {
      throw new TypeError(`unknown error kind \`${kind}\`: one of ${ERROR_KINDS.join(', ')}`);
    }
    super(message);
    this.name = 'PluginError';
    this.kind = kind;
    // What the component's bindings return as the WIT `error` when an export throws.
    Object.defineProperty(this, 'payload', { value: { kind, message: String(message) } });
  }
}

export function invalidInput(message) {
  return new PluginError('invalid-input', message);
}

export function rejected(message) {
  return new PluginError('rejected', message);
}

export function internal(message) {
  return new PluginError('internal', message);
}

/** The payload as text (UTF-8); `invalid-input` when it is not. */
export function text(event) {
  try {
    return decoder.decode(event.payload);
  } catch {
    throw invalidInput('the payload is not UTF-8 text');
  }
}

/**
 * The payload parsed as JSON; `invalid-input` when it is not JSON. With `shape`, the fields
 * it names are checked and the error names the first one missing or mistyped.
 */
export function json(event, shape) {
  let value;
  try {
    value = JSON.parse(text(event));
  } catch (e) {
    if (e instanceof PluginError) throw e;
    throw invalidInput(`the payload is not JSON: ${e.message}`);
  }
  if (shape !== undefined) check(value, shape);
  return value;
}

const FIELD_TYPES = {
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number',
  integer: (v) => Number.isInteger(v),
  boolean: (v) => typeof v === 'boolean',
  object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
  array: (v) => Array.isArray(v),
  any: () => true,
};

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${value}`;
}

/**
 * Checks `value` against `shape` (`{field: 'string' | 'number' | 'integer' | 'boolean' |
 * 'object' | 'array' | 'any'}`, a trailing `?` for an optional field, a nested shape for an
 * object); `invalid-input` naming the first field missing or of the wrong type.
 */
export function check(value, shape, path = '') {
  if (!FIELD_TYPES.object(value)) {
    throw invalidInput(`${path ? `the field \`${path}\`` : 'the payload'} should be an object, found ${describe(value)}`);
  }
  for (const [field, want] of Object.entries(shape)) {
    const name = path ? `${path}.${field}` : field;
    const optional = typeof want === 'string' && want.endsWith('?');
    const type = optional ? want.slice(0, -1) : want;
    if (!Object.hasOwn(value, field) || value[field] === undefined) {
      if (optional) continue;
      throw invalidInput(`missing field \`${name}\``);
    }
    if (typeof type === 'object') {
      check(value[field], type, name);
    } else if (!Object.hasOwn(FIELD_TYPES, type)) {
      throw new TypeError(`unknown field type \`${type}\` for \`${name}\``);
    } else if (!(optional && value[field] === null) && !FIELD_TYPES[type](value[field])) {
      throw invalidInput(`invalid type for field \`${name}\`: expected ${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}, found ${describe(value[field])}`);
    }
  }
  return value;
}

/** A body as the engine takes it: bytes as they are, a string as UTF-8, anything else as JSON. */
export function bytes(body) {
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (typeof body === 'string') return encoder.encode(body);
  return toJson(body);
}

/** `value` as JSON bytes. */
export function toJson(value) {
  const json = JSON.stringify(value);
  if (json === undefined) throw internal(`cannot encode ${typeof value} as JSON`);
  return encoder.encode(json);
}

const U64_MAX = (1n << 64n) - 1n;
const S64_MIN = -(1n << 63n);
const S64_MAX = (1n << 63n) - 1n;

/** An optional WIT integer (`u64` version, `s64` timestamp) as the BigInt the bindings take. */
function bigintOrUndefined(what, value, min, max) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw internal(`the ${what} must be an integer (a BigInt past 2^53), not ${value}`);
  }
  if (typeof value !== 'number' && typeof value !== 'bigint') {
    throw internal(`the ${what} must be a number or a BigInt, not ${typeof value} ${String(value)}`);
  }
  const big = BigInt(value);
  if (big < min || big > max) {
    throw internal(`the ${what} ${big} is out of range: ${min} to ${max}`);
  }
  return big;
}

const version = (value) => bigintOrUndefined('version', value, 0n, U64_MAX);
const timestamp = (value) => bigintOrUndefined('timestamp', value, S64_MIN, S64_MAX);

function headersOf(headers) {
  if (headers === undefined) return [];
  const list = Array.isArray(headers)
    ? headers
    : Object.entries(headers).map(([name, value]) => ({ name, value }));
  return list.map(({ name, value }) => ({ name: String(name), value: String(value) }));
}

/**
 * A delivery of `body` to the destination named `destination`. A body that is not bytes or a
 * string is sent as JSON. `options`: `contentType`, `headers` (an object or a list of
 * `{name, value}`), `key`, `version`, `timestamp`.
 */
export function deliver(destination, body, options = {}) {
  const isJson = !(body instanceof Uint8Array || body instanceof ArrayBuffer || typeof body === 'string');
  return {
    tag: 'deliver',
    val: {
      destination,
      body: bytes(body),
      contentType: options.contentType ?? (isJson ? 'application/json' : undefined),
      headers: headersOf(options.headers),
      key: options.key,
      version: version(options.version),
      timestamp: timestamp(options.timestamp),
    },
  };
}

/**
 * An event of type `eventType` published on the HMS bus. A payload that is not bytes or a
 * string is sent as JSON. `options`: `contentType`, `key`, `version`, `timestamp`.
 */
export function emit(eventType, payload, options = {}) {
  const isJson = !(payload instanceof Uint8Array || payload instanceof ArrayBuffer || typeof payload === 'string');
  return {
    tag: 'emit',
    val: {
      eventType,
      payload: bytes(payload),
      contentType: options.contentType ?? (isJson ? 'application/json' : undefined),
      key: options.key,
      version: version(options.version),
      timestamp: timestamp(options.timestamp),
    },
  };
}

/** The event dropped on purpose; `reason` is recorded. */
export function drop(reason) {
  return { tag: 'drop', val: String(reason) };
}

/** A resolver's answer: keep the version the destination holds. */
export function keep() {
  return { tag: 'keep' };
}

/** A resolver's answer: deliver the incoming version as it is. */
export function replace() {
  return { tag: 'replace' };
}

/** A resolver's answer: deliver this payload (bytes, a string, or a value sent as JSON). */
export function merged(payload) {
  return { tag: 'merged', val: bytes(payload) };
}

function logAt(level) {
  return (...parts) => host.log(level, parts.map((p) => (typeof p === 'string' ? p : safeString(p))).join(' '));
}

function safeString(value) {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return typeof value === 'object' ? JSON.stringify(value) : String(value);
  } catch {
    return String(value);
  }
}

/** Log lines, recorded by the engine with the plugin's name, version and the event's id. */
export const log = Object.freeze({
  trace: logAt('trace'),
  debug: logAt('debug'),
  info: logAt('info'),
  warn: logAt('warn'),
  error: logAt('error'),
});

/** The route's settings for this plugin (its `config` in the engine's configuration). */
export const config = Object.freeze({
  get(key) {
    return host.get(key);
  },
  entries() {
    return host.entries();
  },
});

export { checkEventType, checkName, checkVersion, checkContentType, checkHeader };
