'use strict';

// A small HTTPS client with a cookie jar (tough-cookie, which keeps the
// __Host-/__Secure- and Secure rules a browser keeps), trusting the test CA
// and resolving every host name to 127.0.0.1 through a custom lookup: no
// /etc/hosts change. Redirects are not followed: the tests look at them.

const https = require('node:https');
const { CookieJar } = require('tough-cookie');

function lookup(_hostname, options, callback) {
  if (typeof options === 'function') return lookup(_hostname, {}, options);
  if (options && options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }]);
  return callback(null, '127.0.0.1', 4);
}

class Browser {
  constructor({ ca, userAgent = 'Mozilla/5.0 (X11; Linux x86_64) sessionbridge-test', jar } = {}) {
    this.ca = ca;
    this.userAgent = userAgent;
    this.jar = jar || new CookieJar();
  }

  /**
   * One request. `headers` are added (a `cookie` header given here
   * replaces the jar's). Returns { status, headers, setCookie, body, json, ms }.
   */
  request(url, { method = 'GET', headers = {}, body, useJar = true } = {}) {
    const u = new URL(url);
    const h = { 'user-agent': this.userAgent, 'accept-language': 'en-GB,en;q=0.8', ...headers };
    if (useJar && !('cookie' in h)) {
      const cookie = this.jar.getCookieStringSync(url);
      if (cookie) h.cookie = cookie;
    }
    let payload;
    if (body !== undefined) {
      payload = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      if (!h['content-type']) h['content-type'] = 'application/json';
      h['content-length'] = String(payload.length);
    }
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const req = https.request(
        u,
        { method, headers: h, ca: this.ca, lookup, agent: false, timeout: 30_000 },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const setCookie = res.headers['set-cookie'] || [];
            if (useJar) for (const c of setCookie) this.jar.setCookieSync(c, url, { ignoreError: true });
            const text = Buffer.concat(chunks).toString('utf8');
            resolve({
              status: res.statusCode,
              headers: res.headers,
              setCookie,
              body: text,
              chunks: chunks.length,
              json: () => JSON.parse(text),
              ms: Date.now() - started,
            });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  get(url, options) {
    return this.request(url, options);
  }

  post(url, body, options = {}) {
    return this.request(url, { ...options, method: 'POST', body });
  }

  /** The jar's cookies for a URL, by name. */
  cookies(url) {
    return Object.fromEntries(this.jar.getCookiesSync(url).map((c) => [c.key, c]));
  }
}

/** The names of the cookies a Set-Cookie list sets. */
const cookieNames = (setCookie) => setCookie.map((c) => c.split('=')[0].trim());

module.exports = { Browser, cookieNames, lookup };
