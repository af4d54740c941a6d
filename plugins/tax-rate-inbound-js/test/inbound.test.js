// The inbound handler's tests: the shared fixtures (the engine runs the same file when the
// plugin is uploaded), and the behaviours the Rust plugin's tests check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestHost, event, runFixtures } from '@hms/sync-sdk/testing';
import * as inbound from '../src/index.js';

const FIXTURES = new URL('../../tax-rate-inbound.fixtures.json', import.meta.url);

test('passes the shared fixtures', () => {
  const results = runFixtures(inbound, FIXTURES);
  assert.ok(results.length > 0);
  assert.deepEqual(results.filter((r) => !r.ok), []);
});

test('emits the seed mapping on the HMS bus', () => {
  const webhook = event('tax-rate.changed', { currentRate: 0.0725, taxYear: 2025 });
  const outcome = new TestHost().handle(inbound, webhook);
  assert.deepEqual(outcome.result, [{
    tag: 'emit',
    val: {
      eventType: 'tax.rate.updated',
      payload: new TextEncoder().encode('{"rate":0.0725,"year":2025}'),
      contentType: 'application/json',
      key: 'tax-rate/2025',
      version: undefined,
      timestamp: undefined,
    },
  }]);
  assert.deepEqual(outcome.logs, [{ level: 'debug', message: 'tax year 2025 from hms' }]);
});

test('the route can rename the emitted event', () => {
  const webhook = event('x', { currentRate: 1, taxYear: 2026 });
  const outcome = new TestHost().withConfig('event-type', 'tax.rate.corrected').handle(inbound, webhook);
  const [action] = outcome.result;
  assert.equal(action.tag, 'emit');
  assert.equal(action.val.eventType, 'tax.rate.corrected');
  assert.deepEqual(action.val.payload, new TextEncoder().encode('{"rate":1,"year":2026}'));
  // The same, through the fixtures with the route's configuration.
  const renamed = runFixtures(inbound, [{
    event: { type: 'x', payload: { currentRate: 1, taxYear: 2026 } },
    expect: { actions: [{ emit: { type: 'tax.rate.corrected', payload: { rate: 1, year: 2026 }, key: 'tax-rate/2026' } }] },
  }], { config: { 'event-type': 'tax.rate.corrected' } });
  assert.deepEqual(renamed, [{ name: 'case 0 (x)', ok: true }]);
});

test('the origin of the webhook is logged', () => {
  const outcome = new TestHost().handle(inbound, event('x', { currentRate: 1, taxYear: 2026 }, { origin: 'state-tax-api' }));
  assert.deepEqual(outcome.logs, [{ level: 'debug', message: 'tax year 2026 from state-tax-api' }]);
});

test('missing and mistyped fields are invalid input naming them', () => {
  const missing = new TestHost().handle(inbound, event('x', { currentRate: 0.07 }));
  assert.equal(missing.error.kind, 'invalid-input');
  assert.match(missing.error.message, /missing field `taxYear`/);

  const mistyped = new TestHost().handle(inbound, event('x', { currentRate: [], taxYear: 2025 }));
  assert.equal(mistyped.error.kind, 'invalid-input');
  assert.match(mistyped.error.message, /`currentRate`/);
});
