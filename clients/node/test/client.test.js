'use strict';

// The promise client: a sidecar behind mutual TLS and a bearer token, the
// raw calls with plain values for the protobuf wrappers, and the one
// channel per target.

const fs = require('node:fs');
const path = require('node:path');
const { before, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { testEnv, DEADLINE_MS } = require('./support/env');
const sessionbridge = require('..');
const { Client } = sessionbridge;

const env = testEnv();

describe('a sidecar behind mutual TLS and a bearer token', () => {
  let sidecar;
  let tls;
  const token = `t-${process.pid}-${Date.now()}`;
  before(async () => {
    // Named for a host name, reached at 127.0.0.1: tls.servername says which name to check.
    const server = env.certs.leaf('sidecar', { san: 'DNS:sidecar.internal', usage: 'serverAuth' });
    const client = env.certs.leaf('backend', { usage: 'clientAuth' });
    const tokenFile = path.join(env.dir, 'token');
    fs.writeFileSync(tokenFile, `${token}\n`);
    sidecar = await env.sidecar({
      flags: ['--tls-cert', server.certPath, '--tls-key', server.keyPath, '--tls-client-ca', env.certs.caPath,
        '--auth-token-file', tokenFile],
    });
    tls = { ca: env.certs.caPath, cert: client.certPath, key: fs.readFileSync(client.keyPath), servername: 'sidecar.internal' };
  });

  test('with the token and the client certificate, calls go through', async () => {
    const c = new Client({ target: sidecar.target, token, tls });
    try {
      assert.equal(await c.lookupByUser({ userId: 'nobody' }), null);
      const minted = await c.raw.MintCookie({ context: { host: 'shop.example.com', url: '/' } });
      assert.equal(minted.method, 'RESOLUTION_METHOD_NEW');
    } finally {
      c.close();
    }
  });

  test('a wrong token is refused: the client throws, the middleware fails open', async () => {
    const c = new Client({ target: sidecar.target, token: 'wrong', tls });
    try {
      await assert.rejects(c.lookupByUser({ userId: 'nobody' }), (e) => e.code === sessionbridge.status.UNAUTHENTICATED);
    } finally {
      c.close();
    }
    const app = await env.app('express', sidecar.target, { token: 'wrong', tls, deadlineMs: DEADLINE_MS });
    const r = await env.browser().get(`${app.origin('shop.example.com')}/`);
    assert.equal(r.status, 200);
    assert.equal(r.json(), null);
    assert.equal(app.errors.list[0].code, sessionbridge.status.UNAUTHENTICATED);
    assert.match(app.errors.lines[0], /^sessionbridge: ResolveSession failed: UNAUTHENTICATED /);
  });

  test('the middleware with token and TLS resolves, and links a login the client finds', async () => {
    const app = await env.app('fastify', sidecar.target, { token, tls, deadlineMs: DEADLINE_MS });
    const b = env.browser();
    const page = (await b.get(`${app.origin('shop.example.com')}/`)).json();
    assert.equal(page.method, 'NEW');
    await b.post(`${app.origin('shop.example.com')}/login`, { email: 'Ada@Example.com' });
    const c = new Client({ target: sidecar.target, token, tls });
    try {
      const found = await c.lookupByUser({ email: 'ada@example.com' });
      assert.equal(found.identity.clientId, page.clientId);
    } finally {
      c.close();
    }
  });

  test('without a client certificate the sidecar cannot be reached', async () => {
    const c = new Client({ target: sidecar.target, token, tls: { ca: env.certs.ca, servername: 'sidecar.internal' }, deadlineMs: 3000 });
    try {
      await assert.rejects(c.lookupByUser({ userId: 'nobody' }), (e) => [4, 14].includes(e.code));
    } finally {
      c.close();
    }
  });
});

describe('raw calls over plaintext', () => {
  let c;
  before(async () => {
    const sidecar = await env.sidecar();
    c = new Client({ target: sidecar.target, deadlineMs: 5000 });
    env.stopLater(async () => c.close());
  });
  const context = { host: 'shop.example.com', url: 'https://shop.example.com/', user_agent: 'UA/1' };

  test('wrapper fields take and give plain values; 64-bit numbers are numbers', async () => {
    const withGa = await c.raw.MintCookie({ context, ga_cookie: true });
    const names = withGa.cookies.map((x) => x.name).sort();
    assert.deepEqual(names, ['__Secure-sbid', '_ga']);
    for (const cookie of withGa.cookies) {
      assert.equal(typeof cookie.max_age_seconds, 'number', JSON.stringify(cookie));
      assert.ok(cookie.max_age_seconds > 86400);
    }
    assert.equal(typeof withGa.identity.session_id, 'number');
    assert.equal(typeof withGa.identity.first_seen_unix_seconds, 'number');
    const without = await c.raw.MintCookie({ context, ga_cookie: false });
    assert.deepEqual(without.cookies.map((x) => x.name), ['__Secure-sbid']);

    // An Int32Value and an Int64Value on the way in.
    const h = await c.raw.RecordHandoff({
      context,
      destination_url: 'https://checkout.example.net/pay',
      ga_linker_timezone_offset: -60,
      ga_linker_client_unix_millis: Date.now(),
    });
    assert.match(h.decorated_url, /[?&]_gl=/);
    const plain = await c.raw.RecordHandoff({ context, destination_url: 'https://checkout.example.net/pay' });
    assert.doesNotMatch(plain.decorated_url, /_gl=/);
    assert.equal(typeof plain.expires_at_unix_seconds, 'number');
  });

  test('errors of the raw calls carry the gRPC status', async () => {
    await assert.rejects(
      c.raw.ResolveSession({ context: { host: 'not-allowed.example.invalid' } }),
      (e) => e.code === sessionbridge.status.INVALID_ARGUMENT,
    );
    await assert.rejects(c.call('NoSuchCall', {}), /no RPC named NoSuchCall/);
    await assert.rejects(c.lookupByUser({}), /needs a userId or an email/);
  });

  test('forgetVisitor erases the visitor a context names by its own cookie', async () => {
    const minted = await c.raw.MintCookie({ context });
    const own = minted.cookies[0];
    const cookie = `${own.name}=${own.value}`;
    const gone = await c.forgetVisitor({ ...context, cookie_header: cookie });
    assert.equal(gone.found, true);
    assert.equal(gone.identitiesErased, 1);
    assert.ok(gone.cookies.some((x) => x.startsWith(`${own.name}=;`) || /Max-Age=0/.test(x)), gone.cookies.join('\n'));
    assert.equal(await c.forgetVisitor({ ...context, cookie_header: '' }), null);
  });

  test('clients of one target share one channel until the last closes', () => {
    const a = new Client({ target: c.target });
    const b = new Client({ target: c.target });
    assert.equal(a._channel, b._channel);
    assert.equal(a._channel, c._channel);
    const other = new Client({ target: c.target, tls: { ca: env.certs.ca } });
    assert.notEqual(other._channel, a._channel);
    other.close();
    a.close();
    b.close();
    assert.equal(c._channel.users, 1);
  });
});
