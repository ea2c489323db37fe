// Writes a GA4 `_gl` linker value the way the browser library does, for a
// given User-Agent, time-zone offset, language and ids, at the current
// minute: an independent implementation to check the service against.
//
// Usage: node gl.js USER_AGENT TZ_OFFSET LANGUAGE GA_VALUE GA4_KEY GA4_VALUE

const [ua, tz, lang, ga, sessionKey, sessionValue] = process.argv.slice(2);

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

const encode = (v) => Buffer.from(v, 'utf8').toString('base64').replace(/=/g, '.');
// gtag.js puts the cookie values without their `GA1.n.` / `GS2.1.` prefix.
const pairs = [
  ['_ga', ga.replace(/^G[A-Z]1\.[0-9]+\./, '')],
  [sessionKey, sessionValue.replace(/^G[A-Z][0-9]\.[0-9]+\./, '')],
];
const serialized = pairs.map(([k, v]) => `${k}*${encode(v)}`).join('*');
const minute = Math.floor(Date.now() / 60000);
const checksum = crc32([ua, tz, lang, minute, serialized].join('*')).toString(36);
process.stdout.write(`1*${checksum}*${serialized}`);
