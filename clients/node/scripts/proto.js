'use strict';

// `npm pack` carries the repository's .proto in the package without a
// second copy in git: `copy` (prepack) puts proto/ into the package folder,
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
