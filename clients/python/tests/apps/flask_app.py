"""The Flask test app, behind the WSGI middleware."""

from __future__ import annotations

from typing import Any, Iterator

from flask import Flask, Response, jsonify, redirect, request

import sessionbridge
import common


def make_app() -> Any:
    app = Flask(__name__)
    app.wsgi_app = sessionbridge.WSGIMiddleware(app.wsgi_app, **common.options())  # type: ignore[method-assign]

    @app.route("/", methods=["GET", "POST"])
    def index() -> Any:
        assert request.environ["sessionbridge"] is sessionbridge.current(request)
        response = jsonify(common.page("flask", request))
        response.set_cookie(*common.APP_COOKIE, secure=True, httponly=True)
        return response

    @app.get("/static/info")
    def static_info() -> Any:
        return jsonify(common.page("flask", request))

    @app.get("/stream")
    def stream() -> Any:
        result = sessionbridge.current(request)

        def body() -> Iterator[str]:
            for i in range(common.STREAM_CHUNKS):
                yield f"chunk {i}\n"
            yield f"client_id={result.client_id if result else ''}\n"

        return Response(body(), mimetype="text/plain")

    @app.get("/go")
    def go() -> Any:
        h = sessionbridge.handoff(request, request.args["to"], **common.handoff_options(request.args))
        return redirect(h.url, 303)

    @app.get("/handoff")
    def handoff() -> Any:
        h = sessionbridge.handoff(request, request.args["to"], **common.handoff_options(request.args))
        return jsonify(common.handoff_answer(h, request))

    @app.post("/webhook")
    def webhook() -> Any:
        result = sessionbridge.webhook_identity(request, request.get_json()["token"])
        return jsonify({"identity": common.identity(result)}), 200 if result else 404

    @app.get("/login")
    def login() -> Any:
        before = sessionbridge.current(request)
        after = sessionbridge.link_login(
            request, request.args.get("user", ""), email=request.args.get("email", "")
        )
        return jsonify(
            {
                "before": common.identity(before),
                "after": common.identity(after),
                "current": common.identity(sessionbridge.current(request)),
            }
        )

    @app.get("/forget-me")
    def forget_me() -> Any:
        r = common.client().forget_visitor(request)
        return jsonify(r and {"found": r.found, "identities_erased": r.identities_erased})

    @app.get("/errors")
    def errors() -> Any:
        return jsonify(common.errors())

    return app
