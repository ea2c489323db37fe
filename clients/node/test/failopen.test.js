'use strict';

// Fail open: a sidecar that is killed or stops answering leaves every page
// served, without identity, with one log line and onError called; the
// channel finds the sidecar again when it is back. These apps keep the
// default deadline (50 ms). Times are only bounded generously.

const path = require('node:path');
const { before, test } = require('node:test');
const assert = require('node:assert/strict');
const { testEnv } = require('./support/env');
const { cookieNames } = require('./support/browser');

const env = testEnv();
const LOG = /^sessionbridge: ResolveSession failed: (UNAVAILABLE|DEADLINE_EXCEEDED) .*; serving without identity$/;
const CODES = [4, 14]; // DEADLINE_EXCEEDED, UNAVAILABLE

/** Retries `fn` until it returns a truthy value, for at most `ms`. */
async function eventually(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(last)})`);
}

let sidecar;
let apps;
const dataDir = () => path.join(env.dir, 'failopen-data');

before(async () => {
  // Writes synced, so that the restarted sidecar still knows the visitors.
  sidecar = await env.sidecar({ dataDir: dataDir(), flags: ['--durability', 'sync'] });
  apps = {
    express: await env.app('express', sidecar.target),
    fastify: await env.app('fastify', sidecar.target),
  };
});

test('the sidecar killed mid-test: pages are served without identity, onError is called, and it is found again', async () => {
  const browsers = {};
  const known = {};
  for (const [name, app] of Object.entries(apps)) {
    browsers[name] = env.browser();
    // The debug build's first answer may be slow; retry until one fits in 50 ms.
    known[name] = await eventually(async () => (await browsers[name].get(`${app.origin('shop.example.com')}/`)).json(), 10_000, `${name} resolves`);
    app.errors.list.length = 0;
    app.errors.lines.length = 0;
  }

  await sidecar.kill();

  for (const [name, app] of Object.entries(apps)) {
    const started = Date.now();
    const r = await browsers[name].get(`${app.origin('shop.example.com')}/`);
    assert.ok(Date.now() - started < 5000, `${name}: answered in ${Date.now() - started} ms`);
    assert.equal(r.status, 200, name);
    assert.equal(r.json(), null, `${name}: no identity`);
    assert.deepEqual(cookieNames(r.setCookie), ['app'], `${name}: the app's own cookie only`);
    assert.equal(app.errors.list.length, 1, `${name}: onError once`);
    assert.ok(CODES.includes(app.errors.list[0].code), `${name}: ${JSON.stringify(app.errors.list[0])}`);
    assert.equal(app.errors.list[0].url, '/');
    assert.equal(app.errors.lines.length, 1);
    assert.match(app.errors.lines[0], LOG);

    // A webhook does not fail open: it answers 5xx so that it is retried.
    const hook = await env.browser().post(`${app.origin('shop.example.com')}/webhook`, { token: 'x' });
    assert.equal(hook.status, 500, `${name}: ${hook.body}`);

    // A hand-off sends the visitor on without a token.
    const go = await browsers[name].get(`${app.origin('shop.example.com')}/go?to=${encodeURIComponent('https://checkout.example.net/')}`);
    assert.equal(go.headers.location, 'https://checkout.example.net/');
    assert.equal(go.json().token, '');
  }

  // Back on the same address: the same channel reconnects by itself, and
  // the visitors are recognised by their cookies again.
  sidecar = await env.sidecar({ dataDir: dataDir(), listen: sidecar.target, flags: ['--durability', 'sync'] });
  for (const [name, app] of Object.entries(apps)) {
    const again = await eventually(
      async () => (await browsers[name].get(`${app.origin('shop.example.com')}/`)).json(),
      15_000,
      `${name} recovers`,
    );
    assert.equal(again.method, 'COOKIE', name);
    assert.equal(again.clientId, known[name].clientId, name);
  }
});

test('a sidecar that stops answering: the default 50 ms deadline serves the page without identity', async () => {
  const app = apps.express;
  const b = env.browser();
  const known = await eventually(async () => (await b.get(`${app.origin('shop.example.com')}/`)).json(), 10_000, 'resolves');
  app.errors.list.length = 0;
  sidecar.pause();
  try {
    const started = Date.now();
    const r = await b.get(`${app.origin('shop.example.com')}/`);
    const ms = Date.now() - started;
    assert.equal(r.status, 200);
    assert.equal(r.json(), null);
    assert.ok(ms < 2000, `answered in ${ms} ms`);
    assert.equal(app.errors.list.length, 1);
    assert.equal(app.errors.list[0].code, 4, JSON.stringify(app.errors.list[0]));
  } finally {
    sidecar.resume();
  }
  const again = await eventually(async () => (await b.get(`${app.origin('shop.example.com')}/`)).json(), 10_000, 'recovers');
  assert.equal(again.clientId, known.clientId);
});

test('a throwing onError, logger or user callback still leaves the page served', async () => {
  const app = await env.app('fastify', sidecar.target, {
    deadlineMs: 2000,
    user: () => {
      throw new Error('the auth layer failed');
    },
    onError: () => {
      throw new Error('metrics are down');
    },
    logger: {
      warn: () => {
        throw new Error('the log is full');
      },
    },
  });
  const r = await env.browser().get(`${app.origin('shop.example.com')}/`);
  assert.equal(r.status, 200);
  assert.equal(r.json(), null);
});
