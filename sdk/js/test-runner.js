#!/usr/bin/env node
// hms-sync-test: runs a plugin project's tests under Node's own test runner (`node --test`),
// TypeScript ones included. Test files are `test/**/*.test.{js,mjs,ts,mts}`; TypeScript files
// are bundled to JavaScript with esbuild first (types are not checked here: `tsc` does that).
//
//   hms-sync-test [file...]

import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';

function testFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(path);
    return /\.test\.(m?js|m?ts)$/.test(entry.name) ? [path] : [];
  });
}

const root = process.cwd();
const files = process.argv.length > 2 ? process.argv.slice(2) : testFiles(join(root, 'test'));
if (files.length === 0) {
  console.error('hms-sync-test: no test files (test/**/*.test.js or .ts)');
  process.exit(1);
}
const out = join(root, 'node_modules', '.cache', 'hms-sync-test');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const runnable = [];
for (const file of files) {
  if (/\.m?ts$/.test(file)) {
    const outfile = join(out, relative(root, file).replace(/\.m?ts$/, '.mjs'));
    await build({
      entryPoints: [file],
      bundle: true,
      outfile,
      format: 'esm',
      platform: 'node',
      target: 'node18',
      logLevel: 'error',
    }).catch(() => process.exit(1));
    runnable.push(outfile);
  } else {
    runnable.push(file);
  }
}
const result = spawnSync(process.execPath, ['--test', ...runnable], { stdio: 'inherit' });
process.exit(result.status ?? 1);
