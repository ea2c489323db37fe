'use strict';

// The middleware in real Express and real Fastify apps, served over HTTPS,
// against the real sidecar, driven by a client with a cookie jar.

const { before, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { testEnv, DEADLINE_MS } = require('./support/env');
const { cookieNames } = require('./support/browser');

const env = testEnv();
let sidecar;

before(async () => {
  sidecar = await env.sidecar();
});

const OWN = '__Secure-sbid';
const ours = (setCookie) => setCookie.filter((c) => c.startsWith(`${OWN}=`));

for (const framework of ['express', 'fastify']) {
  describe(framework, () => {
    let app;
    let shop;
    before(async () => {
      app = await env.app(framework, sidecar.target, { deadlineMs: DEADLINE_MS });
      shop = app.origin('shop.example.com');
    });

    test('a first visit gets a new identity and its cookie; the next one is recognised by it', async () => {
      const b = env.browser();
      const first = await b.get(`${shop}/`);
      assert.equal(first.status, 200);
      const r1 = first.json();
      assert.equal(r1.method, 'NEW');
      assert.equal(r1.newClient, true);
      assert.match(r1.clientId, /^\d+\.\d+$/);
      assert.equal(typeof r1.sessionId, 'number');
      assert.equal(r1.hasResponse, true);
      // Our cookie beside the app's own, each its own Set-Cookie header.
      assert.deepEqual(cookieNames(first.setCookie).sort(), ['app', OWN].sort());
      assert.match(ours(first.setCookie)[0], /Domain=example\.com/);
      assert.ok(b.cookies(`${shop}/`)[OWN], 'the jar kept the identity cookie');

      const second = await b.get(`${shop}/`);
      const r2 = second.json();
      assert.equal(r2.method, 'COOKIE');
      assert.equal(r2.clientId, r1.clientId);
      assert.equal(r2.sessionId, r1.sessionId);
      assert.equal(r2.confidence, 1);
      assert.equal(r2.newClient, false);
      assert.deepEqual(app.errors.list, []);
    });

    test('an app that sets its cookie late keeps it, and ours is added', async () => {
      const b = env.browser();
      for (const path of ['/late', '/writehead']) {
        const r = await b.get(`${shop}${path}`);
        assert.equal(r.status, 200, path);
        const own = path === '/late' ? 'late' : 'wh';
        assert.deepEqual(cookieNames(r.setCookie).sort(), [own, OWN].sort(), `${path}: ${r.setCookie}`);
        assert.notEqual(r.json(), null, path);
      }
      // Both cookies reached the jar; the second page was recognised.
      const jar = b.cookies(`${shop}/`);
      assert.ok(jar.late && jar.wh && jar[OWN]);
    });

    test('a streamed answer gets the cookies too', async () => {
      const b = env.browser();
      const r = await b.get(`${shop}/stream`);
      assert.equal(r.status, 200);
      assert.equal(r.body, 'chunk 1\nchunk 2\nchunk 3\n');
      assert.equal(r.headers['transfer-encoding'], 'chunked');
      assert.deepEqual(cookieNames(r.setCookie).sort(), ['stream', OWN].sort());
      const next = (await b.get(`${shop}/`)).json();
      assert.equal(next.method, 'COOKIE');
    });

    test("the framework's error page carries the cookies", async () => {
      const b = env.browser();
      const r = await b.get(`${shop}/error`);
      assert.equal(r.status, 500);
      assert.equal(ours(r.setCookie).length, 1);
      assert.equal((await b.get(`${shop}/`)).json().method, 'COOKIE');
    });

    test('a skipped path makes no call and carries no result', async () => {
      const b = env.browser();
      const r = await b.get(`${shop}/static/app.css`);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json(), { skipped: true, result: null });
      assert.deepEqual(ours(r.setCookie), []);
    });

    test('a hand-off link: 303 to the clean URL with the cookies, and the identity carried', async () => {
      const visitor = env.browser();
      const source = (await visitor.get(`${shop}/`)).json();
      const dest = `${app.origin('www.example.com')}/?item=7`;
      const go = await visitor.get(`${shop}/go?to=${encodeURIComponent(dest)}`);
      assert.equal(go.status, 302);
      const link = go.headers.location;
      assert.match(link, /[?&]_sbt=/);
      assert.equal(go.json().clientId, source.clientId);

      // Followed in another browser profile (no cookie shared with the source).
      const other = env.browser();
      const arrived = await other.get(link);
      assert.equal(arrived.status, 303);
      assert.equal(arrived.headers.location, dest);
      assert.equal(arrived.headers['cache-control'], 'no-store');
      assert.equal(ours(arrived.setCookie).length, 1);
      const landed = (await other.get(arrived.headers.location)).json();
      assert.equal(landed.method, 'COOKIE');
      assert.equal(landed.clientId, source.clientId);

      // HEAD is redirected as GET is; a POST is served, with the clean URL in the result.
      const more = (await visitor.get(`${shop}/go?to=${encodeURIComponent(dest)}&uses=3`)).headers.location;
      const head = await env.browser().request(more, { method: 'HEAD' });
      assert.equal(head.status, 303);
      assert.equal(head.headers.location, dest);
      const post = await env.browser().post(more.replace('/?', '/echo?'), {});
      assert.equal(post.status, 200);
      const served = post.json();
      assert.equal(served.method, 'HANDOFF_TOKEN');
      assert.equal(served.clientId, source.clientId);
      assert.equal(served.cleanUrl, dest.replace('/?', '/echo?'));
    });

    test('redirectCleanUrl: false leaves the clean URL to the app', async () => {
      const own = await env.app(framework, sidecar.target, { deadlineMs: DEADLINE_MS, redirectCleanUrl: false });
      const visitor = env.browser();
      const source = (await visitor.get(`${shop}/`)).json();
      const dest = `${own.origin('www.example.com')}/?x=1`;
      const link = (await visitor.get(`${shop}/go?to=${encodeURIComponent(dest)}`)).headers.location;
      const r = await env.browser().get(link);
      assert.equal(r.status, 200);
      const result = r.json();
      assert.equal(result.method, 'HANDOFF_TOKEN');
      assert.equal(result.clientId, source.clientId);
      assert.equal(result.cleanUrl, dest);
    });

    test('trusted proxies end to end: forwarded headers count only from a trusted peer', async () => {
      const behind = await env.app(framework, sidecar.target, { deadlineMs: DEADLINE_MS, trustedProxies: ['127.0.0.0/8'] });
      const headers = {
        'x-forwarded-for': '198.51.100.7, not-an-address',
        'x-forwarded-host': 'checkout.example.net',
        'x-forwarded-proto': 'https',
      };
      // The test client is 127.0.0.1: trusted by `behind`, not by `app`.
      const direct = await env.browser().get(`${shop}/`, { headers });
      const proxied = await env.browser().get(`${behind.origin('shop.example.com')}/`, { headers });
      const d = direct.json();
      const p = proxied.json();
      // Ignored: the peer is the client, the Host header names the site.
      assert.deepEqual(d.rejected.filter((x) => x.kind === 'CLIENT_IP'), []);
      assert.match(ours(direct.setCookie)[0], /Domain=example\.com(;|$)/);
      // Taken: the rightmost address (not one, so the sidecar reports it),
      // and the host the proxy wrote, on which the cookie is scoped.
      const ipRejected = p.rejected.filter((x) => x.kind === 'CLIENT_IP');
      assert.equal(ipRejected.length, 1, JSON.stringify(p.rejected));
      assert.equal(ipRejected[0].field, 'context.client_ip');
      assert.equal(ipRejected[0].reason, 'MALFORMED');
      assert.match(ours(proxied.setCookie)[0], /Domain=example\.net(;|$)/);

      const ctx = (await env.browser().get(`${behind.origin('shop.example.com')}/context`, {
        headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.7', 'x-forwarded-host': 'www.example.com' },
      })).json();
      assert.equal(ctx.client_ip, '198.51.100.7');
      assert.equal(ctx.host, 'www.example.com');
      assert.equal(ctx.url, 'https://www.example.com/context');
    });

    test('linkLogin links the user; a login on a first visit keeps the visit identity', async () => {
      const b = env.browser();
      const page = (await b.get(`${shop}/`)).json();
      const r = await b.post(`${shop}/login`, { userId: `u-${framework}-1` });
      const { linked, current } = r.json();
      assert.equal(linked.clientId, page.clientId);
      assert.equal(linked.userId, `u-${framework}-1`);
      assert.deepEqual(current, linked);
      const found = await app.instance.client.lookupByUser({ userId: `u-${framework}-1` });
      assert.equal(found.identity.clientId, page.clientId);

      // A first request that logs in: the cookie the middleware minted for it
      // is the one linked, and the one the browser keeps.
      const fresh = env.browser();
      const login = await fresh.post(`${shop}/login`, { email: `first-${framework}@example.com` });
      const l = login.json();
      assert.equal(l.linked.clientId, l.current.clientId);
      assert.equal(ours(login.setCookie).length, 1, login.setCookie.join('\n'));
      const again = (await fresh.get(`${shop}/`)).json();
      assert.equal(again.clientId, l.linked.clientId);
      const byEmail = await app.instance.client.lookupByUser({ email: `first-${framework}@example.com` });
      assert.equal(byEmail.identity.clientId, l.linked.clientId);
    });

    test('forgetVisitor erases the visitor and deletes the cookie', async () => {
      const b = env.browser();
      const page = (await b.get(`${shop}/`)).json();
      const r = await b.post(`${shop}/forget-me`, {});
      assert.deepEqual(r.json(), { found: true, identitiesErased: 1 });
      assert.ok(ours(r.setCookie).some((c) => /Max-Age=0/.test(c)), r.setCookie.join('\n'));
      assert.equal(b.cookies(`${shop}/`)[OWN], undefined);
      const next = (await b.get(`${shop}/`)).json();
      assert.equal(next.method, 'NEW');
      assert.notEqual(next.clientId, page.clientId);
    });
  });
}
