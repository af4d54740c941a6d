// The output rules against the conformance table every SDK shares (sdk/rules/cases.json, format
// in sdk/rules/CASES.md): the expected results are what the engine's Rust crate decides.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as rules from '../rules.js';

const CASES = JSON.parse(readFileSync(new URL('../../rules/cases.json', import.meta.url), 'utf8'));
const encoder = new TextEncoder();

const optional = (v, f) => (v === undefined ? undefined : f(v));

/** An action of the table as the WIT action the bindings give the rules. */
function action(entry) {
  if ('deliver' in entry) {
    const d = entry.deliver;
    return {
      tag: 'deliver',
      val: {
        destination: d.destination,
        body: encoder.encode(d.body),
        contentType: d.contentType,
        headers: (d.headers ?? []).map(([name, value]) => ({ name, value })),
        key: d.key,
        version: optional(d.version, BigInt),
      },
    };
  }
  if ('emit' in entry) {
    const e = entry.emit;
    return {
      tag: 'emit',
      val: {
        eventType: e.eventType,
        payload: encoder.encode(e.payload),
        contentType: e.contentType,
        key: e.key,
        version: optional(e.version, BigInt),
      },
    };
  }
  return { tag: 'drop', val: entry.drop };
}

/** What the rules decide for a case: `ok` or the refusal's code, with the refusal. */
function decide(c) {
  try {
    if ('payloadSize' in c) {
      rules.checkSize(c.payloadSize, c.limit);
    } else {
      rules.checkActions(c.actions.map(action), c.limit ?? rules.DEFAULT_OUTPUT_LIMIT, c.maxActions ?? rules.DEFAULT_ACTION_LIMIT);
    }
    return { result: 'ok' };
  } catch (e) {
    if (!(e instanceof rules.Refusal)) throw e;
    return { result: e.code, message: e.message };
  }
}

test('the table is well formed', () => {
  assert.ok(CASES.length > 100);
  const names = new Set();
  for (const c of CASES) {
    assert.equal(typeof c.name, 'string');
    assert.ok(!names.has(c.name), `two cases are named ${c.name}`);
    names.add(c.name);
    assert.ok(['ok', 'malformed-output', 'output-too-large'].includes(c.expect), c.name);
    assert.ok(Array.isArray(c.actions) !== ('payloadSize' in c), `${c.name}: actions or payloadSize`);
  }
});

for (const c of CASES) {
  test(`rules: ${c.name}`, () => {
    const { result, message } = decide(c);
    assert.equal(result, c.expect, message);
    if (c.message !== undefined) {
      assert.ok(message.includes(c.message), `${JSON.stringify(message)} should contain ${JSON.stringify(c.message)}`);
    }
  });
}

test('the constants are the engine’s', () => {
  assert.equal(rules.MAX_NAME_LEN, 1024);
  assert.equal(rules.MAX_EVENT_TYPE_LEN, 128);
  assert.equal(rules.DEFAULT_OUTPUT_LIMIT, 1 << 20);
  assert.equal(rules.DEFAULT_ACTION_LIMIT, 256);
  assert.equal(rules.ACTION_OVERHEAD, 64);
  assert.equal(rules.MAX_LOG_LINE, 4096);
  assert.equal(rules.MAX_LOG_LINES, 256);
});

test('messages quote as the engine does', () => {
  assert.match(rules.checkEventType('a/b'), /contains '\/'/);
  assert.match(rules.checkEventType("it's"), /contains '\\''/);
  assert.match(rules.checkName('key', 'a\u0001b'), /the key `a\\u\{1\}b` contains a control character/);
  assert.match(rules.checkName('key', 'a\nb'), /`a\\nb`/);
  assert.match(rules.checkContentType('a "b"'), /`a \\"b\\"`/);
});

test('reserved headers are matched in ASCII case only', () => {
  assert.equal(rules.isReservedHeader('HOST'), true);
  assert.equal(rules.isReservedHeader('Hms-Anything'), true);
  // The Kelvin sign lower-cases to `k` in Unicode, not in ASCII (and is no header name anyway).
  assert.equal(rules.isReservedHeader('\u212aeep-alive'), false);
});

test('long log lines are cut on a character boundary, saying how much went', () => {
  assert.equal(rules.truncateLogLine('short'), 'short');
  assert.equal(rules.truncateLogLine('x'.repeat(4096)), 'x'.repeat(4096));
  assert.equal(rules.truncateLogLine('x'.repeat(4097)), `${'x'.repeat(4096)}… (1 bytes cut)`);
  // 2048 two-byte characters are 4096 bytes; one more is cut whole.
  assert.equal(rules.truncateLogLine('é'.repeat(2049)), `${'é'.repeat(2048)}… (2 bytes cut)`);
  // A three-byte character across the limit is cut whole: 4095 + 3 bytes keep 4095.
  assert.equal(rules.truncateLogLine(`${'x'.repeat(4095)}€`), `${'x'.repeat(4095)}… (3 bytes cut)`);
});
