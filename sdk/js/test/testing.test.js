// The test harness (testing.js): it must treat a plugin module as the engine treats the
// component made of it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PluginError, config, deliver, drop, emit, invalidInput, keep, log, merged, rejected, replace,
} from '../index.js';
import { Outcome, Refusal, TestHost, entity, event } from '../testing.js';

const encode = (s) => new TextEncoder().encode(s);

test('event: defaults as the engine would pass an event from the HMS bus', () => {
  assert.deepEqual(event('tax.rate.updated', { rate: 1 }), {
    id: 'test-event-1',
    eventType: 'tax.rate.updated',
    origin: 'hms',
    key: undefined,
    version: undefined,
    timestamp: 0n,
    contentType: 'application/json',
    headers: [],
    payload: encode('{"rate":1}'),
  });
  assert.deepEqual(event('t', '{not json').payload, encode('{not json'));
  assert.deepEqual(event('t', new Uint8Array([1, 2])).payload, new Uint8Array([1, 2]));
});

test('event: numbers for version and timestamp become BigInts; headers as an object or a list', () => {
  const e = event('t', {}, { version: 7, timestamp: 1700000000000, key: 'k', origin: 'state', id: 'e-9', headers: { 'x-a': 'b' } });
  assert.equal(e.version, 7n);
  assert.equal(e.timestamp, 1700000000000n);
  assert.equal(e.key, 'k');
  assert.equal(e.origin, 'state');
  assert.equal(e.id, 'e-9');
  assert.deepEqual(e.headers, [{ name: 'x-a', value: 'b' }]);
  assert.equal(event('t', {}, { version: 2n ** 63n }).version, 2n ** 63n);
  assert.deepEqual(event('t', {}, { headers: [{ name: 'x-b', value: 'c' }] }).headers, [{ name: 'x-b', value: 'c' }]);
});

test('entity: a version of an entity with its payload as JSON', () => {
  assert.deepEqual(entity('tax-rate/2025', 3, { rate: 1 }), {
    key: 'tax-rate/2025',
    version: 3n,
    timestamp: 0n,
    eventId: 'test-event-3',
    contentType: 'application/json',
    payload: encode('{"rate":1}'),
  });
  const e = entity('k', null, 'text', { timestamp: 5 });
  assert.equal(e.version, undefined);
  assert.equal(e.eventId, 'test-event-0');
  assert.equal(e.timestamp, 5n);
  assert.deepEqual(e.payload, encode('"text"'));
});

test('a transformer: its result as bytes, with its log lines', () => {
  const plugin = {
    transform(e) {
      log.info('got', e.id);
      return { seen: e.eventType };
    },
  };
  const outcome = new TestHost().transform(plugin, event('t', {}));
  assert.ok(outcome instanceof Outcome && outcome.ok);
  assert.deepEqual(outcome.result, encode('{"seen":"t"}'));
  assert.deepEqual(outcome.json(), { seen: 't' });
  assert.deepEqual(outcome.logs, [{ level: 'info', message: 'got test-event-1' }]);
  assert.deepEqual(new TestHost().transform({ transform: () => 'text' }, event('t', {})).result, encode('text'));
});

test('log lines are cut to 4096 bytes and capped at 256 per event, as in the engine', () => {
  const plugin = {
    transform() {
      for (let i = 0; i < 1000; i += 1) log.debug('x'.repeat(10000));
      return '';
    },
  };
  const { logs } = new TestHost().transform(plugin, event('t', {}));
  assert.equal(logs.length, 256);
  assert.equal(logs[0].level, 'debug');
  assert.equal(logs[0].message, `${'x'.repeat(4096)}… (5904 bytes cut)`);
  // Cut on a character boundary.
  const { logs: [line] } = new TestHost().transform({ transform: () => log.warn('é'.repeat(3000)) ?? '' }, event('t', {}));
  assert.equal(line.message, `${'é'.repeat(2048)}… (1904 bytes cut)`);
});

test('config: get and entries, sorted by key as the engine sorts them', () => {
  let seen;
  const plugin = {
    handle() {
      seen = { get: config.get('b'), missing: config.get('zz'), entries: config.entries() };
      return [];
    },
  };
  new TestHost().withConfig('b', 2).withConfig('a', 'one').withConfig('B', 'upper').withConfig('é', 'e').handle(plugin, event('t', {}));
  assert.deepEqual(seen, {
    get: '2',
    missing: undefined,
    entries: [['B', 'upper'], ['a', 'one'], ['b', '2'], ['é', 'e']],
  });
});

test('the harness restores what log and config call after a run', (t) => {
  const lines = [];
  t.mock.method(console, 'error', (line) => lines.push(line));
  new TestHost().withConfig('a', '1').transform({ transform: () => '' }, event('t', {}));
  log.warn('after');
  assert.deepEqual(lines, ['[warn] after']);
  assert.equal(config.get('a'), undefined);
});

test('a handler: its actions, readable', () => {
  const plugin = {
    handle: (e) => [
      emit('tax.rate.updated', { rate: 1 }, { key: 'tax-rate/2025' }),
      deliver('state', 'plain', { headers: { 'x-agency': 'irs' }, version: 2 }),
      drop('done'),
    ],
  };
  const outcome = new TestHost().handle(plugin, event('t', {}));
  assert.equal(outcome.result.length, 3);
  assert.deepEqual(outcome.actions(), [
    { emit: { eventType: 'tax.rate.updated', payload: { rate: 1 }, contentType: 'application/json', key: 'tax-rate/2025' } },
    { deliver: { destination: 'state', body: 'plain', headers: [{ name: 'x-agency', value: 'irs' }], version: 2n } },
    { drop: 'done' },
  ]);
  assert.deepEqual(new TestHost().handle({ handle: () => undefined }, event('t', {})).result, []);
});

test('output the engine refuses: thrown by transform and handle, returned by the try methods', () => {
  const reserved = { handle: () => [deliver('state', {}, { headers: { 'hms-hops': '0' } })] };
  assert.throws(() => new TestHost().handle(reserved, event('t', {})), (e) => {
    assert.ok(e instanceof Refusal);
    assert.equal(e.code, 'malformed-output');
    assert.match(e.message, /^the engine would refuse this output \(malformed-output\): the plugin returned a malformed result: action 0: the header `hms-hops` is set by the engine/);
    return true;
  });
  const outcome = new TestHost().tryHandle(reserved, event('t', {}));
  assert.equal(outcome.ok, false);
  assert.equal(outcome.error, undefined);
  assert.equal(outcome.refusal.code, 'malformed-output');
  assert.equal(outcome.result.length, 1, 'the result is kept, to look at');
  assert.throws(() => outcome.unwrap(), Refusal);

  const dotDot = { handle: () => [emit('..', {})] };
  assert.match(new TestHost().tryHandle(dotDot, event('t', {})).refusal.message, /empty segment/);

  const big = { transform: () => 'x'.repeat(100) };
  assert.throws(() => new TestHost().withOutputLimit(10).transform(big, event('t', {})), /output-too-large/);
  const tooBig = new TestHost().withOutputLimit(10).tryTransform(big, event('t', {}));
  assert.equal(tooBig.refusal.code, 'output-too-large');
  assert.equal(tooBig.refusal.message, 'the plugin returned 100 bytes of output, over its limit of 10 bytes');
  assert.ok(new TestHost().tryTransform(big, event('t', {})).ok);

  const many = { handle: () => [drop(''), drop(''), drop('')] };
  assert.equal(new TestHost().withActionLimit(2).tryHandle(many, event('t', {})).refusal.message,
    'the plugin returned 3 actions, over its limit of 2 per event');
});

test('errors the plugin throws become the outcome’s error, with their kind', () => {
  const failing = (error) => ({ transform: () => { throw error; } });
  const invalid = new TestHost().transform(failing(invalidInput('missing field `rate`')), event('t', {}));
  assert.equal(invalid.ok, false);
  assert.deepEqual(invalid.error, { kind: 'invalid-input', message: 'missing field `rate`' });
  assert.throws(() => invalid.unwrap(), /the plugin failed \(invalid-input\): missing field `rate`/);
  assert.deepEqual(new TestHost().handle({ handle: () => { throw rejected('closed'); } }, event('t', {})).error,
    { kind: 'rejected', message: 'closed' });
  assert.deepEqual(new TestHost().transform(failing(new PluginError('internal', 'bug')), event('t', {})).error,
    { kind: 'internal', message: 'bug' });
});

test('anything else the plugin throws is internal', () => {
  const outcome = new TestHost().transform({ transform: (e) => e.nothing.here }, event('t', {}));
  assert.equal(outcome.error.kind, 'internal');
  assert.match(outcome.error.message, /^TypeError: Cannot read properties of undefined/);
  assert.deepEqual(new TestHost().transform({ transform: () => { throw 'a string'; } }, event('t', {})).error,
    { kind: 'internal', message: 'the plugin threw a string' });
  // What the plugin logged before it failed is kept.
  const logged = new TestHost().transform({ transform: () => { log.error('about to fail'); throw new RangeError('r'); } }, event('t', {}));
  assert.deepEqual(logged.logs, [{ level: 'error', message: 'about to fail' }]);
  assert.deepEqual(logged.error, { kind: 'internal', message: 'RangeError: r' });
});

test('a Promise is internal: plugins run synchronously', () => {
  const message = 'the plugin returned a Promise: plugins run synchronously, one event at a time';
  assert.deepEqual(new TestHost().transform({ transform: async () => 'x' }, event('t', {})).error, { kind: 'internal', message });
  assert.deepEqual(new TestHost().handle({ handle: async () => [] }, event('t', {})).error, { kind: 'internal', message });
  assert.deepEqual(new TestHost().resolve({ resolve: async () => keep() }, entity('k', 1, {}), entity('k', 2, {})).error, { kind: 'internal', message });
});

test('a handler must return actions', () => {
  assert.match(new TestHost().handle({ handle: () => 'x' }, event('t', {})).error.message, /must return a list of actions/);
  assert.match(new TestHost().handle({ handle: () => [{ deliver: 'x' }] }, event('t', {})).error.message, /action 0 is not an action/);
});

test('a resolver: keep, replace, merged, with the merged payload under the output limit', () => {
  const current = entity('k', 1, { tags: ['a'] });
  const incoming = entity('k', 2, { tags: ['b'] });
  assert.deepEqual(new TestHost().resolve({ resolve: () => keep() }, current, incoming).result, { tag: 'keep' });
  assert.deepEqual(new TestHost().resolve({ resolve: () => replace() }, current, incoming).result, { tag: 'replace' });
  const union = {
    resolve: (c, i) => merged({ tags: [...JSON.parse(new TextDecoder().decode(c.payload)).tags, ...JSON.parse(new TextDecoder().decode(i.payload)).tags] }),
  };
  const outcome = new TestHost().resolve(union, current, incoming);
  assert.deepEqual(outcome.json(), { tags: ['a', 'b'] });
  assert.equal(new TestHost().withOutputLimit(5).tryResolve(union, current, incoming).refusal.code, 'output-too-large');
  assert.throws(() => new TestHost().resolve({ resolve: () => keep() }, current, incoming).json(), /no payload/);
  assert.match(new TestHost().resolve({ resolve: () => 'keep' }, current, incoming).error.message, /must return keep\(\), replace\(\) or merged\(payload\)/);
});

test('actions built by hand must have the fields the bindings carry, as in the component', () => {
  const run = (action) => new TestHost().handle({ handle: () => [action] }, event('t', {})).error?.message;
  assert.equal(run({ tag: 'deliver', val: { destination: 'd', body: new Uint8Array() } }),
    'action 0 is a delivery whose `headers` is missing: build actions with deliver, emit and drop');
  assert.equal(run({ tag: 'deliver', val: { destination: 'd', body: 'text', headers: [] } }),
    'action 0 is a delivery whose `body` is not what it should be (string): build actions with deliver, emit and drop');
  assert.match(run({ tag: 'emit', val: { eventType: 't', payload: new Uint8Array(), version: -1n } }), /whose `version` is not/);
  assert.match(run({ tag: 'emit', val: { eventType: 't', payload: new Uint8Array(), timestamp: 1.5 } }), /whose `timestamp` is not/);
  assert.match(run({ tag: 'drop', val: 5 }), /is a drop whose reason is not a string/);
  assert.match(run({ tag: 'emit' }), /action 0 is an emission without its fields/);
  assert.equal(run({ tag: 'emit', val: { eventType: 't', payload: new Uint8Array(), version: 5 } }), undefined);
  assert.match(new TestHost().resolve({ resolve: () => ({ tag: 'merged', val: 'text' }) }, entity('k', 1, {}), entity('k', 2, {})).error.message,
    /must return keep\(\), replace\(\) or merged\(payload\)/);
});

test('the modules bundled into a component use only what its JavaScript engine supports', async () => {
  // ComponentizeJS's SpiderMonkey refuses Unicode property escapes (`\p{…}`) in regular
  // expressions, and has no Node APIs: a plugin using them would fail to build.
  const { readFileSync } = await import('node:fs');
  for (const file of ['index.js', 'rules.js', 'run.js']) {
    const source = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
    assert.doesNotMatch(source, /\\p\{/, `${file} uses a Unicode property escape`);
    assert.doesNotMatch(source, /from 'node:|require\(|Buffer\./, `${file} uses Node`);
  }
});
