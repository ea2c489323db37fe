// One visitor across two languages: a FastAPI shop (the Python package, its
// test app started by clients/python/tests/apps/serve.py) on example.com and
// an Express checkout (the Node package, clients/node/test/fixtures/serve.js)
// on example.net, each beside its own sidecar with a store of its own, the
// two sidecars sharing one key file. Real sidecar binary, real ports, HTTPS
// with a throwaway certificate, a client with a cookie jar.
//
// Run by clients/test after both packages' suites, which install what this
// needs: the Python virtualenv (SB_PYTHON, default
// $CARGO_TARGET_DIR/tmp/py-clients-venv/bin/python) and clients/node's
// node_modules.
//
// How an arrival was resolved is not on the page: the destination's
// middleware answers 303 to the clean URL without calling the app. The
// test reads it from what the sidecar itself reports: the `_ga` cookie on
// that 303 (the sidecars run with --ga-cookie true; `_ga` is
// GA1.<depth>.<client id>) and its Prometheus counter
// sessionbridge_resolutions_total{method="token"}.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENTS = path.dirname(HERE);
const require = createRequire(path.join(CLIENTS, 'node', 'package.json'));
const { makeCerts } = require('./test/support/certs.js');
const { keygen, startSidecar } = require('./test/support/sidecar.js');
const { Browser } = require('./test/support/browser.js');
const { serveProcess } = require('./test/support/process.js');

const TARGET_DIR = process.env.CARGO_TARGET_DIR || '/var/tmp/sessionbridge-target';
const PYTHON = process.env.SB_PYTHON || path.join(TARGET_DIR, 'tmp', 'py-clients-venv', 'bin', 'python');
const PY_SERVE = path.join(CLIENTS, 'python', 'tests', 'apps', 'serve.py');
const SHOP_HOST = 'shop.example.com';
const CHECKOUT_HOST = 'checkout.example.net';
// Above the 50 ms default: a debug sidecar on a busy two-core machine may
// be slower now and then, and these tests are about behaviour.
const DEADLINE_MS = 2000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sessionbridge-cross-'));
const stops = [];
let certs;
let shop; // { app, sidecar, metrics, origin }
let checkout;

/** A free loopback port (for the sidecar's metrics listener). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A sidecar with the shared key file, its own store, a `_ga` cookie on
 * every answer and its metrics on a port of its own. */
async function sidecar(name, keys) {
  const metricsPort = await freePort();
  const s = await startSidecar({
    keys,
    dataDir: path.join(dir, `${name}-data`),
    flags: ['--ga-cookie', 'true', '--metrics-listen', `127.0.0.1:${metricsPort}`],
  });
  stops.push(() => s.kill());
  return { ...s, metricsPort };
}

/** The Python package's test app (FastAPI under uvicorn) in its own process. */
function servePython({ kind, target }) {
  if (!fs.existsSync(PYTHON)) {
    throw new Error(`no Python at ${PYTHON}: run bash clients/python/test first (or set SB_PYTHON)`);
  }
  const proc = spawn(PYTHON, [PY_SERVE], {
    env: {
      ...process.env,
      SB_APP: kind,
      SB_SIDECAR: target,
      SB_PORT: '0',
      SB_TLS_CERT: certs.certPath,
      SB_TLS_KEY: certs.keyPath,
      SB_DEADLINE_MS: String(DEADLINE_MS),
      PYTHONUNBUFFERED: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`serve.py (${kind}) did not start in 60 s: ${err}`));
    }, 60_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve.py (${kind}) exited (${code}): ${err}`));
    });
    let started = false;
    proc.stdout.on('data', (d) => {
      // Read on to the end (the app may print more), but start once.
      if (started) return;
      out += d;
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (!m) return;
      started = true;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      const exited = new Promise((r) => proc.once('exit', r));
      resolve({
        port: Number(m[1]),
        origin: (host) => `https://${host}:${m[1]}`,
        stderr: () => err,
        /** SIGTERM; SIGKILL when it has not exited 5 s later. */
        async close() {
          if (proc.exitCode !== null || proc.signalCode !== null) return;
          proc.kill('SIGTERM');
          const timer = setTimeout(() => {
            console.error(`serve.py (${kind}) still running 5 s after SIGTERM: SIGKILL`);
            proc.kill('SIGKILL');
          }, 5000);
          await exited;
          clearTimeout(timer);
        },
      });
    });
  });
}

/** sessionbridge_resolutions_total{method=...} summed over its sources. */
async function resolutions(side, method) {
  const r = await fetch(`http://127.0.0.1:${side.sidecar.metricsPort}/metrics`);
  assert.equal(r.status, 200);
  const text = await r.text();
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^sessionbridge_resolutions_total\{([^}]*)\}\s+(\S+)$/.exec(line);
    if (m && new RegExp(`(^|,)method="${method}"`).test(m[1])) total += Number(m[2]);
  }
  return total;
}

/** The client id in a `_ga` Set-Cookie of the answer (GA1.<depth>.<id>). */
function gaClientId(response) {
  const ga = response.setCookie.find((c) => c.startsWith('_ga='));
  assert.ok(ga, `no _ga cookie among ${JSON.stringify(response.setCookie)}`);
  const m = /^_ga=GA1\.\d+(?:-\d+)?\.(\d+\.\d+);/.exec(ga);
  assert.ok(m, ga);
  return m[1];
}

const ownCookie = (response) => response.setCookie.some((c) => /^__(Secure|Host)-sbid=/.test(c));

/** The identity a page shows, in one spelling for both apps. */
async function page(browser, url) {
  const r = await browser.get(url);
  assert.equal(r.status, 200, `${url}: ${r.status} ${r.body}`);
  const body = r.json();
  // The FastAPI app answers { app, identity: {client_id, ...} }; the Express
  // app the result itself, { clientId, ... }.
  const id = 'identity' in body ? body.identity : body;
  assert.ok(id, `${url}: served without identity: ${r.body}`);
  return {
    clientId: id.client_id ?? id.clientId,
    sessionId: id.session_id ?? id.sessionId,
    method: id.method,
  };
}

/**
 * Follows a hand-off link into `side`: answered 303 to the clean URL with
 * the destination's cookies, `_ga` naming `clientId`, and resolved by
 * `method` (the sidecar's label: `token` for HANDOFF_TOKEN, `cookie` when
 * the visitor already holds that site's cookie, which comes first).
 */
async function arrive(browser, side, link, cleanUrl, clientId, method = 'token') {
  assert.match(link, /[?&]_sbt=/, link);
  const count = await resolutions(side, method);
  const r = await browser.get(link);
  assert.equal(r.status, 303, `${link}: ${r.status} ${r.body}`);
  assert.equal(r.headers.location, cleanUrl);
  assert.ok(ownCookie(r), `the arrival sets the destination's own cookie: ${JSON.stringify(r.setCookie)}`);
  assert.equal(gaClientId(r), clientId);
  assert.equal(await resolutions(side, method), count + 1, `the arrival was resolved by ${method}`);
  return r;
}

before(async () => {
  certs = makeCerts(path.join(dir, 'certs'), [SHOP_HOST, CHECKOUT_HOST]);
  const keys = keygen(dir);
  const [shopSidecar, checkoutSidecar] = [await sidecar('shop', keys), await sidecar('checkout', keys)];
  const [py, node] = await Promise.all([
    servePython({ kind: 'fastapi', target: shopSidecar.target }),
    serveProcess({
      framework: 'express',
      target: checkoutSidecar.target,
      certPath: certs.certPath,
      keyPath: certs.keyPath,
      options: { deadlineMs: DEADLINE_MS },
    }),
  ]);
  stops.push(() => py.close(), () => node.close());
  shop = { app: py, sidecar: shopSidecar, origin: py.origin(SHOP_HOST) };
  checkout = { app: node, sidecar: checkoutSidecar, origin: node.origin(CHECKOUT_HOST) };
});

after(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});

test('FastAPI shop to Express checkout and back: one client id, by token, then by cookie', async () => {
  const b = new Browser({ ca: certs.ca });
  const first = await page(b, `${shop.origin}/`);
  assert.equal(first.method, 'NEW');

  // Python's handoff(): 303 to the checkout with the token.
  const dest = `${checkout.origin}/?cart=42`;
  const leave = await b.get(`${shop.origin}/go?to=${encodeURIComponent(dest)}`);
  assert.equal(leave.status, 303, leave.body);
  assert.ok(leave.headers.location.startsWith(`${checkout.origin}/?cart=42&_sbt=`), leave.headers.location);

  // The Node middleware resolves the token and takes it out of the address bar.
  await arrive(b, checkout, leave.headers.location, dest, first.clientId);

  // The next page on the checkout: the cookie that 303 set.
  const there = await page(b, dest);
  assert.deepEqual(there, { clientId: first.clientId, sessionId: first.sessionId, method: 'COOKIE' });
  assert.equal(b.cookies(dest)['__Secure-sbid'].domain, 'example.net');

  // Node's handoff() back to the shop, into the Python middleware.
  const backTo = `${shop.origin}/?paid=1`;
  const back = await b.get(`${checkout.origin}/go?to=${encodeURIComponent(backTo)}`);
  assert.equal(back.status, 302, back.body);
  assert.equal(back.json().clientId, first.clientId);
  // The shop's own cookie is still in the jar and comes first (the
  // README's resolution order); the token is spent all the same and taken
  // out of the address bar.
  await arrive(b, shop, back.headers.location, backTo, first.clientId, 'cookie');
  const home = await page(b, backTo);
  assert.deepEqual(home, { clientId: first.clientId, sessionId: first.sessionId, method: 'COOKIE' });
});

test('a hand-off on the very first request carries the identity that request is given (Node, then Python)', async () => {
  const b = new Browser({ ca: certs.ca });
  // No page first: the visitor's first request to the checkout is the hand-off.
  const dest = `${shop.origin}/cart`;
  const leave = await b.get(`${checkout.origin}/go?to=${encodeURIComponent(dest)}`);
  assert.equal(leave.status, 302, leave.body);
  const { clientId } = leave.json();
  assert.match(clientId, /^\d+\.\d+$/);
  assert.ok(ownCookie(leave), 'the hand-off response sets the checkout cookie');
  await arrive(b, shop, leave.headers.location, dest, clientId);

  // Both sites now name one visitor: no second identity was minted on
  // either side.
  assert.equal((await page(b, `${checkout.origin}/`)).clientId, clientId);
  assert.equal((await page(b, `${shop.origin}/`)).clientId, clientId);

  // And the same from the Python side, for another new visitor.
  const c = new Browser({ ca: certs.ca });
  const go = await c.get(`${shop.origin}/handoff?to=${encodeURIComponent(`${checkout.origin}/`)}`);
  assert.equal(go.status, 200, go.body);
  const handed = go.json();
  assert.ok(handed.ok, go.body);
  assert.equal(handed.client_id, handed.request_client_id);
  await arrive(c, checkout, handed.url, `${checkout.origin}/`, handed.client_id);
  assert.equal((await page(c, `${shop.origin}/`)).clientId, handed.client_id);
  assert.equal((await page(c, `${checkout.origin}/`)).clientId, handed.client_id);
});

test("a token from the Python shop names the visitor at the Node checkout's webhook, passively", async () => {
  const visitor = new Browser({ ca: certs.ca });
  const first = await page(visitor, `${shop.origin}/`);
  const handed = (
    await visitor.get(`${shop.origin}/handoff?to=${encodeURIComponent(`${checkout.origin}/pay`)}`)
  ).json();
  assert.ok(handed.ok && handed.token, JSON.stringify(handed));

  // The payment provider, no cookies, on the checkout's host (the token's
  // audience), twice: the same answer, no cookie, no use spent.
  const provider = new Browser({ ca: certs.ca });
  const answers = [];
  for (let i = 0; i < 2; i += 1) {
    const hook = await provider.post(`${checkout.origin}/webhook`, { token: handed.token });
    assert.equal(hook.status, 200, hook.body);
    assert.deepEqual(hook.setCookie, []);
    answers.push(hook.json().identity);
  }
  assert.equal(answers[0].clientId, first.clientId);
  assert.equal(answers[0].sessionId, first.sessionId);
  assert.equal(answers[0].method, 'HANDOFF_TOKEN');
  assert.deepEqual(answers[1], answers[0]);

  // The visitor's own single-use link still works afterwards.
  await arrive(visitor, checkout, handed.url, `${checkout.origin}/pay`, first.clientId);
});
