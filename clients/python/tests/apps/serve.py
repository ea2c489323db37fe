"""Serves one of the test apps over HTTPS on a real port, against a given
sidecar: the tests start each app this way, and so can any other test (a
cross-language hand-off, say) that needs a Python backend.

    SB_APP=flask SB_SIDECAR=127.0.0.1:50051 SB_PORT=8443 \\
    SB_TLS_CERT=site.pem SB_TLS_KEY=site.key python clients/python/tests/apps/serve.py

Environment:
  SB_APP                fastapi | flask | django-asgi | django-wsgi, or
                        file:PATH, a Python file defining `app` (a Flask
                        app is served as WSGI, anything else as ASGI)
  SB_SIDECAR            the sidecar's address (host:port)
  SB_PORT               the port to listen on, on 127.0.0.1 (default 0: any)
  SB_TLS_CERT, SB_TLS_KEY  PEM certificate (chain) and key to serve with
  SB_TRUSTED_PROXIES    optional: "127.0.0.1,10.0.0.0/8" or a hop count
  SB_DEADLINE_MS        optional: the middleware's deadline (default 50)
  SB_REDIRECT_CLEAN_URL "0": leave clean URLs to the app
  SB_TOKEN              optional: the sidecar's bearer token
  SB_GA_COOKIE          optional: "1" / "0", the ga_cookie option
  SB_CALLBACKS          "1": the user and consent callbacks read the
                        X-Test-User, X-Test-Email and X-Test-Consent headers

Prints `listening on https://127.0.0.1:PORT` once the port accepts
connections. ASGI apps run under uvicorn, WSGI apps under werkzeug's
threaded server. Every app answers the same routes:

  GET|POST /        JSON {"app", "identity" (or null), "context"}; sets its own cookie
  GET /stream       a streamed text body, ending "client_id=..."
  GET /go?to=URL[&max_uses=N][&extra=HOST]   hand-off, 303 to the decorated URL
  GET /handoff?to=URL[...]                    hand-off, JSON {"url", "token", "ok"}
  POST /webhook     JSON {"token"}: webhook_identity, 200 or 404 {"identity"}
  GET /login?user=ID[&email=E]                link_login, JSON {"before", "after", "current"}
  GET /forget-me    Client.forget_visitor, JSON {"found", "identities_erased"} (null: no own cookie)
  GET /errors       the on_error calls so far (skipped path)
  GET /static/info  like /, on a skipped path
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
from typing import Any, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load(kind: str) -> Tuple[str, Any]:
    """("asgi" | "wsgi", the application)."""
    if kind == "fastapi":
        import fastapi_app

        return "asgi", fastapi_app.make_app()
    if kind == "flask":
        import flask_app

        return "wsgi", flask_app.make_app()
    if kind == "django-asgi":
        import django_app

        return "asgi", django_app.make_asgi()
    if kind == "django-wsgi":
        import django_app

        return "wsgi", django_app.make_wsgi()
    if kind.startswith("file:"):
        spec = importlib.util.spec_from_file_location("sb_served_app", kind[len("file:") :])
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        app = module.app
        return ("wsgi" if hasattr(app, "wsgi_app") else "asgi"), app
    raise SystemExit(f"SB_APP: unknown app {kind!r}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    interface, app = load(os.environ["SB_APP"])
    cert, key = os.environ["SB_TLS_CERT"], os.environ["SB_TLS_KEY"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ.get("SB_PORT") or 0)))
    sock.listen(128)
    port = sock.getsockname()[1]
    if interface == "asgi":
        import uvicorn

        config = uvicorn.Config(
            app,
            ssl_certfile=cert,
            ssl_keyfile=key,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default and
            # rewrites the scope's client address: off, so that the peer is
            # the peer and the package's trusted_proxies rules are tested.
            proxy_headers=False,
        )
        server = uvicorn.Server(config)
        print(f"listening on https://127.0.0.1:{port}", flush=True)
        server.run(sockets=[sock])
    else:
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        httpd = make_server("127.0.0.1", port, app, threaded=True, ssl_context=(cert, key), fd=sock.fileno())
        print(f"listening on https://127.0.0.1:{port}", flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    main()
