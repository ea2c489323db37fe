'use strict';

// index.d.ts and fastify.d.ts against a typed Express and Fastify app
// (test/types/usage.ts), with `tsc --noEmit`: correct uses compile, and each
// `@ts-expect-error` line is an error as it should be.

const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const assert = require('node:assert/strict');

const ROOT = path.join(__dirname, '..');

test('the types check against a typed app', () => {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  let out = '';
  try {
    out = execFileSync(process.execPath, [tsc, '--noEmit', '-p', path.join(__dirname, 'types')], {
      cwd: ROOT,
      encoding: 'utf8',
    });
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`);
  }
  assert.equal(out.trim(), '');
});
