// The GA4 `_gl` linker, written from the browser library's published
// algorithm: an independent implementation to check the service against.
//
//   node gl.js write  USER_AGENT TZ_OFFSET LANGUAGE GA_VALUE GA4_KEY GA4_VALUE
//     prints a `_gl` value for the current minute;
//   node gl.js verify USER_AGENT TZ_OFFSET LANGUAGE GL_VALUE
//     exits 0 when the browser would accept GL_VALUE now (current or
//     previous minute), and prints the `_ga` client id it carries.

const [mode, ua, tz, lang, ...rest] = process.argv.slice(2);

const table = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(text) {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(text, 'utf8')) crc = (crc >>> 8) ^ table[(crc ^ byte) & 0xff];
  return (crc ^ 0xffffffff) >>> 0;
}

const minuteNow = () => Math.floor(Date.now() / 60000);
const checksum = (minute, serialized) => crc32([ua, tz, lang, minute, serialized].join('*')).toString(36);
const encode = (v) => Buffer.from(v, 'utf8').toString('base64').replace(/=/g, '.');
const decode = (v) => Buffer.from(v.replace(/\./g, '='), 'base64').toString('utf8');

if (mode === 'write') {
  const [ga, sessionKey, sessionValue] = rest;
  // The browser puts cookie values without their `GA1.n.` / `GS2.1.` prefix.
  const pairs = [
    ['_ga', ga.replace(/^G[A-Z]1\.[0-9]+\./, '')],
    [sessionKey, sessionValue.replace(/^G[A-Z][0-9]\.[0-9]+\./, '')],
  ];
  const serialized = pairs.map(([k, v]) => `${k}*${encode(v)}`).join('*');
  process.stdout.write(`1*${checksum(minuteNow(), serialized)}*${serialized}`);
} else if (mode === 'verify') {
  const parts = rest[0].split('*');
  if (parts.length < 4 || parts.length % 2 !== 0 || parts[0] !== '1') process.exit(2);
  const serialized = parts.slice(2).join('*');
  const now = minuteNow();
  if (![now, now - 1].some((m) => checksum(m, serialized) === parts[1])) process.exit(1);
  const ga = parts.indexOf('_ga', 2);
  process.stdout.write(ga > 0 ? decode(parts[ga + 1]) : '');
} else {
  process.exit(64);
}
