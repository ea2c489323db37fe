"""Helpers for a request that went through the middleware (clients/README.md,
section 6). They fail open like the middleware, except `webhook_identity`.

Each has an `_async` twin for async views (it uses grpc.aio on the running
event loop); the plain ones block, which is what sync views (Flask, Django,
FastAPI `def` endpoints) want.
"""

from __future__ import annotations

from typing import Any, MutableMapping, Optional, Sequence

from ._core import EXCHANGE_KEY, RESULT_KEY, Exchange, is_not_found
from .result import Handoff, Result
from .v1 import sessionbridge_pb2 as pb


def _native(request: Any) -> Optional[MutableMapping[str, Any]]:
    """The ASGI scope or WSGI environ of a framework's request object (or
    the scope / environ itself)."""
    if isinstance(request, MutableMapping):
        return request
    for attribute in ("scope", "environ"):
        try:
            value = getattr(request, attribute, None)
        except RuntimeError:  # Flask's request proxy outside a request
            return None
        if isinstance(value, MutableMapping):
            return value
    return None


def exchange_of(request: Any) -> Exchange:
    native = _native(request)
    exchange = native.get(EXCHANGE_KEY) if native is not None else None
    if not isinstance(exchange, Exchange):
        raise LookupError(
            "sessionbridge: this request did not go through sessionbridge's ASGI or WSGI middleware"
        )
    return exchange


def current(request: Any) -> Optional[Result]:
    """The visitor's identity for this request: the middleware's result, or
    None (the sidecar failed, the request was skipped, or no middleware).

    `request` is any framework's request object (Starlette / FastAPI,
    Django, Flask's `flask.request`, werkzeug), an ASGI scope or a WSGI
    environ."""
    native = _native(request)
    if native is None:
        return None
    exchange = native.get(EXCHANGE_KEY)
    if isinstance(exchange, Exchange):
        return exchange.result
    value = native.get(RESULT_KEY)
    return value if isinstance(value, Result) else None


def request_context(request: Any) -> pb.RequestContext:
    """The RequestContext of this request, for a raw call: with the cookies
    the response already sets, as the browser will send them next."""
    return exchange_of(request).followup_context()


def _handoff_request(
    exchange: Exchange,
    destination_url: str,
    max_uses: int,
    ttl_seconds: int,
    passive_ttl_seconds: int,
    extra_audience: Sequence[str],
    bind_user_agent: bool,
    user_id: str,
    email: str,
    ga_linker_timezone_offset: Optional[int],
    ga_linker_client_unix_millis: Optional[int],
) -> pb.RecordHandoffRequest:
    request = pb.RecordHandoffRequest(
        context=exchange.followup_context(),
        destination_url=destination_url,
        max_uses=max_uses,
        ttl_seconds=ttl_seconds,
        passive_ttl_seconds=passive_ttl_seconds,
        extra_audience=list(extra_audience),
        bind_user_agent=bind_user_agent,
        user_id=user_id,
        email=email,
    )
    if ga_linker_timezone_offset is not None:
        request.ga_linker_timezone_offset.value = ga_linker_timezone_offset
    if ga_linker_client_unix_millis is not None:
        request.ga_linker_client_unix_millis.value = ga_linker_client_unix_millis
    return request


_HANDOFF_OUTCOME = "sending the visitor on without a token"


def handoff(
    request: Any,
    destination_url: str,
    *,
    max_uses: int = 0,
    ttl_seconds: int = 0,
    passive_ttl_seconds: int = 0,
    extra_audience: Sequence[str] = (),
    bind_user_agent: bool = False,
    user_id: str = "",
    email: str = "",
    ga_linker_timezone_offset: Optional[int] = None,
    ga_linker_client_unix_millis: Optional[int] = None,
) -> Handoff:
    """Records a hand-off to `destination_url` (RecordHandoff), queues its
    cookies on the response, and returns where to redirect the visitor:
    `.url` (decorated with the token; the plain destination when the
    sidecar failed) and `.token`. Options as in the proto."""
    exchange = exchange_of(request)
    try:
        message = _handoff_request(
            exchange, destination_url, max_uses, ttl_seconds, passive_ttl_seconds, extra_audience,
            bind_user_agent, user_id, email, ga_linker_timezone_offset, ga_linker_client_unix_millis,
        )
        response = exchange.settings.call("RecordHandoff", message)
    except Exception as error:
        exchange.settings.report("RecordHandoff", error, exchange.incoming, _HANDOFF_OUTCOME)
        return Handoff(url=destination_url, token="", error=error)
    exchange.queue(response.cookies)
    return Handoff(url=response.decorated_url, token=response.token, response=response)


async def handoff_async(
    request: Any,
    destination_url: str,
    *,
    max_uses: int = 0,
    ttl_seconds: int = 0,
    passive_ttl_seconds: int = 0,
    extra_audience: Sequence[str] = (),
    bind_user_agent: bool = False,
    user_id: str = "",
    email: str = "",
    ga_linker_timezone_offset: Optional[int] = None,
    ga_linker_client_unix_millis: Optional[int] = None,
) -> Handoff:
    """`handoff` for async views."""
    exchange = exchange_of(request)
    try:
        message = _handoff_request(
            exchange, destination_url, max_uses, ttl_seconds, passive_ttl_seconds, extra_audience,
            bind_user_agent, user_id, email, ga_linker_timezone_offset, ga_linker_client_unix_millis,
        )
        response = await exchange.settings.call_async("RecordHandoff", message)
    except Exception as error:
        await exchange.settings.report_async("RecordHandoff", error, exchange.incoming, _HANDOFF_OUTCOME)
        return Handoff(url=destination_url, token="", error=error)
    exchange.queue(response.cookies)
    return Handoff(url=response.decorated_url, token=response.token, response=response)


def _webhook_request(exchange: Exchange, token: str) -> pb.ResolveSessionRequest:
    return pb.ResolveSessionRequest(context=exchange.base_context(), handoff_token=token, passive=True)


def _timeout(deadline_ms: Optional[float]) -> Optional[float]:
    return None if deadline_ms is None else deadline_ms / 1000.0


def webhook_identity(request: Any, token: str, *, deadline_ms: Optional[float] = None) -> Optional[Result]:
    """The identity a hand-off token names, for a server-to-server callback
    (a payment webhook): a passive ResolveSession, which writes nothing and
    spends no use, so every delivery of the same webhook gets the same
    answer. None when the token names no one (forged, expired, erased).

    Raises grpc.RpcError on any other failure, so that the webhook handler
    answers 5xx and the sender retries. Mount webhook paths under `skip`:
    a webhook is not a visitor and needs no identity of its own."""
    exchange = exchange_of(request)
    try:
        response = exchange.settings.call(
            "ResolveSession", _webhook_request(exchange, token), _timeout(deadline_ms)
        )
    except Exception as error:
        if is_not_found(error):
            return None
        raise
    return Result.from_response(response)


async def webhook_identity_async(
    request: Any, token: str, *, deadline_ms: Optional[float] = None
) -> Optional[Result]:
    """`webhook_identity` for async views."""
    exchange = exchange_of(request)
    try:
        response = await exchange.settings.call_async(
            "ResolveSession", _webhook_request(exchange, token), _timeout(deadline_ms)
        )
    except Exception as error:
        if is_not_found(error):
            return None
        raise
    return Result.from_response(response)


_LOGIN_OUTCOME = "the login is not linked; the request keeps its identity"


def _login_request(exchange: Exchange, user_id: str, email: str) -> pb.ResolveSessionRequest:
    if not user_id and not email:
        raise ValueError("link_login: give a user_id, an email, or both")
    request = pb.ResolveSessionRequest(context=exchange.followup_context(), user_id=user_id, email=email)
    exchange.settings.ask_ga_cookie(request)
    return request


def link_login(request: Any, user_id: str = "", *, email: str = "") -> Optional[Result]:
    """Links the visitor to the user who just logged in: resolves again with
    the user, replaces the request's result and queues the cookies. Returns
    the new result, or None when the sidecar failed (the request then keeps
    the result it had)."""
    exchange = exchange_of(request)
    message = _login_request(exchange, user_id, email)
    try:
        response = exchange.settings.call("ResolveSession", message)
    except Exception as error:
        exchange.settings.report("ResolveSession", error, exchange.incoming, _LOGIN_OUTCOME)
        return None
    return exchange.accept(response)


async def link_login_async(request: Any, user_id: str = "", *, email: str = "") -> Optional[Result]:
    """`link_login` for async views."""
    exchange = exchange_of(request)
    message = _login_request(exchange, user_id, email)
    try:
        response = await exchange.settings.call_async("ResolveSession", message)
    except Exception as error:
        await exchange.settings.report_async("ResolveSession", error, exchange.incoming, _LOGIN_OUTCOME)
        return None
    return exchange.accept(response)
