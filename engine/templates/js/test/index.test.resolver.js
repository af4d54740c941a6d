import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestHost, entity } from '@hms/sync-sdk/testing';
import * as plugin from '../src/index.js';

test('a newer version replaces and an older one is kept out', () => {
  const v1 = entity('person/1', 1, { fullName: 'Ada' });
  const v2 = entity('person/1', 2, { fullName: 'Ada Lovelace' });
  const host = new TestHost();
  assert.deepEqual(host.resolve(plugin, v1, v2).result, { tag: 'replace' });
  assert.deepEqual(host.resolve(plugin, v2, v1).result, { tag: 'keep' });
});
