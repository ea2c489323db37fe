// The GA4 `_gl` cross-domain linker as gtag.js computes it, written on its
// own from the published description of the browser code (not from the
// service's Rust): an independent implementation to check the service
// against.
//
// What makes it gtag.js's and not AMP's linker:
//   - the CRC-32 runs over `charCodeAt(i) & 255` of the text (the low byte
//     of each UTF-16 code unit), not over UTF-8;
//   - a link is good in the current minute and the two before it;
//   - values are base64 of the code units (no UTF-8 step) with the
//     alphabet A-Z a-z 0-9 - _ and `.` as padding;
//   - the value is matched as it arrived, else after one or two
//     decodeURIComponent;
//   - keys are not checked against any pattern.
//
// The browser's User-Agent, time-zone offset, language and clock are
// arguments (TIME_MS is `Date.now()`, or `now`):
//
//   node gl.js write USER_AGENT TZ_OFFSET LANGUAGE TIME_MS KEY VALUE [KEY VALUE...]
//     prints the `_gl` value gtag.js writes for these pairs;
//   node gl.js read USER_AGENT TZ_OFFSET LANGUAGE TIME_MS GL_VALUE
//     exits 0 and prints the pairs as JSON when gtag.js accepts GL_VALUE
//     at that time, exits 1 when it does not.

const [mode, userAgent, tzOffset, language, timeArg, ...rest] = process.argv.slice(2);
const timeMs = timeArg === 'now' ? Date.now() : Number(timeArg);

const CRC_TABLE = [];
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  CRC_TABLE.push(c >>> 0);
}

function crc32OfCodeUnits(text) {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i++) {
    crc = (crc >>> 8) ^ CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff];
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function checksum(payload, minutesAgo) {
  const minute = Math.floor(timeMs / 60000) - minutesAgo;
  const text = [userAgent, tzOffset, language, minute, payload].join('*');
  return crc32OfCodeUnits(text).toString(36);
}

const SYMBOLS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.';

function encode(value) {
  let out = '';
  for (let i = 0; i < value.length; i += 3) {
    const [a, b, c] = [0, 1, 2].map((k) => (i + k < value.length ? value.charCodeAt(i + k) : 0));
    const quad = [a >> 2, ((a & 3) << 4) | (b >> 4), ((b & 15) << 2) | (c >> 6), c & 63];
    if (i + 2 >= value.length) quad[3] = 64;
    if (i + 1 >= value.length) quad[2] = 64;
    out += quad.map((q) => SYMBOLS[q]).join('');
  }
  return out;
}

function decode(text) {
  const values = [];
  for (const ch of text) {
    const v = SYMBOLS.indexOf(ch);
    if (v >= 0) values.push(v);
    else if (!/^[\s\xa0]$/.test(ch)) throw new Error(`not base64: ${ch}`);
  }
  let out = '';
  for (let i = 0; i < values.length; i += 4) {
    const [a, b = 0, c = 64, d = 64] = values.slice(i, i + 4);
    out += String.fromCharCode((a << 2) | (b >> 4));
    if (c !== 64) {
      out += String.fromCharCode(((b << 4) & 0xf0) | (c >> 2));
      if (d !== 64) out += String.fromCharCode(((c << 6) & 0xc0) | d);
    }
  }
  return out;
}

function write(pairs) {
  const fields = [];
  for (let i = 0; i < pairs.length; i += 2) fields.push(pairs[i], encode(pairs[i + 1]));
  const payload = fields.join('*');
  return ['1', checksum(payload, 0), payload].join('*');
}

function read(value) {
  const pattern = /(.*?)\*(.*?)\*(.*)/;
  let match = null;
  for (let attempt = 0; attempt < 3 && !match; attempt++) {
    match = pattern.exec(value);
    if (!match) value = decodeURIComponent(value);
  }
  if (!match || match[1] !== '1') return null;
  const [, , sum, payload] = match;
  if (![0, 1, 2].some((minutesAgo) => checksum(payload, minutesAgo) === sum)) return null;
  const fields = payload ? payload.split('*') : [];
  if (fields.length % 2) return null;
  const pairs = {};
  for (let i = 0; i < fields.length; i += 2) pairs[fields[i]] = decode(fields[i + 1]);
  return pairs;
}

if (mode === 'write') {
  process.stdout.write(write(rest));
} else if (mode === 'read') {
  let pairs = null;
  try {
    pairs = read(rest[0]);
  } catch (e) {
    pairs = null;
  }
  if (!pairs) process.exit(1);
  process.stdout.write(JSON.stringify(pairs));
} else {
  process.exit(64);
}
