'use strict';

// sessionbridge for Node: the visitor's identity on every request, from the
// sessionbridge sidecar. See README.md and index.d.ts.

const { SessionBridge, instanceOf, current } = require('./lib/core');
const { Client, status } = require('./lib/client');
const { contextOf, parseTrustedProxies, parseForwarded, clientAddress } = require('./lib/context');
const { express } = require('./lib/express');
const { fastify } = require('./lib/fastify');

/** A SessionBridge: the middleware's options, client and helpers. */
function create(options) {
  return new SessionBridge(options);
}

module.exports = {
  create,
  express,
  fastify,
  current,
  /** Records a hand-off; see SessionBridge#handoff. */
  handoff: (req, destinationUrl, options) => instanceOf(req).handoff(req, destinationUrl, options),
  /** The identity a hand-off token names, passively; see SessionBridge#webhookIdentity. */
  webhookIdentity: (req, token, options) => instanceOf(req).webhookIdentity(req, token, options),
  /** Links the logged-in user; see SessionBridge#linkLogin. */
  linkLogin: (req, user, options) => instanceOf(req).linkLogin(req, user, options),
  /** Erases the visitor the request's cookie names; see SessionBridge#forgetVisitor. */
  forgetVisitor: (req, options) => instanceOf(req).forgetVisitor(req, options),
  SessionBridge,
  Client,
  status,
  /** The RequestContext of a Node request, with the trusted-proxy rules. */
  contextOf: (req, { trustedProxies, target } = {}) =>
    contextOf(req.raw && req.raw.headers ? req.raw : req, { trust: parseTrustedProxies(trustedProxies), target }),
  clientAddress: (req, trustedProxies) =>
    clientAddress(parseTrustedProxies(trustedProxies), (req.socket && req.socket.remoteAddress) || '', req),
  parseForwarded,
};
