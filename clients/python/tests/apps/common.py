"""What the test apps share: the middleware's options from the environment,
the on_error record, and the JSON a page answers.

Every app answers the same routes (see serve.py); only the framework
differs.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional

import sessionbridge
from sessionbridge._core import describe

_errors: List[Dict[str, str]] = []
_errors_lock = threading.Lock()

SKIP = ["/static/", "/webhook", "/errors"]
"""Paths that make no call: static files, the payment provider's webhook
(not a visitor), and the test's window on on_error."""


def on_error(error: BaseException, request: sessionbridge.IncomingRequest) -> None:
    with _errors_lock:
        _errors.append({"error": describe(error), "path": request.path})


def errors() -> List[Dict[str, str]]:
    with _errors_lock:
        return list(_errors)


def sidecar() -> str:
    return os.environ["SB_SIDECAR"]


def user_from_header(request: sessionbridge.IncomingRequest) -> Optional[sessionbridge.User]:
    """The test's stand-in for an app's auth: X-Test-User / X-Test-Email."""
    user_id, email = request.header("x-test-user"), request.header("x-test-email")
    return sessionbridge.User(user_id=user_id, email=email) if user_id or email else None


def consent_from_header(request: sessionbridge.IncomingRequest) -> Optional[str]:
    """The test's stand-in for a consent banner: X-Test-Consent."""
    return request.header("x-test-consent") or None


async def user_from_header_async(request: sessionbridge.IncomingRequest) -> Optional[sessionbridge.User]:
    return user_from_header(request)


async def consent_from_header_async(request: sessionbridge.IncomingRequest) -> Optional[str]:
    return consent_from_header(request)


def options(asgi: bool = False) -> Dict[str, Any]:
    """The middleware's keyword arguments, from SB_* variables."""
    kwargs: Dict[str, Any] = {"target": sidecar(), "on_error": on_error, "skip": SKIP}
    if os.environ.get("SB_CALLBACKS") == "1":
        # Async callbacks under ASGI, to check that they are awaited.
        kwargs["user"] = user_from_header_async if asgi else user_from_header
        kwargs["consent"] = consent_from_header_async if asgi else consent_from_header
    if os.environ.get("SB_TRUSTED_PROXIES"):
        kwargs["trusted_proxies"] = os.environ["SB_TRUSTED_PROXIES"]
    if os.environ.get("SB_DEADLINE_MS"):
        kwargs["deadline_ms"] = float(os.environ["SB_DEADLINE_MS"])
    if os.environ.get("SB_REDIRECT_CLEAN_URL") == "0":
        kwargs["redirect_clean_url"] = False
    if os.environ.get("SB_TOKEN"):
        kwargs["token"] = os.environ["SB_TOKEN"]
    if os.environ.get("SB_GA_COOKIE"):
        kwargs["ga_cookie"] = os.environ["SB_GA_COOKIE"] == "1"
    return kwargs


def client() -> sessionbridge.Client:
    return sessionbridge.Client(sidecar(), token=os.environ.get("SB_TOKEN") or None)


def async_client() -> sessionbridge.AsyncClient:
    return sessionbridge.AsyncClient(sidecar(), token=os.environ.get("SB_TOKEN") or None)


def identity(result: Optional[sessionbridge.Result]) -> Optional[Dict[str, Any]]:
    return result.as_dict() if result is not None else None


def page(app: str, request: Any) -> Dict[str, Any]:
    """What `/` answers: the identity and the context that was sent."""
    result = sessionbridge.current(request)
    try:
        context = sessionbridge.request_context(request)
        sent: Optional[Dict[str, str]] = {
            "host": context.host,
            "url": context.url,
            "scheme": context.scheme,
            "client_ip": context.client_ip,
        }
    except LookupError:
        sent = None
    return {"app": app, "identity": identity(result), "context": sent}


def handoff_options(query: Any) -> Dict[str, Any]:
    """handoff() options from a query string mapping."""
    kwargs: Dict[str, Any] = {}
    if query.get("max_uses"):
        kwargs["max_uses"] = int(query.get("max_uses"))
    if query.get("extra"):
        kwargs["extra_audience"] = [query.get("extra")]
    return kwargs


def handoff_answer(h: sessionbridge.Handoff, request: Any) -> Dict[str, Any]:
    """The hand-off, the identity it carries, and the request's own."""
    current = sessionbridge.current(request)
    return {
        "url": h.url,
        "token": h.token,
        "ok": h.ok,
        "client_id": h.response.identity.client_id if h.response else None,
        "request_client_id": current.client_id if current else None,
    }


APP_COOKIE = ("app_cookie", "set-by-the-app")
"""A cookie the app sets itself, to check that ours are added beside it."""

STREAM_CHUNKS = 5
