'use strict';

// `require('sessionbridge/fastify')`: the Fastify plugin alone, whose types
// (fastify.d.ts) also declare `request.sessionbridge` on FastifyRequest.

module.exports = require('./lib/fastify').fastify;
module.exports.default = module.exports;
module.exports.sessionbridge = module.exports;
