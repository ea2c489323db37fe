'use strict';

// The framework-neutral core: one SessionBridge per app holds the options
// and the client; per request it builds the context, makes the one call,
// keeps the result, queues the sidecar's cookies on the response and fails
// open. The Express and Fastify adapters are thin layers over `handle`.

const { Client, DEFAULT_TARGET, status } = require('./client');
const { contextOf, parseTrustedProxies, consentMessage } = require('./context');
const { resultOf, identityOf, rejectedOf, cookieHeaders, method: methodName } = require('./result');
const { attach, stateOf, queueCookies } = require('./response');

const STATUS_NAMES = Object.fromEntries(Object.entries(status).map(([k, v]) => [v, k]));

/** `CODE details` on one line. */
function errorText(e) {
  const text =
    e && typeof e.code === 'number' && STATUS_NAMES[e.code]
      ? `${STATUS_NAMES[e.code]} ${e.details || e.message || ''}`
      : (e && (e.message || String(e))) || 'unknown error';
  return text.replace(/\s+/g, ' ').trim();
}

function skipper(skip) {
  if (!skip) return () => false;
  if (typeof skip === 'function') return skip;
  const prefixes = (Array.isArray(skip) ? skip : [skip]).map(String);
  return (_req, path) => prefixes.some((p) => path.startsWith(p));
}

/** The framework's request object's underlying Node request. */
function rawOf(req) {
  return req && req.raw && req.raw.headers && req.raw.socket !== undefined ? req.raw : req;
}

function userFields(user) {
  if (user === undefined || user === null || user === false) return {};
  if (typeof user === 'string') return { user_id: user };
  const out = {};
  if (user.userId) out.user_id = String(user.userId);
  if (user.email) out.email = String(user.email);
  return out;
}

class SessionBridge {
  /**
   * @param {object} [options] see index.d.ts (Options)
   */
  constructor(options = {}) {
    this.options = {
      target: options.target || DEFAULT_TARGET,
      deadlineMs: options.deadlineMs ?? 50,
      redirectCleanUrl: options.redirectCleanUrl !== false,
      user: options.user || null,
      consent: options.consent || null,
      gaCookie: options.gaCookie ?? null,
      onError: options.onError || null,
      logger: options.logger || console,
    };
    this._trust = parseTrustedProxies(options.trustedProxies);
    this._skip = skipper(options.skip);
    this.client = new Client({
      target: this.options.target,
      token: options.token,
      tls: options.tls,
      deadlineMs: this.options.deadlineMs,
      channelOptions: options.channelOptions,
    });
  }

  /** The RequestContext of a request (what the middleware sends). */
  context(req, target) {
    return contextOf(rawOf(req), { trust: this._trust, target });
  }

  /** Logs one line and calls onError; never throws. */
  _failed(what, error, req, suffix = '; serving without identity') {
    try {
      const log = this.options.logger;
      const line = `sessionbridge: ${what} failed: ${errorText(error)}${suffix}`;
      if (log && typeof log.warn === 'function') log.warn(line);
      else if (log && typeof log.error === 'function') log.error(line);
    } catch {
      // a broken logger must not break the page
    }
    try {
      if (this.options.onError) {
        const p = this.options.onError(error, req);
        if (p && typeof p.catch === 'function') p.catch(() => {});
      }
    } catch {
      // nor a broken hook
    }
  }

  /**
   * Resolves one request: the whole middleware, framework-neutral.
   * `req`/`res` are Node's; `appReq` is the framework's request (the one
   * callbacks receive and `sessionbridge` is set on); `target` the request
   * target as received. Never throws. Returns `{ result, redirect }`:
   * `redirect` is the clean URL to answer 303 with, or null.
   */
  async handle(req, res, { appReq = req, target } = {}) {
    const state = attach(req, res, this, appReq, target);
    appReq.sessionbridge = null;
    try {
      const path = String(target ?? req.url ?? '/').replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '');
      if (await this._skip(appReq, path.split('?')[0])) return { result: null, redirect: null };
      const request = {
        context: await this._withConsent(state.context(), appReq),
        ...userFields(this.options.user ? await this.options.user(appReq) : null),
      };
      if (this.options.gaCookie !== null) request.ga_cookie = Boolean(this.options.gaCookie);
      const r = await this.client.call('ResolveSession', request, { deadlineMs: this.options.deadlineMs });
      const result = resultOf(r);
      queueCookies(state, r.cookies);
      appReq.sessionbridge = result;
      const m = (req.method || 'GET').toUpperCase();
      const redirect = result.cleanUrl && this.options.redirectCleanUrl && (m === 'GET' || m === 'HEAD');
      return { result, redirect: redirect ? result.cleanUrl : null };
    } catch (e) {
      this._failed('ResolveSession', e, appReq);
      return { result: null, redirect: null };
    }
  }

  async _withConsent(context, appReq) {
    if (this.options.consent) {
      const c = consentMessage(await this.options.consent(appReq));
      if (c) context.consent = c;
    }
    return context;
  }

  /** The request's context for a second call in the same request: its
   * Cookie header as the browser will send it next (the cookies already
   * queued on the response in, the ones they delete out; one value per
   * name, the later), and its URL without a hand-off token already
   * redeemed (the clean URL). */
  _contextForFollowUp(state) {
    const context = { ...state.context() };
    const updates = new Map();
    for (const c of state.queue.values()) {
      const deletes = c.max_age_seconds !== null && c.max_age_seconds !== undefined && Number(c.max_age_seconds) <= 0;
      updates.delete(c.name); // keep the order of the later one
      updates.set(c.name, deletes ? null : c.value);
    }
    if (updates.size) {
      const kept = context.cookie_header
        .split(';')
        .map((p) => p.trim())
        .filter((p) => p && !updates.has(p.split('=')[0].trim()));
      const added = [...updates].filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`);
      context.cookie_header = [...kept, ...added].join('; ');
    }
    const result = state.appReq && state.appReq.sessionbridge;
    if (result && result.cleanUrl) context.url = result.cleanUrl;
    return context;
  }

  _state(req) {
    const raw = rawOf(req);
    const state = stateOf(raw);
    if (state) return state;
    // A request the middleware did not see: context, but no response to
    // queue cookies on (Express's req.res is used when there is one).
    return attach(raw, raw.res || null, this, req, undefined);
  }

  /**
   * Records a hand-off to `destinationUrl` and returns where to send the
   * visitor: the decorated URL, or the plain destination when the sidecar
   * failed (fail-open). The sidecar's cookies are queued on the response.
   */
  async handoff(req, destinationUrl, options = {}) {
    const state = this._state(req);
    try {
      const request = {
        context: await this._withConsent(this._contextForFollowUp(state), req),
        destination_url: String(destinationUrl),
        extra_audience: options.extraAudience || [],
        ttl_seconds: options.ttlSeconds || 0,
        max_uses: options.maxUses || 0,
        passive_ttl_seconds: options.passiveTtlSeconds || 0,
        bind_user_agent: Boolean(options.bindUserAgent),
        ga_linker_timezone_offset: options.gaLinkerTimezoneOffset ?? null,
        ga_linker_client_unix_millis: options.gaLinkerClientUnixMillis ?? null,
        ...userFields({ userId: options.userId, email: options.email }),
      };
      const r = await this.client.call('RecordHandoff', request, { deadlineMs: options.deadlineMs ?? this.options.deadlineMs });
      queueCookies(state, r.cookies);
      const id = identityOf(r.identity) || {};
      return {
        url: r.decorated_url || String(destinationUrl),
        token: r.token,
        expiresAtUnixSeconds: r.expires_at_unix_seconds,
        passiveExpiresAtUnixSeconds: r.passive_expires_at_unix_seconds,
        clientId: id.clientId ?? '',
        sessionId: id.sessionId ?? 0,
        sessionNumber: id.sessionNumber ?? 0,
        userId: id.userId ?? '',
        method: methodName(r.method),
        confidence: Number(r.confidence),
        newSession: Boolean(r.new_session),
        newClient: Boolean(r.new_client),
        rejected: rejectedOf(r.rejected),
        cookies: cookieHeaders(r.cookies),
        response: r,
        error: null,
      };
    } catch (e) {
      this._failed('RecordHandoff', e, req, '; sending the visitor on without a token');
      return { url: String(destinationUrl), token: '', response: null, error: e };
    }
  }

  /**
   * The identity a hand-off token names, passively (nothing written, no
   * use spent): the result, or null when the token names no one
   * (NOT_FOUND). Throws on any other error, so a webhook answers 5xx and
   * is retried.
   */
  async webhookIdentity(req, token, options = {}) {
    const state = this._state(req);
    const request = { context: { ...state.context() }, handoff_token: String(token || ''), passive: true };
    try {
      const r = await this.client.call('ResolveSession', request, { deadlineMs: options.deadlineMs ?? this.options.deadlineMs });
      return resultOf(r);
    } catch (e) {
      if (e && e.code === status.NOT_FOUND) return null;
      throw e;
    }
  }

  /**
   * Resolves the request again with the logged-in user, replaces its
   * result and queues the cookies. Returns the new result, or null when the
   * sidecar failed (the request keeps its previous result).
   */
  async linkLogin(req, user, options = {}) {
    const state = this._state(req);
    // A call without a user is the app's own bug: it throws, as in Python.
    const fields = userFields(user);
    if (!fields.user_id && !fields.email) throw new TypeError('sessionbridge: linkLogin needs a userId or an email');
    try {
      const request = {
        context: await this._withConsent(this._contextForFollowUp(state), req),
        ...fields,
      };
      if (this.options.gaCookie !== null) request.ga_cookie = Boolean(this.options.gaCookie);
      const r = await this.client.call('ResolveSession', request, { deadlineMs: options.deadlineMs ?? this.options.deadlineMs });
      const result = resultOf(r);
      queueCookies(state, r.cookies);
      for (const holder of new Set([state.appReq, req])) holder.sessionbridge = result;
      return result;
    } catch (e) {
      this._failed('ResolveSession (login)', e, req, '; the login is not linked');
      return null;
    }
  }

  /**
   * Erases the visitor the request's own cookie names and queues the
   * cookie deletions. Throws on errors; null when there was no own cookie.
   */
  async forgetVisitor(req, options = {}) {
    const state = this._state(req);
    const r = await this.client.forgetVisitor(this._contextForFollowUp(state), options);
    if (r) {
      queueCookies(state, r.response.cookies);
      // The identity is gone: the request has none any more.
      for (const holder of new Set([state.appReq, req])) holder.sessionbridge = null;
    }
    return r;
  }

  /** Closes the channel (when no other instance shares it). */
  close() {
    this.client.close();
  }
}

/** The instance that served `req`, for the module-level helpers. */
function instanceOf(req) {
  const state = stateOf(rawOf(req));
  if (!state) {
    throw new Error(
      'sessionbridge: no sessionbridge middleware saw this request; install it on the app, ' +
        'or call the helper on the instance (sessionbridge.create(options).handoff(...))',
    );
  }
  return state.sb;
}

/** The result of a request, or null (skipped, failed, no middleware). */
function current(req) {
  const state = stateOf(rawOf(req));
  if (!state) return req && req.sessionbridge ? req.sessionbridge : null;
  return state.appReq.sessionbridge ?? null;
}

module.exports = { SessionBridge, instanceOf, current, rawOf };
