// The plugin-facing helpers of index.js: reading the event, building actions and resolutions,
// errors, and `log` and `config` outside the harness.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PluginError, bytes, check, config, deliver, drop, emit, internal, invalidInput, json, keep, log,
  merged, rejected, replace, text, toJson,
} from '../index.js';
import { event } from '../testing.js';

const encode = (s) => new TextEncoder().encode(s);
const decode = (b) => new TextDecoder().decode(b);

/** The error `f` throws, which must be a PluginError of `kind`. */
function failure(f, kind) {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof PluginError, `expected a PluginError, got ${e}`);
    assert.equal(e.kind, kind);
    assert.deepEqual(e.payload, { kind, message: e.message });
    return e.message;
  }
  assert.fail('expected an error');
}

test('errors carry their kind and the WIT error', () => {
  for (const [make, kind] of [[invalidInput, 'invalid-input'], [rejected, 'rejected'], [internal, 'internal']]) {
    const e = make('why');
    assert.ok(e instanceof Error && e instanceof PluginError);
    assert.equal(e.kind, kind);
    assert.equal(e.message, 'why');
    assert.deepEqual(e.payload, { kind, message: 'why' });
  }
  assert.throws(() => new PluginError('fatal', 'x'), /unknown error kind `fatal`/);
});

test('text is the payload as UTF-8, or invalid-input', () => {
  assert.equal(text(event('t', 'héllo')), 'héllo');
  const message = failure(() => text(event('t', new Uint8Array([0xff, 0xfe]))), 'invalid-input');
  assert.match(message, /not UTF-8/);
});

test('json parses the payload, or invalid-input', () => {
  assert.deepEqual(json(event('t', { a: [1, 2] })), { a: [1, 2] });
  assert.equal(json(event('t', '"s"')), 's');
  assert.match(failure(() => json(event('t', '{not json')), 'invalid-input'), /the payload is not JSON/);
  assert.match(failure(() => json(event('t', new Uint8Array([0x80]))), 'invalid-input'), /not UTF-8/);
});

test('json with a shape names the first field missing or mistyped', () => {
  const shape = { rate: 'number', year: 'integer' };
  assert.deepEqual(json(event('t', { rate: 0.07, year: 2025, extra: true }), shape), { rate: 0.07, year: 2025, extra: true });
  assert.equal(failure(() => json(event('t', { year: 2025 }), shape), 'invalid-input'), 'missing field `rate`');
  assert.equal(
    failure(() => json(event('t', { rate: 0.07, year: '2025' }), shape), 'invalid-input'),
    'invalid type for field `year`: expected an integer, found the string "2025"',
  );
  assert.equal(
    failure(() => json(event('t', { rate: 0.07, year: 2025.5 }), shape), 'invalid-input'),
    'invalid type for field `year`: expected an integer, found the number 2025.5',
  );
  assert.equal(
    failure(() => json(event('t', { rate: 'seven', year: 2025 }), shape), 'invalid-input'),
    'invalid type for field `rate`: expected a number, found the string "seven"',
  );
  assert.equal(failure(() => json(event('t', [1]), shape), 'invalid-input'), 'the payload should be an object, found an array');
  assert.equal(failure(() => json(event('t', 'null'), shape), 'invalid-input'), 'the payload should be an object, found null');
});

test('check takes every field type, optional fields and nested shapes', () => {
  const shape = {
    s: 'string', n: 'number', i: 'integer', b: 'boolean', o: 'object', a: 'array', x: 'any',
    maybe: 'string?', address: { city: 'string', zip: 'string?' },
  };
  const value = { s: '', n: 1.5, i: -3, b: false, o: {}, a: [], x: null, address: { city: 'Springfield' } };
  assert.equal(check(value, shape), value);
  assert.doesNotThrow(() => check({ ...value, maybe: null }, shape));
  assert.doesNotThrow(() => check({ ...value, maybe: 'yes' }, shape));
  assert.equal(failure(() => check({ ...value, maybe: 1 }, shape), 'invalid-input'),
    'invalid type for field `maybe`: expected a string, found the integer 1');
  assert.equal(failure(() => check({ ...value, o: [] }, shape), 'invalid-input'),
    'invalid type for field `o`: expected an object, found an array');
  assert.equal(failure(() => check({ ...value, b: 'false' }, shape), 'invalid-input'),
    'invalid type for field `b`: expected a boolean, found the string "false"');
  assert.equal(failure(() => check({ ...value, address: {} }, shape), 'invalid-input'), 'missing field `address.city`');
  assert.equal(failure(() => check({ ...value, address: 'Main St' }, shape), 'invalid-input'),
    'the field `address` should be an object, found the string "Main St"');
  // A required field may not be null.
  assert.equal(failure(() => check({ ...value, s: null }, shape), 'invalid-input'),
    'invalid type for field `s`: expected a string, found null');
  // Only the value's own fields count: `constructor` is not a field of `{}`.
  assert.equal(failure(() => check({}, { constructor: 'string' }), 'invalid-input'), 'missing field `constructor`');
  // A long string is cut in the message.
  assert.match(failure(() => check({ n: 'x'.repeat(100) }, { n: 'number' }), 'invalid-input'), /found the string "x{40}…"$/);
  assert.throws(() => check({ d: 1 }, { d: 'date' }), TypeError);
});

test('bytes: bytes as they are, a string as UTF-8, anything else as JSON', () => {
  const raw = new Uint8Array([1, 2, 3]);
  assert.equal(bytes(raw), raw);
  assert.deepEqual(bytes(raw.buffer), raw);
  assert.equal(decode(bytes('é')), 'é');
  assert.equal(decode(bytes({ a: 1 })), '{"a":1}');
  assert.equal(decode(bytes(null)), 'null');
  assert.equal(decode(bytes(5)), '5');
  assert.equal(decode(toJson('s')), '"s"');
  assert.match(failure(() => toJson(undefined), 'internal'), /cannot encode undefined as JSON/);
  assert.throws(() => toJson({ big: 1n }), TypeError);
});

test('deliver: a JSON body is application/json; bytes and strings have no content type of their own', () => {
  assert.deepEqual(deliver('state', { a: 1 }), {
    tag: 'deliver',
    val: {
      destination: 'state', body: encode('{"a":1}'), contentType: 'application/json', headers: [],
      key: undefined, version: undefined, timestamp: undefined,
    },
  });
  assert.equal(deliver('state', 'text').val.contentType, undefined);
  assert.equal(deliver('state', new Uint8Array([1])).val.contentType, undefined);
  assert.equal(deliver('state', 'x', { contentType: 'text/plain' }).val.contentType, 'text/plain');
  assert.equal(deliver('state', { a: 1 }, { contentType: 'application/vnd.state+json' }).val.contentType, 'application/vnd.state+json');
});

test('deliver: headers as an object or a list, key, version and timestamp', () => {
  const fromObject = deliver('state', '', { headers: { 'x-agency': 'irs', 'x-n': 5 }, key: 'k', version: 3, timestamp: 1700000000000 });
  assert.deepEqual(fromObject.val.headers, [{ name: 'x-agency', value: 'irs' }, { name: 'x-n', value: '5' }]);
  assert.equal(fromObject.val.key, 'k');
  assert.equal(fromObject.val.version, 3n);
  assert.equal(fromObject.val.timestamp, 1700000000000n);
  const fromList = deliver('state', '', { headers: [{ name: 'x-a', value: '1' }, { name: 'x-a', value: '2' }] });
  assert.deepEqual(fromList.val.headers, [{ name: 'x-a', value: '1' }, { name: 'x-a', value: '2' }]);
});

test('versions and timestamps: numbers become BigInts; what the WIT cannot carry is internal', () => {
  assert.equal(emit('t', {}, { version: 0 }).val.version, 0n);
  assert.equal(emit('t', {}, { version: 2n ** 64n - 1n }).val.version, 2n ** 64n - 1n);
  assert.equal(emit('t', {}, { version: null }).val.version, undefined);
  assert.equal(emit('t', {}, { timestamp: -1 }).val.timestamp, -1n, 'a timestamp before 1970 is an s64');
  assert.equal(emit('t', {}, { timestamp: -(2n ** 63n) }).val.timestamp, -(2n ** 63n));
  assert.match(failure(() => emit('t', {}, { version: -1 }), 'internal'), /the version -1 is out of range/);
  assert.match(failure(() => emit('t', {}, { version: 2n ** 64n }), 'internal'), /out of range/);
  assert.match(failure(() => emit('t', {}, { version: 1.5 }), 'internal'), /must be an integer/);
  assert.match(failure(() => emit('t', {}, { version: 2 ** 53 }), 'internal'), /a BigInt past 2\^53/);
  assert.match(failure(() => emit('t', {}, { version: '5' }), 'internal'), /a number or a BigInt/);
  assert.match(failure(() => deliver('d', {}, { timestamp: 2n ** 63n }), 'internal'), /the timestamp .* is out of range/);
});

test('emit: a JSON payload is application/json, with key and version', () => {
  assert.deepEqual(emit('tax.rate.updated', { rate: 1 }, { key: 'tax-rate/2025', version: 7 }), {
    tag: 'emit',
    val: {
      eventType: 'tax.rate.updated', payload: encode('{"rate":1}'), contentType: 'application/json',
      key: 'tax-rate/2025', version: 7n, timestamp: undefined,
    },
  });
  assert.equal(emit('t', 'raw').val.contentType, undefined);
  assert.deepEqual(emit('t', 'raw').val.payload, encode('raw'));
});

test('drop, keep, replace and merged', () => {
  assert.deepEqual(drop('not ours'), { tag: 'drop', val: 'not ours' });
  assert.deepEqual(keep(), { tag: 'keep' });
  assert.deepEqual(replace(), { tag: 'replace' });
  assert.deepEqual(merged({ a: 1 }), { tag: 'merged', val: encode('{"a":1}') });
  assert.deepEqual(merged('text'), { tag: 'merged', val: encode('text') });
});

test('outside the engine and the harness, log writes to stderr and the configuration is empty', (t) => {
  const lines = [];
  t.mock.method(console, 'error', (line) => lines.push(line));
  log.info('step', 1, { a: 1 }, new Error('boom'));
  assert.deepEqual(lines, ['[info] step 1 {"a":1} Error: boom']);
  assert.equal(config.get('anything'), undefined);
  assert.deepEqual(config.entries(), []);
});
