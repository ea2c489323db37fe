'use strict';

// A throwaway certificate authority and one server certificate for the
// test host names, made with openssl as examples/demo/run makes the demo's.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const HOSTS = ['shop.example.com', 'www.example.com', 'checkout.example.net', 'links.example.org'];

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Writes ca.pem, site.pem, site.key in `dir`; returns their paths and the CA. */
function makeCerts(dir, hosts = HOSTS) {
  fs.mkdirSync(dir, { recursive: true });
  const san = hosts.map((h) => `DNS:${h}`).join(',');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=sessionbridge test CA',
    '-keyout', 'ca.key', '-out', 'ca.pem'], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${hosts[0]}`, '-keyout', 'site.key', '-out', 'site.csr'], dir);
  fs.writeFileSync(path.join(dir, 'site.ext'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  openssl(['x509', '-req', '-in', 'site.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', 'site.ext', '-out', 'site.pem'], dir);
  return {
    ca: fs.readFileSync(path.join(dir, 'ca.pem')),
    caPath: path.join(dir, 'ca.pem'),
    certPath: path.join(dir, 'site.pem'),
    keyPath: path.join(dir, 'site.key'),
  };
}

module.exports = { makeCerts, HOSTS };
