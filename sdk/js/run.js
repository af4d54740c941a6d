// How a plugin module's export is called and its result turned into what the world returns:
// shared by the component's entry (made by `hms-sync-build`) and the test harness, so a plugin
// behaves the same under both.

import { PluginError, bytes, internal } from './index.js';

/** The export each world calls, and the function the plugin module must export for it. */
export const WORLDS = {
  transformer: { iface: 'transform', fn: 'transform' },
  handler: { iface: 'handle', fn: 'handle' },
  resolver: { iface: 'resolve', fn: 'resolve' },
};

/** The world a plugin module implements: the one whose function it exports. */
export function worldOf(plugin) {
  const found = Object.entries(WORLDS).filter(([, w]) => typeof plugin[w.fn] === 'function');
  if (found.length !== 1) {
    const names = Object.values(WORLDS).map((w) => `\`${w.fn}\``).join(', ');
    throw new Error(
      found.length === 0
        ? `the plugin module exports none of ${names}: export one of them`
        : `the plugin module exports ${found.map(([, w]) => `\`${w.fn}\``).join(' and ')}: export exactly one`,
    );
  }
  return found[0][0];
}

/** A failure of the plugin's own code (not a `PluginError`) as the `internal` error. */
function asPluginError(e) {
  if (e instanceof PluginError) return e;
  const what = e instanceof Error ? `${e.name}: ${e.message}` : `the plugin threw ${String(e)}`;
  return internal(what);
}

function call(fn, args) {
  let result;
  try {
    result = fn(...args);
  } catch (e) {
    throw asPluginError(e);
  }
  if (result && typeof result.then === 'function') {
    throw internal('the plugin returned a Promise: plugins run synchronously, one event at a time');
  }
  return result;
}

/** Runs a transformer: its result (bytes, a string, or a value sent as JSON) as bytes. */
export function runTransform(plugin, event) {
  const result = call(plugin.transform, [event]);
  try {
    return bytes(result);
  } catch (e) {
    throw asPluginError(e);
  }
}

// What each field of an action must be for the bindings to carry it. Checked here, in the
// component as under the harness, because the bindings do not say what is wrong: a missing list
// makes the component trap, and a string where bytes belong is sent as an empty body.
const isBytes = (v) => v instanceof Uint8Array;
const isString = (v) => typeof v === 'string';
// The bindings wrap integers out of range (a version of -1 would arrive as 2^64 - 1).
const inRange = (min, max) => (v) => (typeof v === 'bigint' || Number.isSafeInteger(v)) && v >= min && v <= max;
const isU64 = inRange(0n, (1n << 64n) - 1n);
const isS64 = inRange(-(1n << 63n), (1n << 63n) - 1n);
const optional = (check) => (v) => v === undefined || v === null || check(v);
const isHeaders = (v) => Array.isArray(v) && v.every((h) => h && isString(h.name) && isString(h.value));
const FIELDS = {
  deliver: {
    destination: isString, body: isBytes, contentType: optional(isString), headers: isHeaders,
    key: optional(isString), version: optional(isU64), timestamp: optional(isS64),
  },
  emit: {
    eventType: isString, payload: isBytes, contentType: optional(isString),
    key: optional(isString), version: optional(isU64), timestamp: optional(isS64),
  },
};

/** Why `action` cannot be carried to the engine, or null. */
function malformed(action) {
  if (!action || !['deliver', 'emit', 'drop'].includes(action.tag)) return 'is not an action';
  if (action.tag === 'drop') return isString(action.val) ? null : 'is a drop whose reason is not a string';
  const what = action.tag === 'deliver' ? 'a delivery' : 'an emission';
  if (!action.val || typeof action.val !== 'object') return `is ${what} without its fields`;
  const bad = Object.entries(FIELDS[action.tag]).find(([field, check]) => !check(action.val[field]));
  return bad ? `is ${what} whose \`${bad[0]}\` is ${describe(action.val[bad[0]])}` : null;
}

function describe(value) {
  if (value === undefined || value === null) return 'missing';
  return `not what it should be (${Array.isArray(value) ? 'an array' : typeof value})`;
}

/** Runs a handler: its result must be a list of actions (`deliver`, `emit`, `drop`). */
export function runHandle(plugin, event) {
  const result = call(plugin.handle, [event]);
  const actions = result === undefined || result === null ? [] : result;
  if (!Array.isArray(actions)) {
    throw internal('`handle` must return a list of actions (built with deliver, emit and drop)');
  }
  actions.forEach((a, i) => {
    const why = malformed(a);
    if (why) throw internal(`action ${i} ${why}: build actions with deliver, emit and drop`);
  });
  return actions;
}

/** Runs a resolver: its result must be `keep()`, `replace()` or `merged(payload)`. */
export function runResolve(plugin, current, incoming) {
  const result = call(plugin.resolve, [current, incoming]);
  if (!result || !['keep', 'replace', 'merged'].includes(result.tag) || (result.tag === 'merged' && !isBytes(result.val))) {
    throw internal('`resolve` must return keep(), replace() or merged(payload)');
  }
  return result;
}
