import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestHost, event, runFixtures } from '@hms/sync-sdk/testing';
import * as plugin from '../src/index.js';

test('delivers the contact to the configured destination', () => {
  const outcome = new TestHost()
    .withConfig('destination', 'crm')
    .handle(plugin, event('person.updated', { firstName: 'Ada', lastName: 'Lovelace' }));
  assert.deepEqual(outcome.actions(), [
    { deliver: { destination: 'crm', body: { fullName: 'Ada Lovelace' }, contentType: 'application/json' } },
  ]);
  assert.equal(outcome.logs[0].message, 'contact for event test-event-1');
});

test('drops a person without a last name', () => {
  const outcome = new TestHost().handle(plugin, event('person.updated', { firstName: 'Ada' }));
  assert.deepEqual(outcome.actions(), [{ drop: 'no last name' }]);
});

test('passes its fixtures', () => {
  for (const result of runFixtures(plugin, 'fixtures.json')) {
    assert.ok(result.ok, `${result.name}: ${result.message}`);
  }
});
