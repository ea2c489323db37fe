"""The FastAPI test app: async endpoints, so the async helpers and grpc.aio."""

from __future__ import annotations

from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

import sessionbridge
import common


def make_app() -> Any:
    app = FastAPI()
    app.add_middleware(sessionbridge.ASGIMiddleware, **common.options(asgi=True))

    @app.api_route("/", methods=["GET", "POST"])
    async def index(request: Request) -> JSONResponse:
        # The Starlette way to the result, next to current().
        assert request.state.sessionbridge is sessionbridge.current(request)
        response = JSONResponse(common.page("fastapi", request))
        response.set_cookie(*common.APP_COOKIE, secure=True, httponly=True)
        return response

    @app.get("/static/info")
    async def static_info(request: Request) -> JSONResponse:
        return JSONResponse(common.page("fastapi", request))

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        result = sessionbridge.current(request)

        async def body() -> AsyncIterator[bytes]:
            for i in range(common.STREAM_CHUNKS):
                yield f"chunk {i}\n".encode()
            yield f"client_id={result.client_id if result else ''}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/go")
    async def go(request: Request) -> RedirectResponse:
        q = request.query_params
        h = await sessionbridge.handoff_async(request, q["to"], **common.handoff_options(q))
        return RedirectResponse(h.url, status_code=303)

    @app.get("/handoff")
    async def handoff(request: Request) -> JSONResponse:
        q = request.query_params
        h = await sessionbridge.handoff_async(request, q["to"], **common.handoff_options(q))
        return JSONResponse(common.handoff_answer(h, request))

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        token = (await request.json())["token"]
        result = await sessionbridge.webhook_identity_async(request, token)
        return JSONResponse({"identity": common.identity(result)}, status_code=200 if result else 404)

    @app.get("/login")
    async def login(request: Request) -> JSONResponse:
        before = sessionbridge.current(request)
        q = request.query_params
        after = await sessionbridge.link_login_async(request, q.get("user", ""), email=q.get("email", ""))
        return JSONResponse(
            {
                "before": common.identity(before),
                "after": common.identity(after),
                "current": common.identity(request.state.sessionbridge),
            }
        )

    @app.get("/forget-me")
    async def forget_me(request: Request) -> JSONResponse:
        r = await common.async_client().forget_visitor(request)
        return JSONResponse(r and {"found": r.found, "identities_erased": r.identities_erased})

    @app.get("/errors")
    async def errors() -> JSONResponse:
        return JSONResponse(common.errors())

    return app
