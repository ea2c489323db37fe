// A typed app using the package, checked by `tsc --noEmit` (test/types.test.js).
// Each `@ts-expect-error` line must be an error, or the check fails.

import express from 'express';
import Fastify from 'fastify';
import sessionbridge = require('sessionbridge');
import sessionbridgeFastify = require('sessionbridge/fastify');

const app = express();
app.use(
  sessionbridge.express({
    target: '127.0.0.1:50051',
    deadlineMs: 50,
    trustedProxies: ['10.0.0.0/8'],
    skip: ['/static/'],
    user: (req) => ({ userId: String(req.headers['x-user'] ?? '') }),
    consent: () => ({ analyticsStorage: true, adStorage: 'DENIED' }),
    onError: (err) => console.log(err.code),
  }),
);
app.get('/', async (req, res) => {
  const r = req.sessionbridge;
  const id: string = r ? r.clientId : 'anonymous';
  const sure: boolean = (r?.confidence ?? 0) >= 0.9;
  const how: sessionbridge.Method | undefined = r?.method;
  const h = await sessionbridge.handoff(req, 'https://checkout.example.net/', { maxUses: 2, extraAudience: ['shop.example.com'] });
  const url: string = h.url;
  const token: string = h.token;
  const linked = await sessionbridge.linkLogin(req, { email: 'a@example.com' });
  const hook = await sessionbridge.webhookIdentity(req, token);
  res.json({ id, sure, how, url, linked: linked?.userId, hook: hook?.sessionId });
});

// @ts-expect-error deadlineMs is a number
sessionbridge.express({ deadlineMs: 'fast' });
// @ts-expect-error trustedProxies is a list, a string or a hop count
sessionbridge.create({ trustedProxies: true });

const f = Fastify();
f.register(sessionbridgeFastify, { deadlineMs: 50 });
f.register(sessionbridge.fastify, { instance: sessionbridge.create() });
f.get('/', async (request) => {
  const r = request.sessionbridge;
  const n: number | undefined = r?.sessionNumber;
  // @ts-expect-error the result has no such field
  r?.client_id;
  return { n, method: r?.method ?? null };
});

async function client(): Promise<void> {
  const c = new sessionbridge.Client({ target: '127.0.0.1:50051', token: 't', tls: { ca: '/ca.pem' } });
  const found = await c.lookupByUser({ userId: 'u1' });
  const cid: string | undefined = found?.identity.clientId;
  const gone = await c.forgetUser('u1');
  const n: number = gone.identitiesErased;
  const minted = await c.raw.MintCookie({ context: { host: 'shop.example.com' }, ga_cookie: true });
  const maxAge: number | null = minted.cookies[0].max_age_seconds;
  // @ts-expect-error a wrapper field takes a plain boolean
  await c.raw.MintCookie({ context: { host: 'shop.example.com' }, ga_cookie: { value: true } });
  console.log(cid, n, maxAge, sessionbridge.status.NOT_FOUND);
  c.close();
}
void client;
