'use strict';

// Two sites, each with its own sidecar (one shared key file): an Express
// shop on example.com in this process, a Fastify checkout on example.net
// as a separate process (test/fixtures/serve.js, as a test in another
// language starts it). Hand-offs both ways, a payment webhook, a login
// found by lookupByUser, and erasure.

const { before, test } = require('node:test');
const assert = require('node:assert/strict');
const { testEnv, DEADLINE_MS } = require('./support/env');
const { serveProcess } = require('./support/process');
const { Client } = require('..');

const env = testEnv();
let shop;
let checkout;
let shopSidecar;
let checkoutSidecar;
let SHOP;
let CHECKOUT;

before(async () => {
  [shopSidecar, checkoutSidecar] = await Promise.all([env.sidecar(), env.sidecar()]);
  shop = await env.app('express', shopSidecar.target, { deadlineMs: DEADLINE_MS });
  checkout = await serveProcess({
    framework: 'fastify',
    target: checkoutSidecar.target,
    certPath: env.certs.certPath,
    keyPath: env.certs.keyPath,
    options: { deadlineMs: DEADLINE_MS },
  });
  env.stopLater(() => checkout.close());
  SHOP = shop.origin('shop.example.com');
  CHECKOUT = checkout.origin('checkout.example.net');
});

/** Follows a hand-off link: the 303 to the clean URL, then the page. */
async function arrive(browser, link, expectedCleanUrl) {
  const r = await browser.get(link);
  assert.equal(r.status, 303, `${link}: ${r.status} ${r.body}`);
  assert.equal(r.headers.location, expectedCleanUrl);
  const page = await browser.get(r.headers.location);
  assert.equal(page.status, 200);
  return page.json();
}

test('Express shop to Fastify checkout and back: one client id, one session', async () => {
  const b = env.browser();
  const first = (await b.get(`${SHOP}/`)).json();
  assert.equal(first.method, 'NEW');

  const dest = `${CHECKOUT}/?cart=42`;
  const go = await b.get(`${SHOP}/go?to=${encodeURIComponent(dest)}`);
  assert.equal(go.status, 302);
  const there = await arrive(b, go.headers.location, dest);
  // The 303 set the checkout's own cookie; this page was recognised by it.
  assert.equal(there.method, 'COOKIE');
  assert.equal(there.clientId, first.clientId);
  assert.equal(there.sessionId, first.sessionId);
  assert.ok(b.cookies(`${CHECKOUT}/`)['__Secure-sbid'].domain === 'example.net');

  // And back from the checkout (Fastify's handoff) to the shop.
  const back = await b.get(`${CHECKOUT}/go?to=${encodeURIComponent(`${SHOP}/?paid=1`)}`);
  assert.equal(back.status, 302);
  assert.equal(back.json().clientId, first.clientId);
  const home = await arrive(b, back.headers.location, `${SHOP}/?paid=1`);
  assert.equal(home.clientId, first.clientId);
});

test('Fastify checkout to Express shop for a visitor who starts at the checkout', async () => {
  const b = env.browser();
  const first = (await b.get(`${CHECKOUT}/`)).json();
  assert.equal(first.method, 'NEW');
  const link = (await b.get(`${CHECKOUT}/go?to=${encodeURIComponent(`${SHOP}/`)}`)).headers.location;
  const there = await arrive(b, link, `${SHOP}/`);
  assert.equal(there.clientId, first.clientId);
});

test('a webhook: webhookIdentity answers the same each time, spends no use; a forged token is null', async () => {
  const visitor = env.browser();
  const page = (await visitor.get(`${SHOP}/`)).json();
  // A payment redirect to the checkout whose webhook comes back to the shop.
  const dest = `${CHECKOUT}/?order=9`;
  const go = await visitor.get(`${SHOP}/go?to=${encodeURIComponent(dest)}&aud=shop.example.com`);
  const { token } = go.json();
  assert.ok(token.length > 20);

  const provider = env.browser();
  const answers = [];
  for (let i = 0; i < 4; i += 1) {
    const r = await provider.post(`${SHOP}/webhook`, { token });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(r.setCookie, [], 'a passive call sets no cookie');
    answers.push(r.json().identity);
  }
  for (const a of answers) {
    assert.equal(a.method, 'HANDOFF_TOKEN');
    assert.equal(a.clientId, page.clientId);
    assert.equal(a.sessionId, page.sessionId);
    assert.deepEqual(a, answers[0]);
  }
  // Nothing was spent: the single-use token still takes the visitor across.
  const there = await arrive(visitor, go.headers.location, dest);
  assert.equal(there.clientId, page.clientId);

  // A forged token names no one.
  const forged = `${token.slice(0, -6)}${token.slice(-6).split('').reverse().join('')}`;
  assert.notEqual(forged, token);
  for (const t of [forged, 'not-a-token']) {
    const r = await provider.post(`${SHOP}/webhook`, { token: t });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json().identity, null);
  }
});

test('linkLogin then lookupByUser finds the client; forgetUser erases it on that sidecar', async () => {
  const b = env.browser();
  const page = (await b.get(`${SHOP}/`)).json();
  const user = `user-${Date.now()}`;
  const login = (await b.post(`${SHOP}/login`, { userId: user })).json();
  assert.equal(login.linked.userId, user);
  assert.equal(login.linked.clientId, page.clientId);

  const client = new Client({ target: shopSidecar.target });
  try {
    const found = await client.lookupByUser({ userId: user });
    assert.equal(found.identity.clientId, page.clientId);
    assert.equal(found.identity.userId, user);
    assert.deepEqual(found.recent.map((i) => i.clientId), [page.clientId]);
    assert.equal(typeof found.response.identity.session_id, 'number');

    const erased = await client.forgetUser({ userId: user });
    assert.deepEqual({ found: erased.found, identitiesErased: erased.identitiesErased }, { found: true, identitiesErased: 1 });
    assert.equal(await client.lookupByUser({ userId: user }), null);
    // The browser's cookie names an erased visitor now: a new identity.
    const next = (await b.get(`${SHOP}/`)).json();
    assert.notEqual(next.clientId, page.clientId);
    assert.equal(next.method, 'NEW');
    // Nothing was linked on the checkout's own store.
    const other = new Client({ target: checkoutSidecar.target });
    try {
      assert.equal(await other.lookupByUser({ userId: user }), null);
      assert.deepEqual((await other.forgetUser({ userId: user })).found, false);
    } finally {
      other.close();
    }
  } finally {
    client.close();
  }
});
