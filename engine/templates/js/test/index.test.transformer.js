import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestHost, event, runFixtures } from '@hms/sync-sdk/testing';
import * as plugin from '../src/index.js';

test('maps a person to a contact', () => {
  const outcome = new TestHost().transform(plugin, event('person.updated', { firstName: 'Ada', lastName: 'Lovelace' }));
  assert.deepEqual(outcome.json(), { fullName: 'Ada Lovelace' });
});

test('a missing field is invalid input naming it', () => {
  const outcome = new TestHost().transform(plugin, event('person.updated', { firstName: 'Ada' }));
  assert.equal(outcome.error.kind, 'invalid-input');
  assert.match(outcome.error.message, /lastName/);
});

test('passes its fixtures', () => {
  for (const result of runFixtures(plugin, 'fixtures.json')) {
    assert.ok(result.ok, `${result.name}: ${result.message}`);
  }
});
