// The demo checkout: a small Node backend beside its own sessionbridge
// sidecar, on another site than the shop.
//
// Every page calls ResolveSession with the request's context and sets the
// cookies the sidecar returns; the page shows which identity arrived and how
// it was recognised. The client is built from the service's .proto at start
// (@grpc/proto-loader), the usual way for Node backends.
//
// Configuration from the environment (see examples/demo/run): SIDECAR,
// CHECKOUT_PORT, CHECKOUT_HOST, SHOP_ORIGIN, TLS_CERT, TLS_KEY, PROTO_DIR.

'use strict';

const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const definition = protoLoader.loadSync(
  path.join(env('PROTO_DIR'), 'sessionbridge/v1/sessionbridge.proto'),
  { keepCase: true, enums: String, longs: String, defaults: true, includeDirs: [env('PROTO_DIR')] },
);
const pb = grpc.loadPackageDefinition(definition).sessionbridge.v1;
const sidecar = new pb.SessionBridgeService(env('SIDECAR'), grpc.credentials.createInsecure());

const CHECKOUT_HOST = env('CHECKOUT_HOST');
const SHOP_ORIGIN = env('SHOP_ORIGIN');

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const short = (name, prefix) => String(name).replace(prefix, '');

function context(req) {
  const header = (n) => req.headers[n] || '';
  return {
    host: header('host'),
    url: `https://${header('host')}${req.url}`,
    referer: header('referer'),
    user_agent: header('user-agent'),
    cookie_header: header('cookie'),
    client_ip: req.socket.remoteAddress.replace(/^::ffff:/, ''),
    accept_language: header('accept-language'),
  };
}

function resolve(req) {
  return new Promise((ok, fail) => {
    const deadline = new Date(Date.now() + 2000);
    sidecar.ResolveSession({ context: context(req) }, { deadline }, (err, r) =>
      err ? fail(err) : ok(r),
    );
  });
}

function page(req, r) {
  const id = r.identity;
  const rejected = r.rejected
    .map(
      (x) =>
        `<li>${short(x.kind, 'EVIDENCE_KIND_')}: ${short(x.reason, 'REJECTION_REASON_')} (${escape(x.detail)})</li>`,
    )
    .join('');
  // The hand-off token has done its work: take it out of the address bar.
  const clean = r.clean_url
    ? `<script>history.replaceState(null, '', ${JSON.stringify(r.clean_url)});</script>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo checkout</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto} dt{font-weight:bold}</style></head>
<body>
<h1>Demo checkout <small>(${escape(CHECKOUT_HOST)})</small></h1>
<p>Pay 199 € for the espresso machine.</p>
<dl>
<dt>client id</dt><dd id="client-id">${escape(id.client_id)}</dd>
<dt>session id</dt><dd id="session-id">${escape(id.session_id)}</dd>
<dt>session number</dt><dd id="session-number">${escape(id.session_number)}</dd>
<dt>resolved by</dt><dd id="method">${short(r.method, 'RESOLUTION_METHOD_')}</dd>
<dt>confidence</dt><dd id="confidence">${Number(r.confidence).toFixed(2)}</dd>
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
  try {
    const r = await resolve(req);
    res.writeHead(200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-store',
      'Set-Cookie': r.cookies.map((c) => c.set_cookie_header),
    });
    res.end(page(req, r));
  } catch (e) {
    res.writeHead(502, { 'Content-Type': 'text/plain' }).end(`sessionbridge: ${e.message}\n`);
  }
}

const port = Number(env('CHECKOUT_PORT'));
https
  .createServer({ cert: fs.readFileSync(env('TLS_CERT')), key: fs.readFileSync(env('TLS_KEY')) }, (req, res) => {
    handle(req, res).finally(() =>
      process.stderr.write(`checkout: ${req.headers.host} ${req.method} ${req.url} ${res.statusCode}\n`),
    );
  })
  .listen(port, '127.0.0.1', () => console.log(`checkout listening on https://127.0.0.1:${port}`));
