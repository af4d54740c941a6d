// runFixtures: fixtures files run through the harness with the engine's matching rules
// (engine/sandbox/src/fixtures.rs), and JSON compared as serde_json compares it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { config, deliver, drop, emit, invalidInput, json, keep } from '../index.js';
import { runFixtures } from '../testing.js';
import { parseJson, sameJson, writeJson } from '../fixtures.js';

/** Runs fixtures written as JSON text (from a file, as `sync-engine plugin test` reads them). */
function runText(plugin, text, options) {
  const dir = mkdtempSync(join(tmpdir(), 'hms-fixtures-'));
  try {
    const path = join(dir, 'plugin.fixtures.json');
    writeFileSync(path, text);
    return runFixtures(plugin, path, options);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const echo = { transform: (e) => e.payload };
const seen = [];
const recorder = { handle: (e) => { seen.push(e); return []; } };

test('JSON is read as serde_json reads it: integers apart from floats, exact to 2^64 - 1', () => {
  assert.equal(parseJson('5'), 5n);
  assert.equal(parseJson('-5'), -5n);
  assert.equal(parseJson('5.0'), 5);
  assert.equal(parseJson('5e0'), 5);
  assert.equal(parseJson('-0'), -0);
  assert.equal(parseJson('18446744073709551615'), 18446744073709551615n);
  assert.equal(parseJson('18446744073709551616'), 18446744073709551616, 'past u64: a float');
  assert.equal(parseJson('-9223372036854775808'), -9223372036854775808n);
  assert.equal(typeof parseJson('-9223372036854775809'), 'number', 'past i64: a float');
  assert.deepEqual(parseJson(' {"a": [1, 2.5, "x", true, null], "a": {}} '), Object.assign(Object.create(null), { a: Object.create(null) }));
  for (const bad of ['', '01', '1.', '.5', '+1', '[1,]', '{"a":1,}', "'a'", '"\u0001"', '"\\ud800"', 'nul', '1 2', '1e400', '\ufeff1']) {
    assert.throws(() => parseJson(bad), SyntaxError, JSON.stringify(bad));
  }
  assert.ok(sameJson(parseJson('{"a":1,"b":[2.5]}'), parseJson('{"b":[2.5],"a":1}')));
  assert.ok(!sameJson(parseJson('5'), parseJson('5.0')));
  assert.ok(!sameJson(parseJson('{"a":1}'), parseJson('{"a":1,"b":null}')));
  assert.ok(sameJson(parseJson('0.0'), parseJson('-0.0')));
  assert.equal(writeJson(parseJson('{"b":1,"a":[5.0,-0.0,1e21,0.5,"é"],"A":null}')), '{"A":null,"a":[5.0,-0.0,1e21,0.5,"é"],"b":1}');
  // Floats as serde_json writes them: plain from 1e-5 to below 1e16, else with an exponent.
  assert.equal(writeJson([1e15, 1e16, 123.456, 0.00001, 0.000001, -2.5e-7, 1.5e300].map(Number)),
    '[1000000000000000.0,1e16,123.456,0.00001,1e-6,-2.5e-7,1.5e300]');
});

test('the event is the engine’s: its id, origin, payload as serde_json writes it, lower-case headers', () => {
  seen.length = 0;
  const results = runText(recorder, `[
    {"event": {"type": "t", "payload": {"b": 5.0, "a": 1}, "headers": {"X-B": "2", "x-a": "1"}}, "expect": {"actions": []}},
    {"event": {"type": "u", "payload": null, "origin": "state", "key": "k", "version": 18446744073709551615, "timestamp": -5},
     "expect": {"actions": []}}
  ]`);
  assert.deepEqual(results, [{ name: 'case 0 (t)', ok: true }, { name: 'case 1 (u)', ok: true }]);
  const [first, second] = seen;
  assert.equal(first.id, 'fixture-0');
  assert.equal(first.origin, 'hms');
  assert.equal(first.key, undefined);
  assert.equal(first.version, undefined);
  assert.equal(first.timestamp, 0n);
  assert.equal(first.contentType, 'application/json');
  assert.equal(new TextDecoder().decode(first.payload), '{"a":1,"b":5.0}');
  assert.deepEqual(first.headers, [{ name: 'x-b', value: '2' }, { name: 'x-a', value: '1' }]);
  assert.equal(second.id, 'fixture-1');
  assert.equal(second.origin, 'state');
  assert.equal(second.key, 'k');
  assert.equal(second.version, 18446744073709551615n);
  assert.equal(second.timestamp, -5n);
  assert.equal(new TextDecoder().decode(second.payload), 'null');
});

test('a transformer’s payload is compared as JSON', () => {
  const results = runText(echo, `[
    {"name": "same", "event": {"type": "t", "payload": {"a": [1, "x"]}}, "expect": {"payload": {"a": [1, "x"]}}},
    {"name": "different", "event": {"type": "t", "payload": {"a": 1}}, "expect": {"payload": {"a": 2}}},
    {"name": "an integer is not a float", "event": {"type": "t", "payload": {"a": 1}}, "expect": {"payload": {"a": 1.0}}}
  ]`);
  assert.deepEqual(results, [
    { name: 'same', ok: true },
    { name: 'different', ok: false, message: 'expected the payload {"a":2}, got {"a":1}' },
    { name: 'an integer is not a float', ok: false, message: 'expected the payload {"a":1.0}, got {"a":1}' },
  ]);
  // Parsed already, `1.0` cannot be told from `1`.
  assert.deepEqual(runFixtures(echo, [{ event: { type: 't', payload: { a: 1 } }, expect: { payload: { a: 1.0 } } }]),
    [{ name: 'case 0 (t)', ok: true }]);
  assert.deepEqual(runFixtures({ transform: () => 'not json' }, [{ event: { type: 't', payload: 1 }, expect: { payload: 1 } }]),
    [{ name: 'case 0 (t)', ok: false, message: 'expected the payload 1, got bytes that are not JSON: not json' }]);
});

test('errors are matched by code', () => {
  const plugin = {
    transform(e) {
      const { n } = json(e, { n: 'integer' });
      if (n < 0) throw invalidInput('negative');
      return 'x'.repeat(n);
    },
  };
  const results = runFixtures(plugin, [
    { name: 'invalid', event: { type: 't', payload: {} }, expect: { error: 'invalid-input' } },
    { name: 'wrong code', event: { type: 't', payload: { n: -1 } }, expect: { error: 'rejected' } },
    { name: 'too large', event: { type: 't', payload: { n: 20 } }, expect: { error: 'output-too-large' } },
    { name: 'no error', event: { type: 't', payload: { n: 2 } }, expect: { error: 'invalid-input' } },
    { name: 'an unexpected error', event: { type: 't', payload: {} }, expect: { payload: 'xx' } },
  ], { outputLimit: 10 });
  assert.deepEqual(results, [
    { name: 'invalid', ok: true },
    { name: 'wrong code', ok: false, message: 'expected error `rejected`, got: the plugin failed the event (invalid-input): negative' },
    { name: 'too large', ok: true },
    { name: 'no error', ok: false, message: 'expected error `invalid-input`, got a result: the payload xx' },
    { name: 'an unexpected error', ok: false, message: 'failed: the plugin failed the event (invalid-input): missing field `n`' },
  ]);
});

test('a handler’s actions: type, payload and body as JSON; key, version, content type and headers when given', () => {
  const plugin = {
    handle: () => [
      emit('tax.rate.updated', { rate: 1 }, { key: 'k', version: 2 }),
      deliver('state', { r: 1 }, { key: 'd', version: 3, headers: { 'X-Agency': 'irs' } }),
      drop('why'),
    ],
  };
  const run = (actions) => runFixtures(plugin, [{ event: { type: 't', payload: {} }, expect: { actions } }])[0].message;
  const emitted = { emit: { type: 'tax.rate.updated', payload: { rate: 1 } } };
  const delivered = { deliver: { destination: 'state', body: { r: 1 } } };
  assert.equal(run([emitted, delivered, { drop: 'why' }]), undefined);
  assert.equal(run([
    { emit: { ...emitted.emit, key: 'k', version: 2 } },
    { deliver: { ...delivered.deliver, key: 'd', version: 3, content_type: 'application/json', headers: { 'x-agency': 'irs' } } },
    { drop: 'why' },
  ]), undefined);
  assert.equal(run([emitted]), 'expected 1 action(s), got 3: [an emission of `tax.rate.updated` with {"rate":1}, a delivery to `state` of {"r":1}, a drop ("why")]');
  assert.equal(run([{ emit: { ...emitted.emit, type: 'x' } }, delivered, { drop: 'why' }]), 'action 0: expected an emission of `x`, got one of `tax.rate.updated`');
  assert.equal(run([{ emit: { ...emitted.emit, payload: { rate: 2 } } }, delivered, { drop: 'why' }]), 'action 0: expected the payload {"rate":2}, got {"rate":1}');
  assert.equal(run([{ emit: { ...emitted.emit, key: 'other' } }, delivered, { drop: 'why' }]), 'action 0: expected the key "other", got "k"');
  assert.equal(run([{ emit: { ...emitted.emit, version: 9 } }, delivered, { drop: 'why' }]), 'action 0: expected the version 9, got 2');
  assert.equal(run([emitted, { deliver: { ...delivered.deliver, destination: 'x' } }, { drop: 'why' }]), 'action 1: expected a delivery to `x`, got one to `state`');
  assert.equal(run([emitted, { deliver: { ...delivered.deliver, content_type: 'text/plain' } }, { drop: 'why' }]),
    'action 1: expected the content type "text/plain", got "application/json"');
  // The engine lower-cases the names of the headers a plugin sets, not those of the fixture.
  assert.equal(run([emitted, { deliver: { ...delivered.deliver, headers: { 'X-Agency': 'irs' } } }, { drop: 'why' }]),
    'action 1: expected headers {"X-Agency":"irs"}, got {"x-agency":"irs"}');
  assert.equal(run([emitted, { deliver: { ...delivered.deliver, headers: {} } }, { drop: 'why' }]),
    'action 1: expected headers {}, got {"x-agency":"irs"}');
  assert.equal(run([emitted, delivered, { drop: 'other' }]), 'action 2: expected a drop ("other"), got a drop ("why")');
  assert.equal(run([delivered, emitted, { drop: 'why' }]), 'action 0: expected a delivery to `state`, got an emission of `tax.rate.updated` with {"rate":1}');
});

test('a route’s configuration and output rules apply', () => {
  const plugin = { handle: () => [emit(config.get('event-type') ?? 'a..b', {})] };
  const cases = [{ event: { type: 't', payload: {} }, expect: { actions: [{ emit: { type: 'renamed', payload: {} } }] } }];
  assert.deepEqual(runFixtures(plugin, cases, { config: { 'event-type': 'renamed' } }), [{ name: 'case 0 (t)', ok: true }]);
  const [refused] = runFixtures(plugin, cases);
  assert.equal(refused.ok, false);
  assert.match(refused.message, /^failed: the plugin returned a malformed result: action 0: the event type `a..b` has an empty segment/);
  assert.deepEqual(runFixtures(plugin, [{ event: { type: 't', payload: {} }, expect: { error: 'malformed-output' } }]),
    [{ name: 'case 0 (t)', ok: true }]);
});

test('outputs of the other world are a mismatch; a resolver cannot run fixtures', () => {
  assert.equal(runFixtures(echo, [{ event: { type: 't', payload: 1 }, expect: { actions: [] } }])[0].message,
    'expected actions (a handler\'s output), got the payload 1');
  assert.equal(runFixtures(recorder, [{ event: { type: 't', payload: 1 }, expect: { payload: 1 } }])[0].message,
    'expected a payload (a transformer\'s output), got []');
  const resolver = { resolve: () => keep() };
  assert.equal(runFixtures(resolver, [{ event: { type: 't', payload: 1 }, expect: { payload: 1 } }])[0].message,
    'failed: the plugin implements the resolver world, which cannot run on events');
  assert.deepEqual(runFixtures(resolver, [{ event: { type: 't', payload: 1 }, expect: { error: 'wrong-world' } }])[0].ok, true);
});

test('fixtures the engine would refuse are refused, naming the place', () => {
  const message = (text) => {
    try {
      runText(echo, text);
    } catch (e) {
      return e.message;
    }
    return assert.fail('accepted');
  };
  assert.equal(message('[]'), 'the fixtures hold no case');
  assert.equal(message('{}'), 'the fixtures are not valid: at `.`: invalid type: map, expected a sequence');
  assert.match(message('[{"event": {"type": "t"}, "expect": {"payload": 1}}]'), /at `\[0\]\.event`: missing field `payload`/);
  assert.match(message('[{"event": {"type": "t", "payload": 1}, "expect": {"result": 1}}]'), /at `\[0\]\.expect`: unknown variant `result`/);
  assert.match(message('[{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1, "error": "x"}}]'), /at `\[0\]\.expect`/);
  assert.match(message('[{"event": {"type": "t", "payload": 1}, "expect": {"actions": [{"emit": {"type": "t", "payload": 1, "content_type": "a/b"}}]}}]'),
    /at `\[0\]\.expect\.actions\[0\]\.emit`: unknown field `content_type`, expected one of `type`, `payload`, `key`, `version`/);
  assert.match(message('[{"event": {"type": "t", "payload": 1, "version": 1.0}, "expect": {"payload": 1}}]'),
    /at `\[0\]\.event\.version`: invalid type: floating point `1\.0`, expected u64/);
  assert.match(message('[{"event": {"type": "t", "payload": 1, "version": -1}, "expect": {"payload": 1}}]'), /expected u64/);
  assert.match(message('[{"event": {"type": "t", "payload": 1, "headers": {"a": 1}}, "expect": {"payload": 1}}]'),
    /at `\[0\]\.event\.headers\.a`: invalid type: integer `1`, expected a string/);
  assert.match(message('[{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1}, "extra": 1}]'), /at `\[0\]`: unknown field `extra`/);
  assert.match(message('[{"event": {"type": "t", "payload": 1}, "expect": {"payload": 1}},]'), /the fixtures are not valid/);
});
