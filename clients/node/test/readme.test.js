'use strict';

// The Express and Fastify snippets of the top-level README ("Add it to your
// app"), taken from the file as written (only the sidecar's address and
// the port change), each run as its own app against the real sidecar and
// visited twice: a new identity with its cookie, then the same visitor by
// that cookie.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { before, test } = require('node:test');
const assert = require('node:assert/strict');
const { testEnv } = require('./support/env');

const ROOT = path.join(__dirname, '..');
const README = path.join(ROOT, '..', '..', 'README.md');
const ADDRESS = '127.0.0.1:50051';

/** The README's `<!-- add-it: NAME -->` blocks, by name. */
function snippets() {
  const md = fs.readFileSync(README, 'utf8');
  const at = md.indexOf('\n## Add it to your app\n');
  assert.ok(at >= 0, 'the README has an "Add it to your app" section');
  const section = md.slice(at + 1).split(/\n## /)[0];
  const found = {};
  for (const m of section.matchAll(/<!-- add-it: (\w+) -->\n```\w+\n([\s\S]*?)```/g)) found[m[1]] = m[2];
  assert.deepEqual(Object.keys(found).sort(), ['django', 'express', 'fastapi', 'fastify', 'flask']);
  return found;
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function get(port, { cookie } = {}) {
  return new Promise((resolve, reject) => {
    const headers = { host: 'shop.example.com', 'user-agent': 'readme-test' };
    if (cookie) headers.cookie = cookie;
    const req = http.request({ host: 'localhost', port, path: '/', headers, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 30 s')));
    req.on('error', reject);
    req.end();
  });
}

async function waitForPort(port, proc, err) {
  for (let i = 0; i < 400; i += 1) {
    if (proc.exitCode !== null) throw new Error(`the snippet exited: ${err()}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, 'localhost', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the snippet does not listen on ${port}: ${err()}`);
}

/** The snippets keep the 50 ms default deadline, which a debug sidecar on a
 * busy machine may miss: the page is then served without identity, as it
 * should be, and asked for again (a few times). */
async function identified(call) {
  let r;
  for (let i = 0; i < 5; i += 1) {
    r = await call();
    if (r.status !== 200 || JSON.parse(r.body).clientId !== null) return r;
  }
  return r;
}

const env = testEnv();
let sidecar;
before(async () => {
  sidecar = await env.sidecar();
});

for (const name of ['express', 'fastify']) {
  test(`the README's ${name} snippet gives every request an identity`, async () => {
    let code = snippets()[name];
    assert.equal(code.split(ADDRESS).length, 2, code);
    const listen = /listen\(3000\)|listen\(\{ port: 3000 \}\)/;
    assert.match(code, listen);
    const port = await freePort();
    code = code.replace(ADDRESS, sidecar.target).replace('3000', String(port));

    const dir = path.join(env.dir, `readme-${name}`);
    fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'app.js'), code);
    // The package and the framework, as installed beside the app.
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'sessionbridge'));
    fs.symlinkSync(path.join(ROOT, 'node_modules', name), path.join(dir, 'node_modules', name));

    const proc = spawn(process.execPath, ['app.js'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (d) => (err += d));
    env.stopLater(async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
    });
    await waitForPort(port, proc, () => err);

    const first = await identified(() => get(port));
    assert.equal(first.status, 200, first.body);
    const { clientId } = JSON.parse(first.body);
    assert.match(String(clientId), /^\d+\.\d+$/, first.body);
    const own = (first.headers['set-cookie'] || []).find((c) => /^__(Secure|Host)-sbid=/.test(c));
    assert.ok(own, String(first.headers['set-cookie']));

    const second = await identified(() => get(port, { cookie: own.split(';')[0] }));
    assert.deepEqual(JSON.parse(second.body), { clientId });
    const stranger = JSON.parse((await identified(() => get(port))).body).clientId;
    assert.match(String(stranger), /^\d+\.\d+$/);
    assert.notEqual(stranger, clientId);
  });
}
