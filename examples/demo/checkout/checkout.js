// The demo checkout: a small Node backend beside its own sessionbridge
// sidecar, on another site than the shop.
//
// It uses the sessionbridge package (clients/node) through its
// framework-neutral core on node:https: every page is resolved by one
// ResolveSession call, whose cookies the package appends to the response;
// the page shows which identity arrived and how it was recognised. A
// sidecar that fails leaves the page served without identity.
//
// Configuration from the environment (see examples/demo/run): SIDECAR,
// CHECKOUT_PORT, CHECKOUT_HOST, SHOP_ORIGIN, TLS_CERT, TLS_KEY.

'use strict';

const fs = require('node:fs');
const https = require('node:https');
const sessionbridge = require('sessionbridge');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const sb = sessionbridge.create({
  target: env('SIDECAR'),
  // The page shows how the visitor arrived (HANDOFF_TOKEN) and takes the
  // token out of the address bar itself, so no 303 to the clean URL.
  redirectCleanUrl: false,
  // A debug build of the sidecar on a shared machine: a generous deadline.
  // Production keeps the 50 ms default.
  deadlineMs: 2000,
});

const CHECKOUT_HOST = env('CHECKOUT_HOST');
const SHOP_ORIGIN = env('SHOP_ORIGIN');

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(req, r) {
  // No result: the sidecar failed, and the page is served all the same.
  const shown = r || { clientId: '', sessionId: '', sessionNumber: '', method: 'none (sidecar unavailable)', confidence: 0, rejected: [] };
  const rejected = shown.rejected
    .map((x) => `<li>${x.kind}: ${x.reason} (${escape(x.detail)})</li>`)
    .join('');
  // The hand-off token has done its work: take it out of the address bar.
  const clean = r && r.cleanUrl
    ? `<script>history.replaceState(null, '', ${JSON.stringify(r.cleanUrl)});</script>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo checkout</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto} dt{font-weight:bold}</style></head>
<body>
<h1>Demo checkout <small>(${escape(CHECKOUT_HOST)})</small></h1>
<p>Pay 199 € for the espresso machine.</p>
<dl>
<dt>client id</dt><dd id="client-id">${escape(shown.clientId)}</dd>
<dt>session id</dt><dd id="session-id">${escape(shown.sessionId)}</dd>
<dt>session number</dt><dd id="session-number">${escape(shown.sessionNumber)}</dd>
<dt>resolved by</dt><dd id="method">${escape(shown.method)}</dd>
<dt>confidence</dt><dd id="confidence">${shown.confidence.toFixed(2)}</dd>
<dt>Referer received</dt><dd id="referer">${escape(req.headers.referer || '')}</dd>
</dl>
<ul id="rejected">${rejected}</ul>
<p><a id="back" href="${escape(SHOP_ORIGIN)}/">Back to the shop</a></p>
${clean}
</body></html>`;
}

async function handle(req, res) {
  const url = new URL(req.url, `https://${CHECKOUT_HOST}`);
  const host = (req.headers.host || '').split(':')[0].toLowerCase();
  if (host !== CHECKOUT_HOST || !['/', '/start'].includes(url.pathname)) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  // Resolves the request and queues the sidecar's cookies on the response;
  // never throws (a failure is logged, and the result is null).
  const { result } = await sb.handle(req, res);
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(page(req, result));
}

const port = Number(env('CHECKOUT_PORT'));
https
  .createServer({ cert: fs.readFileSync(env('TLS_CERT')), key: fs.readFileSync(env('TLS_KEY')) }, (req, res) => {
    handle(req, res).finally(() =>
      process.stderr.write(`checkout: ${req.headers.host} ${req.method} ${req.url} ${res.statusCode}\n`),
    );
  })
  .listen(port, '127.0.0.1', () => console.log(`checkout listening on https://127.0.0.1:${port}`));
