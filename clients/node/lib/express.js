'use strict';

// Express / Connect middleware: `app.use(sessionbridge.express(options))`.
// The result is `req.sessionbridge`.

const { SessionBridge } = require('./core');

function answerCleanUrl(res, url) {
  res.statusCode = 303;
  res.setHeader('Location', url);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', '0');
  res.end();
}

function express(options = {}) {
  const sb = options instanceof SessionBridge ? options : new SessionBridge(options);
  function sessionbridge(req, res, next) {
    sb.handle(req, res, { appReq: req, target: req.originalUrl || req.url }).then(
      ({ redirect }) => (redirect ? answerCleanUrl(res, redirect) : next()),
      () => next(),
    );
  }
  sessionbridge.instance = sb;
  return sessionbridge;
}

module.exports = { express, answerCleanUrl };
