'use strict';

// The Fastify plugin: `app.register(sessionbridge.fastify, options)`.
// Marked as fastify-plugin marks its plugins (skip-override), so its hook
// applies to the whole app, not only to the context it is registered in.
// The result is `request.sessionbridge`.

const { SessionBridge } = require('./core');

function sessionbridgeFastify(fastify, options, done) {
  const own = !(options instanceof SessionBridge || options.instance instanceof SessionBridge);
  const sb = own ? new SessionBridge(options) : options.instance || options;
  if (!fastify.hasRequestDecorator('sessionbridge')) fastify.decorateRequest('sessionbridge', null);
  fastify.addHook('onRequest', async (request, reply) => {
    const { redirect } = await sb.handle(request.raw, reply.raw, { appReq: request, target: request.raw.url });
    if (redirect) {
      reply.code(303).header('location', redirect).header('cache-control', 'no-store').send();
      return reply;
    }
    return undefined;
  });
  if (own) fastify.addHook('onClose', (_instance, next) => {
    sb.close();
    next();
  });
  done();
}

sessionbridgeFastify[Symbol.for('skip-override')] = true;
sessionbridgeFastify[Symbol.for('fastify.display-name')] = 'sessionbridge';
sessionbridgeFastify[Symbol.for('plugin-meta')] = { name: 'sessionbridge', fastify: '4.x || 5.x' };

module.exports = { fastify: sessionbridgeFastify };
