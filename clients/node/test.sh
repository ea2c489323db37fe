#!/usr/bin/env bash
# The Node package's tests: installs the pinned dependencies (npm ci, when
# node_modules is missing or older than package-lock.json), then runs every
# test in test/ against the real sidecar binary, in real Express and Fastify
# apps served over HTTPS.
#
# Environment: SESSIONBRIDGE_BIN (default: the debug build in
# $CARGO_TARGET_DIR, /var/tmp/sessionbridge-target by default),
# SB_TEST_DEADLINE_MS (deadline of tests not about the deadline, 2000).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sessionbridge-target}"
export SESSIONBRIDGE_BIN="${SESSIONBRIDGE_BIN:-$CARGO_TARGET_DIR/debug/sessionbridge}"

if [ ! -x "$SESSIONBRIDGE_BIN" ]; then
  echo "no sidecar binary at $SESSIONBRIDGE_BIN: build it (cargo build --bin sessionbridge) or set SESSIONBRIDGE_BIN" >&2
  exit 1
fi
command -v openssl >/dev/null || { echo "openssl is needed for the test certificates" >&2; exit 1; }

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# One test file at a time: each starts its own sidecars and apps, and the
# machine's cores are shared.
exec node --test --test-concurrency=1 --test-reporter=spec test/*.test.js
