'use strict';

// The promise client: one long-lived gRPC channel per process and target,
// shared by every Client made for it, a bearer token sent with each call,
// and a deadline on every call.

const crypto = require('node:crypto');
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const { load } = require('./proto');
const { identityOf, cookieHeaders } = require('./result');

const DEFAULT_TARGET = '127.0.0.1:50051';

// Keepalive as the spec asks (every 30 s, also without calls), and a short
// reconnect backoff: the sidecar is on loopback, so after it restarts the
// next pages should find it within seconds, not after gRPC's two minutes.
const CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2_000,
};

/** Channels by target and credentials: { client, users }. */
const channels = new Map();

function pem(value, what) {
  if (value === undefined || value === null) return null;
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') {
    // PEM text, or a path to a PEM file.
    return Buffer.from(value.includes('-----BEGIN') ? value : fs.readFileSync(value));
  }
  throw new TypeError(`sessionbridge: tls.${what} must be a Buffer, PEM text or a file path`);
}

function credentialsOf(tls) {
  if (!tls) return { creds: grpc.credentials.createInsecure(), key: 'plaintext', options: {} };
  const ca = pem(tls.ca, 'ca');
  const cert = pem(tls.cert, 'cert');
  const key = pem(tls.key, 'key');
  if (!cert !== !key) throw new TypeError('sessionbridge: tls.cert and tls.key go together');
  const hash = crypto.createHash('sha256');
  for (const b of [ca, cert, key]) hash.update(b || '').update('\0');
  const options = {};
  if (tls.servername) options['grpc.ssl_target_name_override'] = tls.servername;
  return {
    creds: grpc.credentials.createSsl(ca, key, cert),
    key: `tls:${hash.digest('hex')}:${tls.servername || ''}`,
    options,
  };
}

function acquire(target, tls, extra) {
  const { creds, key, options } = credentialsOf(tls);
  const all = { ...CHANNEL_OPTIONS, ...options, ...extra };
  const id = `${target}|${key}|${JSON.stringify(all)}`;
  let entry = channels.get(id);
  if (!entry) {
    const { Client: Stub } = load();
    entry = { id, stub: new Stub(target, creds, all), users: 0 };
    channels.set(id, entry);
  }
  entry.users += 1;
  return entry;
}

function release(entry) {
  entry.users -= 1;
  if (entry.users <= 0 && channels.get(entry.id) === entry) {
    channels.delete(entry.id);
    entry.stub.close();
  }
}

/** `{ userId }` or `{ email }` as the proto's oneof. */
function userOf(user, what) {
  const u = typeof user === 'string' ? { userId: user } : user || {};
  if (u.userId && u.email) throw new TypeError(`sessionbridge: ${what} takes a userId or an email, not both`);
  if (u.userId) return { user_id: String(u.userId) };
  if (u.email) return { email: String(u.email) };
  throw new TypeError(`sessionbridge: ${what} needs a userId or an email`);
}

class Client {
  /**
   * @param {object} [options]
   * @param {string} [options.target] host:port of the sidecar (default 127.0.0.1:50051)
   * @param {string} [options.token] bearer token (the sidecar's --auth-token-file)
   * @param {{ca?, cert?, key?, servername?}} [options.tls] TLS to the sidecar; default plaintext
   * @param {number} [options.deadlineMs] default deadline of calls made through this client (5000)
   * @param {object} [options.channelOptions] more gRPC channel options
   */
  constructor(options = {}) {
    this.target = options.target || DEFAULT_TARGET;
    this.token = options.token || null;
    this.deadlineMs = options.deadlineMs ?? 5000;
    this._channel = acquire(this.target, options.tls, options.channelOptions || {});
    this._closed = false;
    const raw = {};
    for (const name of load().methods) raw[name] = (request, opts) => this.call(name, request, opts);
    /** Every RPC by its proto name, taking and giving the proto's messages. */
    this.raw = raw;
  }

  /**
   * One call: `request` and the answer are the proto's messages with the
   * proto's field names; wrapper fields are plain values.
   */
  call(method, request, { deadlineMs, metadata } = {}) {
    return new Promise((resolve, reject) => {
      if (this._closed) {
        reject(new Error('sessionbridge: the client is closed'));
        return;
      }
      const stub = this._channel.stub;
      if (typeof stub[method] !== 'function') {
        reject(new TypeError(`sessionbridge: no RPC named ${method}`));
        return;
      }
      const md = metadata instanceof grpc.Metadata ? metadata.clone() : new grpc.Metadata();
      if (this.token) md.set('authorization', `Bearer ${this.token}`);
      const deadline = Date.now() + (deadlineMs ?? this.deadlineMs);
      stub[method](request, md, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
    });
  }

  /** The identities linked to a user; `null` when none is (NOT_FOUND). */
  async lookupByUser(user, { limit = 0, deadlineMs } = {}) {
    try {
      const r = await this.call('LookupByUser', { ...userOf(user, 'lookupByUser'), limit }, { deadlineMs });
      return { identity: identityOf(r.identity), recent: r.recent.map(identityOf), response: r };
    } catch (e) {
      if (e && e.code === grpc.status.NOT_FOUND) return null;
      throw e;
    }
  }

  /** Erases every record of a user (on this sidecar's store). */
  async forgetUser(user, { deadlineMs } = {}) {
    const r = await this.call('ForgetUser', userOf(user, 'forgetUser'), { deadlineMs });
    return { found: r.found, identitiesErased: r.identities_erased, response: r };
  }

  /**
   * Erases the visitor a request's own cookie names. `context` is a
   * RequestContext message (see `contextOf`). Returns the cookies to send;
   * `null` when the request carried no valid own cookie (NOT_FOUND).
   */
  async forgetVisitor(context, { deadlineMs } = {}) {
    try {
      const r = await this.call('ForgetVisitor', { context }, { deadlineMs });
      return {
        found: r.found,
        identitiesErased: r.identities_erased,
        cookies: cookieHeaders(r.cookies),
        response: r,
      };
    } catch (e) {
      if (e && e.code === grpc.status.NOT_FOUND) return null;
      throw e;
    }
  }

  /** Gives the channel back; it closes when no client uses it. */
  close() {
    if (this._closed) return;
    this._closed = true;
    release(this._channel);
  }
}

module.exports = { Client, DEFAULT_TARGET, status: grpc.status };
