'use strict';

// The RequestContext and the trusted-proxy rules of clients/README.md
// section 1, on request objects shaped as Node gives them. The end-to-end
// case (a real request through a real app) is in middleware.test.js.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const sessionbridge = require('..');
const { parseTrustedProxies, parseForwarded, bareAddress } = require('../lib/context');

/** A request as Node's http module gives it: lowercased headers, repeated
 * ones in headersDistinct. `headers` values may be lists (repeated header). */
function request({ peer = '203.0.113.5', headers = {}, url = '/', encrypted = true } = {}) {
  const distinct = {};
  const joined = {};
  for (const [k, v] of Object.entries(headers)) {
    const list = Array.isArray(v) ? v : [v];
    distinct[k] = list;
    joined[k] = k === 'cookie' ? list.join('; ') : list.join(', ');
  }
  return { headers: joined, headersDistinct: distinct, url, method: 'GET', socket: { remoteAddress: peer, encrypted } };
}

const ip = (req, trustedProxies) => sessionbridge.contextOf(req, { trustedProxies }).client_ip;

describe('client address', () => {
  const cases = [
    // [name, trustedProxies, peer, headers, expected]
    ['no proxies trusted: a spoofed X-Forwarded-For is ignored', undefined, '203.0.113.5',
      { 'x-forwarded-for': '1.2.3.4' }, '203.0.113.5'],
    ['an untrusted peer: its X-Forwarded-For is ignored', ['10.0.0.0/8'], '203.0.113.5',
      { 'x-forwarded-for': '1.2.3.4' }, '203.0.113.5'],
    ['an untrusted peer: its Forwarded is ignored', ['10.0.0.0/8'], '203.0.113.5',
      { forwarded: 'for=1.2.3.4' }, '203.0.113.5'],
    ['a trusted peer: the address it appended', ['10.0.0.0/8'], '10.0.0.2',
      { 'x-forwarded-for': '198.51.100.7' }, '198.51.100.7'],
    ['trusted hops are skipped from the right; the spoofed leftmost is not taken', ['10.0.0.0/8'], '10.0.0.2',
      { 'x-forwarded-for': '6.6.6.6, 198.51.100.7, 10.1.1.1' }, '198.51.100.7'],
    ['a list of addresses and blocks', ['127.0.0.1', '10.0.0.0/8', '192.168.1.0/24'], '127.0.0.1',
      { 'x-forwarded-for': '6.6.6.6, 198.51.100.7, 192.168.1.9, 10.3.2.1' }, '198.51.100.7'],
    ['every hop trusted: the leftmost', ['10.0.0.0/8'], '10.0.0.2',
      { 'x-forwarded-for': '10.9.9.9, 10.1.1.1' }, '10.9.9.9'],
    ['a trusted peer without X-Forwarded-For is the client', ['10.0.0.0/8'], '10.0.0.2', {}, '10.0.0.2'],
    ['an IPv4-mapped peer matches an IPv4 entry', ['127.0.0.1'], '::ffff:127.0.0.1',
      { 'x-forwarded-for': '198.51.100.7' }, '198.51.100.7'],
    ['IPv6 blocks', ['2001:db8::/32'], '2001:db8::1',
      { 'x-forwarded-for': '2a00:1450::5, 2001:db8:ffff::2' }, '2a00:1450::5'],
    ['every X-Forwarded-For header, in order', ['10.0.0.0/8'], '10.0.0.2',
      { 'x-forwarded-for': ['6.6.6.6, 198.51.100.7', '10.0.0.3'] }, '198.51.100.7'],
    ['a comma-separated string of entries', '10.0.0.0/8, 172.16.0.0/12', '172.16.5.5',
      { 'x-forwarded-for': '198.51.100.7, 10.0.0.9' }, '198.51.100.7'],
    ['Forwarded when there is no X-Forwarded-For', ['10.0.0.0/8'], '10.0.0.2',
      { forwarded: 'for=6.6.6.6, for=198.51.100.7;proto=https, for=10.0.0.7' }, '198.51.100.7'],
    ['a quoted IPv6 Forwarded value is passed on as it is', ['10.0.0.0/8'], '10.0.0.2',
      { forwarded: 'for="[2001:db8:cafe::17]:4711"' }, '[2001:db8:cafe::17]:4711'],
    ['X-Forwarded-For wins over Forwarded', ['10.0.0.0/8'], '10.0.0.2',
      { 'x-forwarded-for': '198.51.100.7', forwarded: 'for=6.6.6.6' }, '198.51.100.7'],
    ['a value that is no address is passed on', ['10.0.0.0/8'], '10.0.0.2',
      { 'x-forwarded-for': '198.51.100.7, garbage' }, 'garbage'],
    ['Forwarded obfuscated and unknown values are no addresses', ['10.0.0.0/8'], '10.0.0.2',
      { forwarded: 'for=198.51.100.7, for=unknown' }, 'unknown'],
    ['an address with a port is passed on with it', ['10.0.0.0/8'], '10.0.0.2',
      { 'x-forwarded-for': '198.51.100.7:5555, 10.0.0.1:80' }, '198.51.100.7:5555'],
    ['hop count 1: the rightmost', 1, '10.0.0.2',
      { 'x-forwarded-for': '6.6.6.6, 198.51.100.7' }, '198.51.100.7'],
    ['hop count 2: the second from the right', 2, '10.0.0.2',
      { 'x-forwarded-for': '6.6.6.6, 198.51.100.7, 10.0.0.9' }, '198.51.100.7'],
    ['hop count longer than the list: the peer', 3, '10.0.0.2',
      { 'x-forwarded-for': '6.6.6.6, 198.51.100.7' }, '10.0.0.2'],
    ['hop count without any header: the peer', 1, '10.0.0.2', {}, '10.0.0.2'],
    ['hop count 0 trusts nobody', 0, '10.0.0.2', { 'x-forwarded-for': '198.51.100.7' }, '10.0.0.2'],
    ['hop count over Forwarded', 1, '10.0.0.2', { forwarded: 'for=6.6.6.6, for=198.51.100.7' }, '198.51.100.7'],
    ['an empty list trusts nobody', [], '10.0.0.2', { 'x-forwarded-for': '198.51.100.7' }, '10.0.0.2'],
  ];
  for (const [name, trusted, peer, headers, expected] of cases) {
    test(name, () => {
      assert.equal(ip(request({ peer, headers }), trusted), expected);
    });
  }
});

describe('host and scheme behind proxies', () => {
  const headers = {
    host: 'internal.local:8080',
    'x-forwarded-host': 'evil.example.org, shop.example.com',
    'x-forwarded-proto': 'http, HTTPS',
  };
  test('from an untrusted peer: the Host header and the connection', () => {
    const c = sessionbridge.contextOf(request({ peer: '203.0.113.5', headers, url: '/a?b=%2F', encrypted: false }), {
      trustedProxies: ['10.0.0.0/8'],
    });
    assert.equal(c.host, 'internal.local:8080');
    assert.equal(c.scheme, 'http');
    assert.equal(c.url, 'http://internal.local:8080/a?b=%2F');
  });
  test('from a trusted peer: the rightmost values, the ones the nearest proxy wrote', () => {
    const c = sessionbridge.contextOf(request({ peer: '10.0.0.2', headers, url: '/a?b=%2F', encrypted: false }), {
      trustedProxies: ['10.0.0.0/8'],
    });
    assert.equal(c.host, 'shop.example.com');
    assert.equal(c.scheme, 'https');
    assert.equal(c.url, 'https://shop.example.com/a?b=%2F');
  });
  test('with a hop count', () => {
    const c = sessionbridge.contextOf(request({ peer: '10.0.0.2', headers, encrypted: false }), { trustedProxies: 1 });
    assert.equal(c.host, 'shop.example.com');
    assert.equal(c.scheme, 'https');
  });
  test('Forwarded host= and proto= of the nearest element', () => {
    const req = request({
      peer: '10.0.0.2',
      encrypted: false,
      headers: { host: 'internal.local', forwarded: 'for=1.2.3.4;host=evil.example.org;proto=http, for=198.51.100.7;host="checkout.example.net";proto=https' },
    });
    const c = sessionbridge.contextOf(req, { trustedProxies: ['10.0.0.0/8'] });
    assert.equal(c.host, 'checkout.example.net');
    assert.equal(c.scheme, 'https');
    assert.equal(c.client_ip, '198.51.100.7');
    // ... and ignored from anyone else
    const d = sessionbridge.contextOf(req, { trustedProxies: ['192.168.0.0/16'] });
    assert.equal(d.host, 'internal.local');
    assert.equal(d.scheme, 'http');
  });
});

describe('the rest of the context', () => {
  test('headers as received, every Cookie header joined, Sec-GPC', () => {
    const c = sessionbridge.contextOf(
      request({
        peer: '::ffff:198.51.100.7',
        url: '/p%20a/?q=caf%C3%A9&x',
        headers: {
          host: 'shop.example.com',
          cookie: ['a=1', 'b=2; c=3'],
          referer: 'https://www.example.com/x?y',
          'user-agent': 'UA/1.0',
          'accept-language': 'fr-CH, fr;q=0.9',
          'sec-gpc': '1',
        },
      }),
    );
    assert.deepEqual(c, {
      host: 'shop.example.com',
      url: 'https://shop.example.com/p%20a/?q=caf%C3%A9&x',
      scheme: 'https',
      referer: 'https://www.example.com/x?y',
      user_agent: 'UA/1.0',
      accept_language: 'fr-CH, fr;q=0.9',
      cookie_header: 'a=1; b=2; c=3',
      client_ip: '::ffff:198.51.100.7',
      global_privacy_control: true,
    });
  });
  test('absent headers are empty, no Sec-GPC is false; HTTP/2 :authority is the host', () => {
    const c = sessionbridge.contextOf(request({ headers: { ':authority': 'checkout.example.net', ':scheme': 'https' } }));
    assert.equal(c.host, 'checkout.example.net');
    assert.equal(c.url, 'https://checkout.example.net/');
    assert.equal(c.referer, '');
    assert.equal(c.cookie_header, '');
    assert.equal(c.global_privacy_control, false);
  });
});

describe('parsers', () => {
  test('Forwarded: elements, parameters, quoted strings with separators and escapes', () => {
    assert.deepEqual(parseForwarded(['for="a,b;c";Proto=https, For=x;by=y', 'for="q\\"uote"']), [
      { for: 'a,b;c', proto: 'https' },
      { for: 'x', by: 'y' },
      { for: 'q"uote' },
    ]);
    assert.deepEqual(parseForwarded(['', ' , ']), []);
  });
  test('addresses in header values', () => {
    assert.deepEqual(bareAddress('[2001:db8::1]:443'), { address: '2001:db8::1', family: 'ipv6' });
    assert.deepEqual(bareAddress('"198.51.100.7:80"'), { address: '198.51.100.7', family: 'ipv4' });
    assert.deepEqual(bareAddress('::ffff:10.0.0.1'), { address: '10.0.0.1', family: 'ipv4' });
    assert.deepEqual(bareAddress('fe80::1%eth0'), { address: 'fe80::1', family: 'ipv6' });
    assert.equal(bareAddress('unknown'), null);
    assert.equal(bareAddress('_hidden'), null);
  });
  test('a bad trustedProxies option fails at start, not on a request', () => {
    assert.throws(() => parseTrustedProxies(['10.0.0.0/33']), /not an address or a CIDR block/);
    assert.throws(() => parseTrustedProxies(['proxy.local']), /not an address or a CIDR block/);
    assert.throws(() => parseTrustedProxies(-1), /whole number/);
    assert.throws(() => parseTrustedProxies({}), /list of addresses/);
    assert.throws(() => sessionbridge.create({ trustedProxies: ['nonsense'] }), /nonsense/);
  });
});
