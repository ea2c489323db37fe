'use strict';

// A throwaway certificate authority and certificates signed by it, made
// with openssl as examples/demo/run makes the demo's: one for the test
// sites' host names, and on demand one for a TLS sidecar and one client
// certificate for mutual TLS.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const HOSTS = ['shop.example.com', 'www.example.com', 'checkout.example.net', 'links.example.org'];

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A certificate `name`.pem / `name`.key signed by the CA in `dir`. */
function leaf(dir, name, { san, usage }) {
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  fs.writeFileSync(path.join(dir, `${name}.ext`), `${san ? `subjectAltName=${san}\n` : ''}extendedKeyUsage=${usage}\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
  return { certPath: path.join(dir, `${name}.pem`), keyPath: path.join(dir, `${name}.key`) };
}

/**
 * Writes the CA and the sites' certificate in `dir`. Returns the paths,
 * the CA's PEM, and `leaf(name, {san, usage})` for more certificates.
 */
function makeCerts(dir, hosts = HOSTS) {
  fs.mkdirSync(dir, { recursive: true });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=sessionbridge test CA',
    '-keyout', 'ca.key', '-out', 'ca.pem'], dir);
  const site = leaf(dir, 'site', { san: hosts.map((h) => `DNS:${h}`).join(','), usage: 'serverAuth' });
  return {
    ca: fs.readFileSync(path.join(dir, 'ca.pem')),
    caPath: path.join(dir, 'ca.pem'),
    ...site,
    leaf: (name, opts) => leaf(dir, name, opts),
  };
}

module.exports = { makeCerts, HOSTS };
