"""The ASGI middleware: Starlette, FastAPI, Django's ASGI application, or
any ASGI app."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from . import _channels
from ._core import DEFAULT_DEADLINE_MS, Exchange, IncomingRequest, OnError, Settings, SkipValue
from .proxies import TrustedProxiesSpec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGIMiddleware:
    """Calls ResolveSession (on grpc.aio) before each HTTP request reaches
    the app, puts the result on the request, and appends the sidecar's
    Set-Cookie headers to whatever response the app starts.

    FastAPI / Starlette::

        app.add_middleware(sessionbridge.ASGIMiddleware, target="127.0.0.1:50051")

    Django (asgi.py)::

        application = sessionbridge.ASGIMiddleware(get_asgi_application())

    The result: `request.state.sessionbridge` (Starlette), or
    `sessionbridge.current(request)` anywhere; None when the sidecar failed
    or the request was skipped.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        target: str = _channels.DEFAULT_TARGET,
        token: Optional[str] = None,
        tls: Optional[_channels.TLS] = None,
        deadline_ms: float = DEFAULT_DEADLINE_MS,
        trusted_proxies: TrustedProxiesSpec = None,
        skip: SkipValue = None,
        user: Optional[Callable[[IncomingRequest], Any]] = None,
        consent: Optional[Callable[[IncomingRequest], Any]] = None,
        on_error: Optional[OnError] = None,
        redirect_clean_url: bool = True,
        ga_cookie: Optional[bool] = None,
        logger: Optional[logging.Logger] = None,
    ) -> None:
        self.app = app
        self.settings = Settings(
            target=target,
            token=token,
            tls=tls,
            deadline_ms=deadline_ms,
            trusted_proxies=trusted_proxies,
            skip=skip,
            user=user,
            consent=consent,
            on_error=on_error,
            redirect_clean_url=redirect_clean_url,
            ga_cookie=ga_cookie,
            logger=logger,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        exchange: Optional[Exchange] = None
        try:
            incoming = IncomingRequest.from_scope(scope)
            exchange = Exchange(self.settings, incoming, asgi=True)
            if not self.settings.skips(incoming):
                await exchange.resolve_async()
        except Exception:  # a bug of ours, or a skip predicate that raised
            self.settings.log.exception("sessionbridge: middleware error; serving without identity")
        if exchange is None:
            await self.app(scope, receive, send)
            return

        if exchange.should_redirect():
            assert exchange.result is not None
            headers = [
                (b"location", exchange.result.clean_url.encode("latin-1", "replace")),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ]
            headers += [(b"set-cookie", h.encode("latin-1", "replace")) for h in exchange.set_cookie_headers()]
            await send({"type": "http.response.start", "status": 303, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cookies(message: Message) -> None:
            if message.get("type") == "http.response.start":
                extra = exchange.set_cookie_headers()
                if extra:
                    message = dict(message)
                    message["headers"] = list(message.get("headers") or ()) + [
                        (b"set-cookie", h.encode("latin-1", "replace")) for h in extra
                    ]
            await send(message)

        await self.app(scope, receive, send_with_cookies)
