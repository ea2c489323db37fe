"""sessionbridge: middleware for the sessionbridge sidecar.

One middleware gives every request the visitor's identity, kept across the
web domains whose sidecars share a key file::

    app.add_middleware(sessionbridge.ASGIMiddleware)        # FastAPI / Starlette
    app.wsgi_app = sessionbridge.WSGIMiddleware(app.wsgi_app)  # Flask

    result = sessionbridge.current(request)  # None when the sidecar failed
    result.client_id, result.session_id, result.method

The specification: clients/README.md in the sessionbridge repository.
"""

from ._channels import DEFAULT_TARGET, TLS
from ._core import DEFAULT_DEADLINE_MS, IncomingRequest, User
from .asgi import ASGIMiddleware
from .client import AsyncClient, Client
from .helpers import (
    current,
    handoff,
    handoff_async,
    link_login,
    link_login_async,
    request_context,
    webhook_identity,
    webhook_identity_async,
)
from .proxies import TrustedProxies
from .result import Consent, Handoff, Rejection, Result
from .wsgi import WSGIMiddleware

__version__ = "0.1.0"

__all__ = [
    "ASGIMiddleware",
    "AsyncClient",
    "Client",
    "Consent",
    "DEFAULT_DEADLINE_MS",
    "DEFAULT_TARGET",
    "Handoff",
    "IncomingRequest",
    "Rejection",
    "Result",
    "TLS",
    "TrustedProxies",
    "User",
    "WSGIMiddleware",
    "current",
    "handoff",
    "handoff_async",
    "link_login",
    "link_login_async",
    "request_context",
    "webhook_identity",
    "webhook_identity_async",
]
