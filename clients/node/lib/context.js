'use strict';

// The RequestContext of a Node request (http, https or http2), with the
// trusted-proxy rules of clients/README.md section 1. Nothing the browser
// sent is validated or cleaned here: the sidecar ignores unusable input and
// says so in `rejected`.

const net = require('node:net');

/**
 * The `trustedProxies` option, parsed once:
 *   undefined / null / 0 / []   nobody: the peer is the client
 *   a number n >= 1             n proxies in front of the app (hop count)
 *   a list (or a comma-separated string) of addresses and CIDR blocks
 */
function parseTrustedProxies(value) {
  if (value === undefined || value === null || value === false || value === 0) return { kind: 'none' };
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) {
      throw new TypeError(`sessionbridge: trustedProxies as a hop count must be a whole number >= 0, got ${value}`);
    }
    return { kind: 'hops', n: value };
  }
  const entries = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(entries)) {
    throw new TypeError('sessionbridge: trustedProxies is a list of addresses and CIDR blocks, or a hop count');
  }
  const list = new net.BlockList();
  let count = 0;
  for (const raw of entries) {
    const entry = String(raw).trim();
    if (!entry) continue;
    const slash = entry.indexOf('/');
    const ip = bareAddress(slash < 0 ? entry : entry.slice(0, slash));
    const bits = slash < 0 ? null : Number(entry.slice(slash + 1));
    const max = ip && ip.family === 'ipv4' ? 32 : 128;
    if (!ip || (bits !== null && !(Number.isInteger(bits) && bits >= 0 && bits <= max))) {
      throw new TypeError(`sessionbridge: trustedProxies: ${JSON.stringify(entry)} is not an address or a CIDR block`);
    }
    if (bits === null) list.addAddress(ip.address, ip.family);
    else list.addSubnet(ip.address, bits, ip.family);
    count += 1;
  }
  return count ? { kind: 'list', list } : { kind: 'none' };
}

/**
 * The address in a peer or header value, for matching against the trusted
 * list: quotes, brackets, an IPv4 port and an IPv6 zone removed, an
 * IPv4-mapped IPv6 address read as IPv4. `null` when it is no address.
 */
function bareAddress(value) {
  let v = String(value).trim();
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    if (end < 0) return null;
    v = v.slice(1, end);
  } else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(v)) {
    v = v.slice(0, v.lastIndexOf(':'));
  }
  const zone = v.indexOf('%');
  if (zone >= 0) v = v.slice(0, zone);
  const family = net.isIP(v);
  if (!family) return null;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(v);
  if (mapped) return { address: mapped[1], family: 'ipv4' };
  return { address: v, family: family === 4 ? 'ipv4' : 'ipv6' };
}

function isTrusted(trust, value) {
  if (trust.kind !== 'list') return false;
  const ip = bareAddress(value);
  return ip !== null && trust.list.check(ip.address, ip.family);
}

/** Every value of a header, in order (repeated headers kept apart). */
function headerValues(req, name) {
  const distinct = req.headersDistinct && req.headersDistinct[name];
  if (distinct) return distinct;
  const v = req.headers[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** The comma-separated items of every value of a header, in order. */
function listValues(req, name) {
  const out = [];
  for (const v of headerValues(req, name)) {
    for (const item of String(v).split(',')) {
      const t = item.trim();
      if (t) out.push(t);
    }
  }
  return out;
}

/**
 * RFC 7239 `Forwarded`: the elements of every header, in order, each an
 * object of its parameters (names lowercased, quoted values unquoted).
 */
function parseForwarded(values) {
  const elements = [];
  for (const value of values) {
    const s = String(value);
    let element = {};
    let key = '';
    let val = '';
    let inKey = true;
    let i = 0;
    const finishPair = () => {
      const k = key.trim().toLowerCase();
      if (k && !(k in element)) element[k] = val.trim();
      key = '';
      val = '';
      inKey = true;
    };
    const finishElement = () => {
      finishPair();
      if (Object.keys(element).length) elements.push(element);
      element = {};
    };
    while (i < s.length) {
      const c = s[i];
      if (!inKey && c === '"' && val.trim() === '') {
        // quoted-string, with backslash escapes
        let q = '';
        i += 1;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i += 1;
          q += s[i];
          i += 1;
        }
        val = q;
        i += 1;
        continue;
      }
      if (c === ';') finishPair();
      else if (c === ',') finishElement();
      else if (c === '=' && inKey) inKey = false;
      else if (inKey) key += c;
      else val += c;
      i += 1;
    }
    finishElement();
  }
  return elements;
}

/** The addresses the proxies recorded, nearest last. */
function forwardedAddresses(req) {
  const xff = listValues(req, 'x-forwarded-for');
  if (xff.length) return xff;
  return parseForwarded(headerValues(req, 'forwarded'))
    .map((e) => e.for)
    .filter((v) => v !== undefined && v !== '');
}

/** Whether the peer is a proxy the app trusts. */
function peerTrusted(trust, peer) {
  if (trust.kind === 'hops') return trust.n >= 1;
  return isTrusted(trust, peer);
}

/** The client address by the rules of clients/README.md section 1. */
function clientAddress(trust, peer, req) {
  if (trust.kind === 'none') return peer;
  const hops = forwardedAddresses(req);
  if (trust.kind === 'hops') {
    return hops.length < trust.n || trust.n === 0 ? peer : hops[hops.length - trust.n];
  }
  if (!isTrusted(trust, peer)) return peer;
  for (let i = hops.length - 1; i >= 0; i -= 1) {
    if (!isTrusted(trust, hops[i])) return hops[i];
  }
  return hops.length ? hops[0] : peer;
}

/** The value the nearest proxy wrote: rightmost X-Forwarded-<name>, else
 * the nearest `Forwarded` element's parameter. */
function proxyValue(req, xName, fName) {
  const x = listValues(req, xName);
  if (x.length) return x[x.length - 1];
  const elements = parseForwarded(headerValues(req, 'forwarded'));
  const last = elements[elements.length - 1];
  return last && last[fName] ? last[fName] : null;
}

function first(req, name) {
  const v = req.headers[name];
  if (v === undefined) return '';
  return Array.isArray(v) ? v.join(', ') : String(v);
}

const CONSENT_KEYS = [
  ['analyticsStorage', 'analytics_storage'],
  ['adStorage', 'ad_storage'],
  ['adUserData', 'ad_user_data'],
  ['adPersonalization', 'ad_personalization'],
];

function consentState(v) {
  if (v === true) return 'CONSENT_STATE_GRANTED';
  if (v === false) return 'CONSENT_STATE_DENIED';
  if (v === undefined || v === null || v === '') return 'CONSENT_STATE_UNSPECIFIED';
  const s = String(v).toUpperCase();
  return s.startsWith('CONSENT_STATE_') ? s : `CONSENT_STATE_${s}`;
}

/** The Consent message of the `consent` callback's answer: each signal
 * `true`/`false`, `'GRANTED'`/`'DENIED'`, or unset. */
function consentMessage(c) {
  if (!c) return null;
  const out = {};
  for (const [camel, snake] of CONSENT_KEYS) out[snake] = consentState(c[camel] !== undefined ? c[camel] : c[snake]);
  return out;
}

/**
 * The RequestContext of `req` (a Node IncomingMessage or Http2ServerRequest).
 * `target` is the request target as received (Express: `req.originalUrl`).
 */
function contextOf(req, { trust = { kind: 'none' }, target } = {}) {
  const socket = req.socket || {};
  const peer = socket.remoteAddress || '';
  const behindProxy = trust.kind !== 'none' && peerTrusted(trust, peer);
  let host = first(req, ':authority') || first(req, 'host');
  let scheme = first(req, ':scheme') || (socket.encrypted ? 'https' : 'http');
  if (behindProxy) {
    host = proxyValue(req, 'x-forwarded-host', 'host') || host;
    scheme = proxyValue(req, 'x-forwarded-proto', 'proto') || scheme;
  }
  scheme = scheme.toLowerCase();
  const path = target ?? req.url ?? '/';
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(path) ? path : `${scheme}://${host}${path}`;
  return {
    host,
    url,
    scheme,
    referer: first(req, 'referer'),
    user_agent: first(req, 'user-agent'),
    accept_language: first(req, 'accept-language'),
    cookie_header: headerValues(req, 'cookie').join('; '),
    client_ip: clientAddress(trust, peer, req),
    global_privacy_control: first(req, 'sec-gpc').trim() === '1',
  };
}

module.exports = {
  parseTrustedProxies,
  parseForwarded,
  bareAddress,
  clientAddress,
  contextOf,
  consentMessage,
};
