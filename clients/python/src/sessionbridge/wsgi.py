"""The WSGI middleware: Flask, Django's WSGI application, or any WSGI app."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Tuple

from . import _channels
from ._core import DEFAULT_DEADLINE_MS, Exchange, IncomingRequest, OnError, Settings, SkipValue
from .proxies import TrustedProxiesSpec

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class WSGIMiddleware:
    """Calls ResolveSession before each request reaches the app, puts the
    result in `environ["sessionbridge"]`, and appends the sidecar's
    Set-Cookie headers to the app's response (through `start_response`).

    Flask::

        app.wsgi_app = sessionbridge.WSGIMiddleware(app.wsgi_app)

    Django (wsgi.py)::

        application = sessionbridge.WSGIMiddleware(get_wsgi_application())

    The result: `sessionbridge.current(request)`; None when the sidecar
    failed or the request was skipped.
    """

    def __init__(
        self,
        app: WSGIApplication,
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

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        exchange: Optional[Exchange] = None
        try:
            incoming = IncomingRequest.from_environ(environ)
            exchange = Exchange(self.settings, incoming, asgi=False)
            if not self.settings.skips(incoming):
                exchange.resolve()
        except Exception:  # a bug of ours, or a skip predicate that raised
            self.settings.log.exception("sessionbridge: middleware error; serving without identity")
        if exchange is None:
            return self.app(environ, start_response)

        if exchange.should_redirect():
            assert exchange.result is not None
            headers: List[Tuple[str, str]] = [
                ("Location", exchange.result.clean_url),
                ("Cache-Control", "no-store"),
                ("Content-Length", "0"),
            ]
            headers += [("Set-Cookie", h) for h in exchange.set_cookie_headers()]
            start_response("303 See Other", headers)
            return [b""]

        def start_with_cookies(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            # Called again with exc_info when the app replaces its response
            # by an error page: that one gets the cookies too.
            extra = [("Set-Cookie", h) for h in exchange.set_cookie_headers()]
            return start_response(status, list(headers) + extra, exc_info)

        return self.app(environ, start_with_cookies)
