'use strict';

// The framework-neutral core on Node's own servers: node:http2 (HTTP/2,
// where the host is `:authority` and cookies may come one per header),
// against the real sidecar.

const fs = require('node:fs');
const http2 = require('node:http2');
const tls = require('node:tls');
const { before, test } = require('node:test');
const assert = require('node:assert/strict');
const sessionbridge = require('..');
const { testEnv, DEADLINE_MS } = require('./support/env');

const env = testEnv();
let sidecar;
before(async () => {
  sidecar = await env.sidecar();
});

function h2request(port, headers) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://checkout.example.net:${port}`, {
      createConnection: () =>
        tls.connect({ host: '127.0.0.1', port, servername: 'checkout.example.net', ca: env.certs.ca, ALPNProtocols: ['h2'] }),
    });
    session.on('error', reject);
    const req = session.request({ ':path': '/p?q=%2F', ...headers });
    let body = '';
    let head;
    req.setEncoding('utf8');
    req.on('response', (h) => (head = h));
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      session.close();
      resolve({ headers: head, body: JSON.parse(body) });
    });
    req.on('error', reject);
    req.end();
  });
}

test('the core on node:http2: :authority as host, cookie headers joined, cookies appended', async () => {
  const sb = sessionbridge.create({ target: sidecar.target, deadlineMs: DEADLINE_MS });
  const server = http2.createSecureServer(
    { cert: fs.readFileSync(env.certs.certPath), key: fs.readFileSync(env.certs.keyPath) },
    async (req, res) => {
      const { result } = await sb.handle(req, res);
      res.setHeader('set-cookie', ['app=1; Path=/; Secure']);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ result: result && { clientId: result.clientId, method: result.method }, context: sb.context(req) }));
    },
  );
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  env.stopLater(async () => {
    sb.close();
    await new Promise((r) => server.close(r));
  });
  const { port } = server.address();

  const first = await h2request(port, {});
  assert.equal(first.body.result.method, 'NEW');
  assert.equal(first.body.context.host, `checkout.example.net:${port}`);
  assert.equal(first.body.context.url, `https://checkout.example.net:${port}/p?q=%2F`);
  const setCookie = first.headers['set-cookie'];
  assert.deepEqual(setCookie.map((c) => c.split('=')[0]).sort(), ['__Secure-sbid', 'app']);
  const own = setCookie.find((c) => c.startsWith('__Secure-sbid=')).split(';')[0];

  // Cookies sent as separate header fields, as HTTP/2 browsers send them.
  const second = await h2request(port, { cookie: ['a=1', own, 'b=2'] });
  assert.equal(second.body.result.method, 'COOKIE');
  assert.equal(second.body.result.clientId, first.body.result.clientId);
  assert.equal(second.body.context.cookie_header, `a=1; ${own}; b=2`);
});

test('a second call in the same request names the identity the response sets; forgetVisitor too, and leaves none', async () => {
  const https = require('node:https');
  const { Browser } = require('./support/browser');
  const sb = sessionbridge.create({ target: sidecar.target, deadlineMs: DEADLINE_MS, redirectCleanUrl: false });
  let port;
  const server = https.createServer(
    { cert: fs.readFileSync(env.certs.certPath), key: fs.readFileSync(env.certs.keyPath) },
    async (req, res) => {
      const { result } = await sb.handle(req, res);
      const out = { result: result && { clientId: result.clientId, method: result.method } };
      if (req.url.startsWith('/leave')) {
        const h = await sb.handoff(req, `https://checkout.example.net:${port}/arrive?x=1`);
        out.handoff = { url: h.url, clientId: h.clientId, rejected: h.rejected };
      }
      if (req.url.startsWith('/nobody')) {
        out.threw = await sb.linkLogin(req, {}).then(() => null, (e) => `${e.name}: ${e.message}`);
      }
      if (req.url.startsWith('/forget')) {
        out.forgotten = Boolean(await sb.forgetVisitor(req));
        out.current = sessionbridge.current(req);
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(out));
    },
  );
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  port = server.address().port;
  env.stopLater(async () => {
    sb.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const b = new Browser({ ca: env.certs.ca });

  // A first request that hands off at once: one identity, not two.
  const leave = (await b.get(`https://shop.example.com:${port}/leave`)).json();
  assert.equal(leave.result.method, 'NEW');
  assert.equal(leave.handoff.clientId, leave.result.clientId);

  // The arrival reaches the app (no 303 here), which hands the visitor on
  // at once: the same visitor, nothing rejected.
  const link = leave.handoff.url.replace('/arrive', '/leave/arrive');
  const arrival = await b.get(link);
  const there = arrival.json();
  assert.equal(there.result.method, 'HANDOFF_TOKEN');
  assert.equal(there.result.clientId, leave.result.clientId);
  assert.equal(there.handoff.clientId, leave.result.clientId);
  assert.deepEqual(there.handoff.rejected, [], JSON.stringify(there.handoff.rejected));

  // forgetVisitor on a first visit erases the visitor this very request
  // was given (its cookie only queued on the response), and the request
  // has no identity after it.
  const c = new Browser({ ca: env.certs.ca });
  const gone = (await c.get(`https://checkout.example.net:${port}/forget`)).json();
  assert.equal(gone.result.method, 'NEW');
  assert.equal(gone.forgotten, true);
  assert.equal(gone.current, null);

  // linkLogin without a user is the app's bug: it throws (not failing open).
  const nobody = (await c.get(`https://checkout.example.net:${port}/nobody`)).json();
  assert.equal(nobody.threw, 'TypeError: sessionbridge: linkLogin needs a userId or an email');
});
