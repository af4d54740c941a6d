#!/usr/bin/env node
// Generates the TypeScript types of the plugin worlds (transformer, handler, resolver) from the
// WIT (wit/sync.wit) into types/, as a guest sees them: the records, variants and enums a plugin
// receives and returns, and the `hms:sync/*` imports. index.d.ts and testing.d.ts are written in
// terms of them. The generated files are checked in:
//
//   node scripts/types.js           (npm run types)        writes types/
//   node scripts/types.js --check   (npm run check-types)  fails, naming the file, when types/
//                                                          is not what the WIT generates
//
// `jco types` cannot be used here (it fails on the WIT's path), so this calls the type
// generator jco is built on directly, with the WIT's text.

import { $init, generateTypes } from '@bytecodealliance/jco-transpile/component';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SDK = dirname(dirname(fileURLToPath(import.meta.url)));
const WIT = join(SDK, 'wit', 'sync.wit');
const OUT = join(SDK, 'types');
const WORLDS = ['transformer', 'handler', 'resolver'];
const HEADER = '// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.\n';

/** Every file the WIT generates, by its path under types/ (the worlds share their interfaces). */
async function generate() {
  await $init;
  const wit = { tag: 'source', val: readFileSync(WIT, 'utf8') };
  const files = new Map();
  for (const world of WORLDS) {
    for (const [path, data] of generateTypes(world, { wit, world, guest: true })) {
      const text = HEADER + new TextDecoder().decode(data);
      if (files.has(path) && files.get(path) !== text) {
        throw new Error(`the worlds generate different ${path}`);
      }
      files.set(path, text);
    }
  }
  return files;
}

/** The files under `dir`, by their path relative to it. */
function existing(dir) {
  if (!existsSync(dir)) return new Map();
  return new Map(
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => join(entry.parentPath ?? entry.path, entry.name))
      .map((path) => [relative(dir, path).split('\\').join('/'), readFileSync(path, 'utf8').replace(/\r\n/g, '\n')]),
  );
}

const { values } = parseArgs({ options: { check: { type: 'boolean' } } });
const generated = await generate();

if (values.check) {
  const current = existing(OUT);
  const problems = [];
  for (const [path, text] of generated) {
    if (!current.has(path)) problems.push(`types/${path} is missing`);
    else if (current.get(path) !== text) problems.push(`types/${path} differs from what the WIT generates`);
  }
  for (const path of current.keys()) {
    if (!generated.has(path)) problems.push(`types/${path} is not generated from the WIT`);
  }
  if (problems.length > 0) {
    console.error(`the checked-in types are not those of wit/sync.wit:\n  ${problems.join('\n  ')}`);
    console.error('run `npm run types` in sdk/js and commit the result');
    process.exit(1);
  }
  console.log(`types/ matches wit/sync.wit (${generated.size} files)`);
} else {
  rmSync(OUT, { recursive: true, force: true });
  for (const [path, text] of generated) {
    mkdirSync(dirname(join(OUT, path)), { recursive: true });
    writeFileSync(join(OUT, path), text);
  }
  console.log(`wrote ${generated.size} files to types/`);
}
