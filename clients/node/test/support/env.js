'use strict';

// One test file's world: a scratch folder, the certificates, one key file,
// and the sidecars, apps and browsers it starts, all stopped after the file.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after } = require('node:test');
const { makeCerts } = require('./certs');
const { keygen, startSidecar } = require('./sidecar');
const { Browser } = require('./browser');
const { startApp } = require('../fixtures/app');

function testEnv() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sessionbridge-node-'));
  const certs = makeCerts(path.join(dir, 'certs'));
  const keys = keygen(dir);
  const stops = [];
  let sidecars = 0;
  after(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    certs,
    keys,
    /** A sidecar with this file's key file and a data folder of its own. */
    async sidecar({ flags = [], listen, dataDir } = {}) {
      sidecars += 1;
      const s = await startSidecar({ keys, dataDir: dataDir || path.join(dir, `data-${sidecars}`), listen, flags });
      stops.push(() => s.kill());
      return s;
    },
    /** The test app (express or fastify) over HTTPS against `target`. */
    async app(framework, target, options = {}) {
      const a = await startApp({ framework, target, certPath: certs.certPath, keyPath: certs.keyPath, options });
      stops.push(() => a.close());
      return a;
    },
    browser: (opts) => new Browser({ ca: certs.ca, ...opts }),
    stopLater: (fn) => stops.push(fn),
  };
}

/** Deadline used by tests that are not about the deadline: the debug
 * build on a busy machine may take longer than the 50 ms default. */
const DEADLINE_MS = Number(process.env.SB_TEST_DEADLINE_MS || 2000);

module.exports = { testEnv, DEADLINE_MS };
