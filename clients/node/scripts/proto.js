'use strict';

// The package carries the repository's .proto without a second copy in
// git: `copy` (the `prepare` script, which npm runs before it packs the
// folder: `npm pack`, `npm install --install-links ./clients/node`, and on
// `npm ci` here) puts proto/ into the package folder (ignored by git);
// `clean` (postpack) removes it again.

const fs = require('node:fs');
const path = require('node:path');

const PKG = path.join(__dirname, '..');
const FILE = path.join('sessionbridge', 'v1', 'sessionbridge.proto');
const SOURCE = path.join(PKG, '..', '..', 'proto', FILE);
const COPY = path.join(PKG, 'proto');

const what = process.argv[2];
if (what === 'copy') {
  if (!fs.existsSync(SOURCE)) {
    // Outside the repository: a copy made earlier is all there is.
    if (fs.existsSync(path.join(COPY, FILE))) process.exit(0);
    console.error(`scripts/proto.js: ${SOURCE} not found: pack the package from the repository`);
    process.exit(1);
  }
  fs.rmSync(COPY, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(path.join(COPY, FILE)), { recursive: true });
  fs.copyFileSync(SOURCE, path.join(COPY, FILE));
} else if (what === 'clean') {
  fs.rmSync(COPY, { recursive: true, force: true });
} else {
  console.error('usage: node scripts/proto.js copy|clean');
  process.exit(2);
}
