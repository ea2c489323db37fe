'use strict';

// `npm pack`: the tarball carries the .proto (copied in by prepack, removed
// again by postpack, so git holds one copy), the code and the types, and
// no tests; unpacked away from the repository it loads its own .proto.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');
const assert = require('node:assert/strict');

const ROOT = path.join(__dirname, '..');

test('npm pack makes a package that works outside the repository', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sessionbridge-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [info] = JSON.parse(out.slice(out.indexOf('[')));
    const files = info.files.map((f) => f.path);
    for (const f of ['proto/sessionbridge/v1/sessionbridge.proto', 'index.js', 'index.d.ts', 'fastify.d.ts',
      'lib/core.js', 'README.md', 'package.json']) {
      assert.ok(files.includes(f), `${f} is in the package: ${files.join(', ')}`);
    }
    assert.deepEqual(files.filter((f) => f.startsWith('test/') || f.startsWith('node_modules/')), []);
    assert.equal(fs.existsSync(path.join(ROOT, 'proto')), false, 'postpack removed the copy');
    const packed = fs.readFileSync(path.join(ROOT, '..', '..', 'proto', 'sessionbridge', 'v1', 'sessionbridge.proto'));

    // Unpacked elsewhere, with the dependencies beside it.
    execFileSync('tar', ['xzf', path.join(dir, info.filename), '-C', dir]);
    const pkg = path.join(dir, 'package');
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    assert.deepEqual(fs.readFileSync(path.join(pkg, 'proto', 'sessionbridge', 'v1', 'sessionbridge.proto')), packed);
    const loaded = execFileSync(process.execPath, ['-e', `
      const { load } = require('./lib/proto');
      const sb = require('.');
      const s = sb.create({ target: '127.0.0.1:1' });
      console.log(JSON.stringify({ dir: load().protoDir, rpcs: Object.keys(s.client.raw) }));
      s.close();`], { cwd: pkg, encoding: 'utf8' });
    const { dir: protoDir, rpcs } = JSON.parse(loaded);
    assert.equal(fs.realpathSync(protoDir), fs.realpathSync(path.join(pkg, 'proto')));
    assert.deepEqual(rpcs, ['MintCookie', 'RecordHandoff', 'ResolveSession', 'LookupByUser', 'ForgetUser', 'ForgetVisitor']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
