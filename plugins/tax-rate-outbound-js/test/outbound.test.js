// The outbound transformer's tests: the shared fixtures (the engine runs the same file when the
// plugin is uploaded), and the behaviours the Rust plugin's tests check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestHost, event, runFixtures } from '@hms/sync-sdk/testing';
import * as outbound from '../src/index.js';

const FIXTURES = new URL('../../tax-rate-outbound.fixtures.json', import.meta.url);

function transform(payload) {
  return new TestHost().transform(outbound, event('tax.rate.updated', payload));
}

test('passes the shared fixtures', () => {
  const results = runFixtures(outbound, FIXTURES);
  assert.ok(results.length > 0);
  assert.deepEqual(results.filter((r) => !r.ok), []);
});

test('maps the seed payload', () => {
  assert.deepEqual(transform({ rate: 0.0725, year: 2025 }).json(), { newRates: 0.0725, effectiveYear: 2025 });
});

test('keeps the rate exactly as sent', () => {
  const outcome = transform('{"rate": 5, "year": 2024, "note": "ignored"}');
  assert.deepEqual(outcome.result, new TextEncoder().encode('{"newRates":5,"effectiveYear":2024}'));
});

test('a missing field is invalid input naming it', () => {
  const { error } = transform({ year: 2025 });
  assert.equal(error.kind, 'invalid-input');
  assert.match(error.message, /missing field `rate`/);
});

test('a mistyped field is invalid input naming it', () => {
  let { error } = transform({ rate: 0.07, year: '2025' });
  assert.equal(error.kind, 'invalid-input');
  assert.match(error.message, /`year`/);
  ({ error } = transform({ rate: 'seven', year: 2025 }));
  assert.equal(error.kind, 'invalid-input');
  assert.match(error.message, /`rate`/);
});

test('bad JSON is invalid input', () => {
  const { error } = transform('{not json');
  assert.equal(error.kind, 'invalid-input');
});
