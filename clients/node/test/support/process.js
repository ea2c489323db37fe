'use strict';

// Starts test/fixtures/serve.js as its own process, as a test in another
// language would.

const { spawn } = require('node:child_process');
const path = require('node:path');

const SERVE = path.join(__dirname, '..', 'fixtures', 'serve.js');

function serveProcess({ framework, target, certPath, keyPath, options, port = 0 }) {
  const proc = spawn(process.execPath, [SERVE], {
    env: {
      ...process.env,
      SB_FRAMEWORK: framework,
      PORT: String(port),
      SIDECAR: target,
      TLS_CERT: certPath,
      TLS_KEY: keyPath,
      ...(options ? { SB_OPTIONS: JSON.stringify(options) } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`serve.js did not start in 20 s: ${err}`));
    }, 20_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve.js exited (${code}): ${err}`));
    });
    let started = false;
    proc.stdout.on('data', (d) => {
      // Read on to the end, but start once: a second match would drop the
      // 'exit' listener that close() waits for.
      if (started) return;
      out += d;
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (!m) return;
      started = true;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      const exited = new Promise((r) => proc.once('exit', r));
      resolve({
        port: Number(m[1]),
        origin: (host) => `https://${host}:${m[1]}`,
        stderr: () => err,
        async close() {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
          await exited;
        },
      });
    });
  });
}

module.exports = { serveProcess };
