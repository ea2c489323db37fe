'use strict';

// Per-request state, and the sidecar's Set-Cookie headers appended to the
// response the app produces. The cookies are added when the head is
// written (`writeHead`, which Node also calls for an implicit head, a
// stream's first write and `flushHeaders`), so whatever Set-Cookie the app
// sets, earlier or later, with `setHeader`, `append` or in `writeHead`'s own
// headers, is kept beside ours.

const { contextOf } = require('./context');

const STATE = Symbol.for('sessionbridge.state');

function stateOf(req) {
  return (req && req[STATE]) || null;
}

/**
 * The state of `req`, made on first use: the instance, the response, the
 * framework's request, the context (built once) and the cookie queue.
 */
function attach(req, res, sb, appReq, target) {
  let state = req[STATE];
  if (state && state.sb === sb && state.res === res) return state;
  let context = null;
  state = {
    sb,
    req,
    res,
    appReq,
    target,
    /** Our cookies by name, domain and path: a later answer replaces an earlier one. */
    queue: new Map(),
    context() {
      if (!context) context = contextOf(req, { trust: sb._trust, target });
      return { ...context };
    },
  };
  Object.defineProperty(req, STATE, { value: state, configurable: true, writable: true });
  if (res) patch(res, state);
  return state;
}

function toList(v) {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v.map(String) : [String(v)];
}

function patch(res, state) {
  if (res[STATE]) {
    res[STATE].state = state;
    return;
  }
  const holder = { state };
  Object.defineProperty(res, STATE, { value: holder, configurable: true });
  const original = res.writeHead;
  res.writeHead = function writeHead(...args) {
    try {
      addCookies(this, args, holder.state);
    } catch {
      // the page goes out without our cookies rather than not at all
    }
    return original.apply(this, args);
  };
}

function addCookies(res, args, state) {
  const ours = [...state.queue.values()].map((c) => c.set_cookie_header).filter(Boolean);
  state.queue.clear();
  state.flushed = true;
  if (!ours.length) return;
  const at = typeof args[1] === 'string' ? 2 : 1;
  const headers = args[at];
  if (Array.isArray(headers) && headers.some((h, i) => i % 2 === 0 && String(h).toLowerCase() === 'set-cookie')) {
    // The raw form [name, value, name, value, ...]: its Set-Cookie replace
    // the ones set before, so ours go in with them.
    const present = new Set(headers.filter((h, i) => i % 2 === 1 && String(headers[i - 1]).toLowerCase() === 'set-cookie'));
    const extra = ours.filter((c) => !present.has(c)).flatMap((c) => ['Set-Cookie', c]);
    args[at] = [...headers, ...extra];
    return;
  }
  if (headers && !Array.isArray(headers) && typeof headers === 'object') {
    const key = Object.keys(headers).find((k) => k.toLowerCase() === 'set-cookie');
    if (key !== undefined) {
      const theirs = toList(headers[key]);
      args[at] = { ...headers, [key]: [...theirs, ...ours.filter((c) => !theirs.includes(c))] };
      return;
    }
  }
  const theirs = toList(res.getHeader('set-cookie'));
  res.setHeader('Set-Cookie', [...theirs, ...ours.filter((c) => !theirs.includes(c))]);
}

/** Queues cookies (the proto's Cookie messages) on the request's response. */
function queueCookies(state, cookies) {
  if (!cookies || !cookies.length) return;
  if (!state.res) return;
  if (state.res.headersSent) {
    state.sb._failed('Set-Cookie', new Error('the response head was already sent'), state.appReq, '; cookies not set');
    return;
  }
  for (const c of cookies) state.queue.set(`${c.name}\0${c.domain}\0${c.path}`, c);
}

module.exports = { attach, stateOf, queueCookies, STATE };
