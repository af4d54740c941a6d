// A test harness: runs a plugin module's logic under Node (with `node --test`, or any runner),
// without WebAssembly and without the engine, with the engine's `log` and `config` behaviour
// and output rules. See testing.d.ts for the documentation of every export.

import { readFileSync } from 'node:fs';
import { __setHost, toJson } from './index.js';
import { runTransform, runHandle, runResolve, worldOf } from './run.js';
import * as rules from './rules.js';
import { byBytes, parseFixtures, parseJson, sameJson, writeJson } from './fixtures.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What a plugin returned for one call, with what it logged on the way. */
export class Outcome {
  constructor(fields) {
    Object.assign(this, fields);
  }

  /** Whether the plugin returned a result the engine accepts (not an error, not a refused output). */
  get ok() {
    return this.error === undefined && this.refusal === undefined;
  }

  /** The result; throws the plugin's error, or the refusal when the engine would refuse the result. */
  unwrap() {
    if (this.error !== undefined) {
      throw new Error(`the plugin failed (${this.error.kind}): ${this.error.message}`);
    }
    if (this.refusal !== undefined) throw this.refusal;
    return this.result;
  }

  /** A transformer's payload (or a merged resolution's) parsed as JSON. */
  json() {
    const result = this.unwrap();
    const payload = result instanceof Uint8Array ? result : result.val;
    if (!(payload instanceof Uint8Array)) {
      throw new Error(`the result has no payload to read as JSON: ${result.tag ?? typeof result}`);
    }
    return JSON.parse(decoder.decode(payload));
  }

  /** The actions of a handler in a readable form: bodies and payloads decoded as JSON when they are. */
  actions() {
    return this.unwrap().map(readable);
  }
}

function decode(payload) {
  const text = decoder.decode(payload);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function readable(action) {
  const v = action.val;
  const drop = (o) => Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined));
  switch (action.tag) {
    case 'deliver':
      return { deliver: drop({ ...v, body: decode(v.body), headers: v.headers.length ? v.headers : undefined }) };
    case 'emit':
      return { emit: drop({ ...v, payload: decode(v.payload) }) };
    default:
      return { drop: v };
  }
}

/** Stands in for the engine while a plugin module runs under Node. */
export class TestHost {
  constructor() {
    this.config = new Map();
    this.outputLimit = rules.DEFAULT_OUTPUT_LIMIT;
    this.actionLimit = rules.DEFAULT_ACTION_LIMIT;
  }

  /** Sets one key of the route's plugin configuration. */
  withConfig(key, value) {
    this.config.set(String(key), String(value));
    return this;
  }

  /** Sets the output limit in bytes, as `limits.output` does in the engine. */
  withOutputLimit(bytes) {
    this.outputLimit = bytes;
    return this;
  }

  /** Sets how many actions a handler may return, as `limits.actions` does in the engine. */
  withActionLimit(actions) {
    this.actionLimit = actions;
    return this;
  }

  /** Runs a transformer module on one event; throws a `Refusal` when the engine would refuse the output. */
  transform(plugin, event) {
    return accepted(this.tryTransform(plugin, event));
  }

  /** Runs a handler module on one event; throws a `Refusal` when the engine would refuse the output. */
  handle(plugin, event) {
    return accepted(this.tryHandle(plugin, event));
  }

  /** Runs a resolver module on two versions of an entity; throws a `Refusal` when the engine would refuse the output. */
  resolve(plugin, current, incoming) {
    return accepted(this.tryResolve(plugin, current, incoming));
  }

  /** As `transform`, but a refusal is returned in the outcome's `refusal`. */
  tryTransform(plugin, event) {
    return this.#run(() => runTransform(plugin, event), (payload) => rules.checkSize(payload.length, this.outputLimit));
  }

  /** As `handle`, but a refusal is returned in the outcome's `refusal`. */
  tryHandle(plugin, event) {
    return this.#run(() => runHandle(plugin, event), (actions) => rules.checkActions(actions, this.outputLimit, this.actionLimit));
  }

  /** As `resolve`, but a refusal is returned in the outcome's `refusal`. */
  tryResolve(plugin, current, incoming) {
    return this.#run(() => runResolve(plugin, current, incoming), (r) => {
      if (r.tag === 'merged') rules.checkSize(r.val.length, this.outputLimit);
    });
  }

  #run(plugin, check) {
    const logs = [];
    // As in the engine, `entries` is sorted by key (by its bytes, as Rust sorts strings).
    const config = new Map([...this.config].sort(([a], [b]) => byBytes(a, b)));
    const previous = __setHost({
      log(level, message) {
        // As in the engine: long lines are cut, and lines past the per-event cap dropped.
        if (logs.length < rules.MAX_LOG_LINES) logs.push({ level, message: rules.truncateLogLine(message) });
      },
      get: (key) => config.get(key),
      entries: () => [...config],
    });
    let outcome;
    try {
      outcome = new Outcome({ result: plugin(), logs });
    } catch (e) {
      // run.js turns anything the plugin throws into a PluginError, whose payload is the WIT error.
      if (e && e.payload) {
        outcome = new Outcome({ error: e.payload, logs });
      } else {
        throw e;
      }
    } finally {
      __setHost(previous);
    }
    if (outcome.ok) {
      try {
        check(outcome.result);
      } catch (e) {
        if (e instanceof rules.Refusal) return new Outcome({ ...outcome, refusal: e });
        throw e;
      }
    }
    return outcome;
  }
}

function accepted(outcome) {
  if (outcome.refusal) {
    throw new rules.Refusal(
      outcome.refusal.code,
      `the engine would refuse this output (${outcome.refusal.code}): ${outcome.refusal.message}`,
    );
  }
  return outcome;
}

const isBytes = (v) => v instanceof Uint8Array || v instanceof ArrayBuffer;
const asBytes = (v) => (v instanceof ArrayBuffer ? new Uint8Array(v) : v);
const bigint = (v) => (v === undefined || v === null ? undefined : BigInt(v));

function headerList(headers) {
  if (headers === undefined) return [];
  const list = Array.isArray(headers) ? headers : Object.entries(headers).map(([name, value]) => ({ name, value }));
  return list.map(({ name, value }) => ({ name: String(name), value: String(value) }));
}

/**
 * An event as the engine gives it to a plugin, with `payload` (bytes, a string, or a value
 * sent as JSON) and defaults for the rest (`fields` overrides any of them).
 */
export function event(eventType, payload, fields = {}) {
  const body = isBytes(payload) ? asBytes(payload) : typeof payload === 'string' ? encoder.encode(payload) : toJson(payload);
  return {
    id: 'test-event-1',
    eventType,
    origin: 'hms',
    key: undefined,
    contentType: 'application/json',
    ...fields,
    // The WIT's u64 and s64 are BigInts in JavaScript: numbers are taken and converted.
    version: bigint(fields.version),
    timestamp: bigint(fields.timestamp ?? 0),
    headers: headerList(fields.headers),
    payload: body,
  };
}

/** One version of an entity, for a resolver, with its payload as JSON (or bytes as they are). */
export function entity(key, version, value, fields = {}) {
  return {
    key,
    eventId: `test-event-${version ?? 0}`,
    contentType: 'application/json',
    ...fields,
    version: bigint(version),
    timestamp: bigint(fields.timestamp ?? 0),
    payload: isBytes(value) ? asBytes(value) : toJson(value),
  };
}

// ---- Fixtures: the engine's fixtures files, run through the harness.

/** What the engine makes of a fixture's event (engine/sandbox/src/fixtures.rs, `to_event`). */
function fixtureEvent(e, index) {
  return {
    id: `fixture-${index}`,
    eventType: e.type,
    origin: e.origin ?? 'hms',
    key: e.key,
    version: e.version,
    timestamp: e.timestamp ?? 0n,
    contentType: 'application/json',
    payload: encoder.encode(writeJson(e.payload)),
    headers: Object.keys(e.headers ?? {}).sort(byBytes)
      .map((name) => ({ name: name.replace(/[A-Z]+/g, (s) => s.toLowerCase()), value: e.headers[name] })),
  };
}

/** The payload or body `got` compared as JSON with `expected`: null when they are the same, else what differs. */
function sameJsonAs(what, expected, got) {
  let value;
  try {
    value = parseJson(got);
  } catch {
    return `expected ${what} ${writeJson(expected)}, got bytes that are not JSON: ${decoder.decode(got)}`;
  }
  return sameJson(expected, value) ? null : `expected ${what} ${writeJson(expected)}, got ${writeJson(value)}`;
}

/** An optional field compared when the fixture gives it. */
function sameOpt(what, expected, got) {
  if (expected === undefined || expected === got) return null;
  const show = (v) => (v === undefined ? 'none' : typeof v === 'string' ? JSON.stringify(v) : String(v));
  return `expected ${what} ${show(expected)}, got ${show(got)}`;
}

function describeAction(action) {
  const v = action.val;
  const text = (bytes) => decoder.decode(bytes);
  switch (action.tag) {
    case 'deliver':
      return `a delivery to \`${v.destination}\` of ${text(v.body)}`;
    case 'emit':
      return `an emission of \`${v.eventType}\` with ${text(v.payload)}`;
    default:
      return `a drop (${JSON.stringify(v)})`;
  }
}

function describe(output) {
  return output instanceof Uint8Array
    ? `the payload ${decoder.decode(output)}`
    : `[${output.map(describeAction).join(', ')}]`;
}

/** One expected action against the one the plugin returned (`ExpectedAction::check`). */
function checkAction([kind, e], got) {
  const v = got.val;
  if (kind === 'deliver' && got.tag === 'deliver') {
    if (e.destination !== v.destination) {
      return `expected a delivery to \`${e.destination}\`, got one to \`${v.destination}\``;
    }
    const differs = sameJsonAs('the body', e.body, v.body)
      ?? sameOpt('the key', e.key, v.key)
      ?? sameOpt('the version', e.version, v.version)
      ?? sameOpt('the content type', e.content_type, v.contentType);
    if (differs || e.headers === undefined) return differs;
    // The engine lower-cases the names of the headers a plugin sets; the fixture's are compared as written.
    const gotHeaders = Object.fromEntries(v.headers.map((h) => [h.name.replace(/[A-Z]+/g, (s) => s.toLowerCase()), h.value]));
    return sameJson(e.headers, gotHeaders)
      ? null
      : `expected headers ${JSON.stringify(e.headers)}, got ${JSON.stringify(gotHeaders)}`;
  }
  if (kind === 'emit' && got.tag === 'emit') {
    if (e.type !== v.eventType) return `expected an emission of \`${e.type}\`, got one of \`${v.eventType}\``;
    return sameJsonAs('the payload', e.payload, v.payload)
      ?? sameOpt('the key', e.key, v.key)
      ?? sameOpt('the version', e.version, v.version);
  }
  if (kind === 'drop' && got.tag === 'drop' && e === v) return null;
  const wanted = kind === 'deliver' ? `a delivery to \`${e.destination}\``
    : kind === 'emit' ? `an emission of \`${e.type}\`` : `a drop (${JSON.stringify(e)})`;
  return `expected ${wanted}, got ${describeAction(got)}`;
}

/** What the engine would make of one case: null when it passes, else what differed. */
function checkCase(plugin, world, host, { event: e, expect: [kind, expected] }, index) {
  let outcome;
  let error;
  if (world === 'resolver') {
    error = { code: 'wrong-world', message: 'the plugin implements the resolver world, which cannot run on events' };
  } else {
    const input = fixtureEvent(e, index);
    outcome = world === 'transformer' ? host.tryTransform(plugin, input) : host.tryHandle(plugin, input);
    if (outcome.error) {
      const { kind: code, message } = outcome.error;
      error = { code, message: `the plugin failed the event (${code}): ${message}` };
    } else if (outcome.refusal) {
      error = { code: outcome.refusal.code, message: outcome.refusal.message };
    }
  }
  if (kind === 'error') {
    if (!error) return `expected error \`${expected}\`, got a result: ${describe(outcome.result)}`;
    return error.code === expected ? null : `expected error \`${expected}\`, got: ${error.message}`;
  }
  if (error) return `failed: ${error.message}`;
  const output = outcome.result;
  if (kind === 'payload') {
    return world === 'transformer'
      ? sameJsonAs('the payload', expected, output)
      : `expected a payload (a transformer's output), got ${describe(output)}`;
  }
  if (world !== 'handler') return `expected actions (a handler's output), got ${describe(output)}`;
  if (expected.length !== output.length) {
    return `expected ${expected.length} action(s), got ${output.length}: ${describe(output)}`;
  }
  for (let j = 0; j < expected.length; j += 1) {
    const differs = checkAction(expected[j], output[j]);
    if (differs) return `action ${j}: ${differs}`;
  }
  return null;
}

/**
 * Runs a fixtures file's cases (a path, or the parsed array) through the harness, matching as
 * the engine's `sync-engine plugin test` does; returns each case's name, whether it passed, and
 * what differed when it did not. Throws when the engine would refuse the fixtures themselves.
 */
export function runFixtures(plugin, fixtures, { config = {}, outputLimit, actionLimit } = {}) {
  const cases = parseFixtures(
    typeof fixtures === 'string' || fixtures instanceof URL ? readFileSync(fixtures, 'utf8') : fixtures,
  );
  const world = worldOf(plugin);
  const host = new TestHost();
  for (const [key, value] of Object.entries(config)) host.withConfig(key, value);
  if (outputLimit !== undefined) host.withOutputLimit(outputLimit);
  if (actionLimit !== undefined) host.withActionLimit(actionLimit);
  return cases.map((c, i) => {
    const name = c.name ?? `case ${i} (${c.event.type})`;
    const message = checkCase(plugin, world, host, c, i);
    return message === null ? { name, ok: true } : { name, ok: false, message };
  });
}

export { Refusal } from './rules.js';
