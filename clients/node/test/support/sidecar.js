'use strict';

// The real sidecar binary, started on a free loopback port: SESSIONBRIDGE_BIN,
// by default the debug build in $CARGO_TARGET_DIR (/var/tmp/sessionbridge-target).

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const BIN =
  process.env.SESSIONBRIDGE_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || '/var/tmp/sessionbridge-target', 'debug', 'sessionbridge');

const ALLOWED = 'example.com,example.net,example.org';

/** A new key file (one per test file; every sidecar of a test shares it). */
function keygen(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'keys.json');
  execFileSync(BIN, ['keygen', '--out', file], { stdio: 'ignore' });
  return file;
}

/**
 * Starts `sessionbridge serve`; resolves when it announced its address.
 * `listen` may name a port to come back on after a kill.
 */
function startSidecar({ keys, dataDir, listen = '127.0.0.1:0', flags = [] }) {
  fs.mkdirSync(dataDir, { recursive: true });
  const args = ['serve', '--listen', listen, '--keys', keys, '--data-dir', dataDir,
    '--allowed-domains', ALLOWED, ...flags];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => {
    log += d;
    if (log.length > 100_000) log = log.slice(-50_000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`sidecar did not start in 20 s: ${log}`)), 20_000);
    function fail(e) {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(e);
    }
    proc.once('exit', (code) => fail(new Error(`sidecar exited (${code}): ${log}`)));
    let started = false;
    proc.stdout.on('data', (d) => {
      if (started) return; // read on, start once (see process.js)
      out += d;
      const m = /sessionbridge listening on (\S+)/.exec(out);
      if (!m) return;
      started = true;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      const sidecar = {
        target: m[1],
        port: Number(m[1].split(':').pop()),
        proc,
        logs: () => log,
        exited: new Promise((r) => proc.once('exit', r)),
        /** SIGKILL, and wait for the process to be gone. */
        async kill() {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
          await sidecar.exited;
        },
        pause: () => proc.kill('SIGSTOP'),
        resume: () => proc.kill('SIGCONT'),
      };
      resolve(sidecar);
    });
  });
}

module.exports = { BIN, keygen, startSidecar, ALLOWED };
