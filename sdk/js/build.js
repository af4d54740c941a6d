#!/usr/bin/env node
// hms-sync-build: makes a plugin module (JavaScript or TypeScript) a WebAssembly component for
// the HMS Synchronization Engine. It bundles the module with this SDK (esbuild), wraps its
// export in the world it implements, and runs ComponentizeJS with the WIT this package ships.
//
//   hms-sync-build [entry] [--out FILE] [--world transformer|handler|resolver]
//
// The entry defaults to package.json's `main`, else src/index.ts, else src/index.js; the output
// to dist/<package name>.wasm; the world to the one whose function the module exports
// (`transform`, `handle` or `resolve`).

import { build as bundle } from 'esbuild';
import { componentize } from '@bytecodealliance/componentize-js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WORLDS } from './run.js';

const SDK = dirname(fileURLToPath(import.meta.url));

/**
 * What the sandbox does not grant, left out of the component: the engine gives a plugin no
 * network and no timers, and a plugin that reads clocks or randomness stops being a function of
 * its event. Only stdio stays: the engine captures it, and the JS engine reports an uncaught
 * error there.
 */
export const DISABLED_FEATURES = ['random', 'clocks', 'http', 'fetch-event'];

function fail(message) {
  console.error(`hms-sync-build: ${message}`);
  process.exit(1);
}

function readPackage(dir) {
  const path = join(dir, 'package.json');
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : {};
}

function defaultEntry(dir, pkg) {
  for (const candidate of [pkg.main, 'src/index.ts', 'src/index.js'].filter(Boolean)) {
    if (existsSync(join(dir, candidate))) return join(dir, candidate);
  }
  fail('no entry module: pass one, set `main` in package.json, or write src/index.ts or src/index.js');
}

/** Bundles `entry` and returns the names it exports, to tell its world. */
async function exportsOf(entry) {
  const result = await bundle({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    external: ['hms:sync/*'],
    metafile: true,
    outdir: 'out',
    logLevel: 'silent',
  }).catch((e) => fail(`cannot bundle ${entry}:\n${e.message}`));
  return Object.values(result.metafile.outputs).flatMap((o) => o.exports ?? []);
}

function entryModule(entry, world) {
  const { iface, fn } = WORLDS[world];
  const runner = { transformer: 'runTransform', handler: 'runHandle', resolver: 'runResolve' }[world];
  const args = world === 'resolver' ? 'current, incoming' : 'event';
  return `import { log } from 'hms:sync/log@0.1.0';
import { get, entries } from 'hms:sync/config@0.1.0';
import { __setHost } from '@hms/sync-sdk';
import { ${runner} } from '@hms/sync-sdk/run';
import * as plugin from ${JSON.stringify(entry)};
__setHost({ log, get, entries });
export const ${iface} = { ${fn}: (${args}) => ${runner}(plugin, ${args}) };
`;
}

/** Builds the component; returns its path. */
export async function buildPlugin({ dir = process.cwd(), entry, out, world } = {}) {
  const pkg = readPackage(dir);
  entry = entry ? resolve(dir, entry) : defaultEntry(dir, pkg);
  if (!existsSync(entry)) fail(`${entry} does not exist`);
  const exported = await exportsOf(entry);
  if (!world) {
    const found = Object.entries(WORLDS).filter(([, w]) => exported.includes(w.fn)).map(([name]) => name);
    if (found.length !== 1) {
      fail(found.length === 0
        ? `${entry} exports none of transform, handle, resolve: export the function of the plugin's world`
        : `${entry} exports ${found.join(' and ')} functions: export one, or pass --world`);
    }
    world = found[0];
  } else if (!WORLDS[world]) {
    fail(`unknown world \`${world}\`: transformer, handler or resolver`);
  } else if (!exported.includes(WORLDS[world].fn)) {
    fail(`${entry} does not export \`${WORLDS[world].fn}\`, which the ${world} world calls`);
  }
  out = resolve(dir, out ?? join('dist', `${basename(pkg.name ?? basename(dir))}.wasm`));

  const work = mkdtempSync(join(tmpdir(), 'hms-sync-build-'));
  try {
    const bundled = join(work, 'plugin.js');
    await bundle({
      stdin: { contents: entryModule(entry, world), resolveDir: dir, sourcefile: 'component-entry.js' },
      bundle: true,
      outfile: bundled,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      external: ['hms:sync/*'],
      logLevel: 'silent',
    }).catch((e) => fail(`cannot bundle ${entry}:\n${e.message}`));
    const { component } = await componentize({
      sourcePath: bundled,
      witPath: join(SDK, 'wit'),
      worldName: world,
      disableFeatures: DISABLED_FEATURES,
    }).catch((e) => fail(`ComponentizeJS failed:\n${e.message ?? e}`));
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, component);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { out, world };
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    options: { out: { type: 'string', short: 'o' }, world: { type: 'string', short: 'w' } },
    allowPositionals: true,
  });
  if (positionals.length > 1) fail('at most one entry module');
  const { out, world } = await buildPlugin({ entry: positionals[0], out: values.out, world: values.world });
  console.log(`built ${out} (${world})`);
}
