// `sessionbridge/fastify`: the Fastify plugin, typed for Fastify, with
// `request.sessionbridge` declared on FastifyRequest. Needs `fastify`
// (its types) in the app, as any Fastify plugin does.

import type { FastifyPluginCallback } from 'fastify';
import type { FastifyPluginOptions, Result } from './index';

declare module 'fastify' {
  interface FastifyRequest {
    /** The sessionbridge result; null when skipped or when the sidecar failed. */
    sessionbridge: Result | null;
  }
}

declare const sessionbridgeFastify: FastifyPluginCallback<FastifyPluginOptions> & {
  default: FastifyPluginCallback<FastifyPluginOptions>;
  sessionbridge: FastifyPluginCallback<FastifyPluginOptions>;
};
export = sessionbridgeFastify;
