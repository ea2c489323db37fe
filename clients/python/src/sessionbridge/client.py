"""Clients for the calls outside a page's path: lookups and erasure, and the
raw RPCs. They raise grpc.RpcError on errors (grpc.aio.AioRpcError for
AsyncClient), except NOT_FOUND where it is an answer: a lookup that finds
no one, and forget_visitor without a valid own cookie, answer None."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import _channels
from ._core import Exchange, Settings, is_not_found
from .helpers import exchange_of
from .v1 import sessionbridge_pb2 as pb

DEFAULT_CLIENT_DEADLINE_MS = 5000


def _user(message: Any, user_id: str, email: str) -> Any:
    if bool(user_id) == bool(email):
        raise ValueError("give exactly one of user_id and email")
    if user_id:
        message.user_id = user_id
    else:
        message.email = email
    return message


def _visitor(request: Any) -> Tuple[Optional[Exchange], pb.RequestContext]:
    if isinstance(request, pb.RequestContext):
        return None, request
    exchange = exchange_of(request)
    return exchange, exchange.followup_context()


def _forgotten(exchange: Optional[Exchange], response: pb.ForgetVisitorResponse) -> pb.ForgetVisitorResponse:
    if exchange is not None:
        exchange.queue(response.cookies)
        exchange.result = None
        exchange._publish()
    return response


class Client:
    """Blocking client, on the process's shared channel to `target`."""

    def __init__(
        self,
        target: str = _channels.DEFAULT_TARGET,
        *,
        token: Optional[str] = None,
        tls: Optional[_channels.TLS] = None,
        deadline_ms: float = DEFAULT_CLIENT_DEADLINE_MS,
    ) -> None:
        self._settings = Settings(target=target, token=token, tls=tls, deadline_ms=deadline_ms)

    @property
    def stub(self) -> Any:
        """The generated SessionBridgeServiceStub, for anything else."""
        return _channels.sync_stub(self._settings.endpoint)

    def lookup_by_user(self, user_id: str = "", *, email: str = "", limit: int = 0) -> Optional[pb.LookupByUserResponse]:
        """The identities linked to a user id or an email, newest first;
        None when none is linked."""
        try:
            response: pb.LookupByUserResponse = self._settings.call(
                "LookupByUser", _user(pb.LookupByUserRequest(limit=limit), user_id, email)
            )
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        return response

    def forget_user(self, user_id: str = "", *, email: str = "") -> pb.ForgetUserResponse:
        """Erases every record of a user (see docs/security.md, Erasure)."""
        response: pb.ForgetUserResponse = self._settings.call(
            "ForgetUser", _user(pb.ForgetUserRequest(), user_id, email)
        )
        return response

    def forget_visitor(self, request: Any) -> Optional[pb.ForgetVisitorResponse]:
        """Erases the visitor the request's own cookie names. `request` is a
        request that went through the middleware (the deletion cookies are
        then queued on its response, and its result becomes None) or a
        RequestContext. None when it carries no valid own cookie."""
        exchange, context = _visitor(request)
        try:
            response: pb.ForgetVisitorResponse = self._settings.call(
                "ForgetVisitor", pb.ForgetVisitorRequest(context=context)
            )
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        return _forgotten(exchange, response)

    def resolve_session(self, request: pb.ResolveSessionRequest) -> pb.ResolveSessionResponse:
        response: pb.ResolveSessionResponse = self._settings.call("ResolveSession", request)
        return response

    def record_handoff(self, request: pb.RecordHandoffRequest) -> pb.RecordHandoffResponse:
        response: pb.RecordHandoffResponse = self._settings.call("RecordHandoff", request)
        return response

    def mint_cookie(self, request: pb.MintCookieRequest) -> pb.MintCookieResponse:
        response: pb.MintCookieResponse = self._settings.call("MintCookie", request)
        return response


class AsyncClient:
    """asyncio client (grpc.aio), on the running event loop's shared channel
    to `target`."""

    def __init__(
        self,
        target: str = _channels.DEFAULT_TARGET,
        *,
        token: Optional[str] = None,
        tls: Optional[_channels.TLS] = None,
        deadline_ms: float = DEFAULT_CLIENT_DEADLINE_MS,
    ) -> None:
        self._settings = Settings(target=target, token=token, tls=tls, deadline_ms=deadline_ms)

    @property
    def stub(self) -> Any:
        """The generated stub on the running loop's grpc.aio channel."""
        return _channels.async_stub(self._settings.endpoint)

    async def lookup_by_user(
        self, user_id: str = "", *, email: str = "", limit: int = 0
    ) -> Optional[pb.LookupByUserResponse]:
        try:
            response: pb.LookupByUserResponse = await self._settings.call_async(
                "LookupByUser", _user(pb.LookupByUserRequest(limit=limit), user_id, email)
            )
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        return response

    async def forget_user(self, user_id: str = "", *, email: str = "") -> pb.ForgetUserResponse:
        response: pb.ForgetUserResponse = await self._settings.call_async(
            "ForgetUser", _user(pb.ForgetUserRequest(), user_id, email)
        )
        return response

    async def forget_visitor(self, request: Any) -> Optional[pb.ForgetVisitorResponse]:
        exchange, context = _visitor(request)
        try:
            response: pb.ForgetVisitorResponse = await self._settings.call_async(
                "ForgetVisitor", pb.ForgetVisitorRequest(context=context)
            )
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        return _forgotten(exchange, response)

    async def resolve_session(self, request: pb.ResolveSessionRequest) -> pb.ResolveSessionResponse:
        response: pb.ResolveSessionResponse = await self._settings.call_async("ResolveSession", request)
        return response

    async def record_handoff(self, request: pb.RecordHandoffRequest) -> pb.RecordHandoffResponse:
        response: pb.RecordHandoffResponse = await self._settings.call_async("RecordHandoff", request)
        return response

    async def mint_cookie(self, request: pb.MintCookieRequest) -> pb.MintCookieResponse:
        response: pb.MintCookieResponse = await self._settings.call_async("MintCookie", request)
        return response
