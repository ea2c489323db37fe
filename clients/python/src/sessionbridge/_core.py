"""The framework-neutral core: the request as the middleware sees it, the
options, the context sent to the sidecar, the call, and failing open."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import urllib.parse
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import grpc

from . import _channels
from .proxies import TrustedProxies, TrustedProxiesSpec
from .result import ConsentValue, Result, to_consent
from .v1 import sessionbridge_pb2 as pb

DEFAULT_DEADLINE_MS = 50
EXCHANGE_KEY = "sessionbridge.exchange"
RESULT_KEY = "sessionbridge"

log = logging.getLogger("sessionbridge")


@dataclasses.dataclass(frozen=True)
class User:
    """The logged-in user, as a `user` callback returns it."""

    user_id: str = ""
    email: str = ""


UserValue = Union[None, str, User, Mapping[str, str]]
"""What a `user` callback may return: None (nobody logged in), a user id,
a `User`, or a mapping with `user_id` and/or `email`."""


def to_user(value: UserValue) -> User:
    if value is None:
        return User()
    if isinstance(value, User):
        return value
    if isinstance(value, str):
        return User(user_id=value)
    if isinstance(value, Mapping):
        return User(user_id=str(value.get("user_id") or ""), email=str(value.get("email") or ""))
    raise TypeError(f"user callback: expected None, a str, a User or a mapping, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class IncomingRequest:
    """The request as the middleware received it, whatever the framework.
    Given to the `skip`, `user`, `consent` and `on_error` callbacks."""

    method: str
    scheme: str
    """The connection's scheme (`http` / `https`)."""
    target: str
    """The request target as received: path and query, not decoded."""
    headers: Tuple[Tuple[str, str], ...]
    """(lower-case name, value), in the order received."""
    peer: str
    """The address of the connection's other end."""
    server: str
    """`host:port` the server listens on (used when there is no Host header)."""
    native: MutableMapping[str, Any] = dataclasses.field(repr=False, compare=False)
    """The ASGI scope or WSGI environ."""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str:
        """The first header of that name, or ""."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def header_values(self, name: str) -> List[str]:
        """Every header of that name, in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    @classmethod
    def from_scope(cls, scope: MutableMapping[str, Any]) -> IncomingRequest:
        headers = tuple(
            (bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1"))
            for k, v in scope.get("headers") or ()
        )
        raw_path = scope.get("raw_path")
        if raw_path:
            path = bytes(raw_path).decode("latin-1")
        else:
            path = urllib.parse.quote(
                (scope.get("root_path") or "") + (scope.get("path") or "/"), safe="/:@!$&'()*+,;=~%"
            )
        query = bytes(scope.get("query_string") or b"").decode("latin-1")
        client = scope.get("client")
        server = scope.get("server")
        if not server:
            listening = ""
        elif server[1] is None:
            listening = str(server[0])
        else:
            listening = f"{server[0]}:{server[1]}"
        return cls(
            method=str(scope.get("method") or "GET").upper(),
            scheme=str(scope.get("scheme") or "http"),
            target=path + ("?" + query if query else ""),
            headers=headers,
            peer=str(client[0]) if client else "",
            server=listening,
            native=scope,
        )

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, Any]) -> IncomingRequest:
        headers = tuple(
            (key[5:].replace("_", "-").lower(), str(value))
            for key, value in environ.items()
            if key.startswith("HTTP_")
        )
        target = str(environ.get("REQUEST_URI") or environ.get("RAW_URI") or "")
        if target and not target.startswith("/"):
            # An absolute-form target (a request made to a proxy).
            parts = urllib.parse.urlsplit(target)
            target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        if not target:
            path = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "")
            target = urllib.parse.quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=~%") or "/"
            query = str(environ.get("QUERY_STRING") or "")
            if query:
                target += "?" + query
        name, port = environ.get("SERVER_NAME"), environ.get("SERVER_PORT")
        return cls(
            method=str(environ.get("REQUEST_METHOD") or "GET").upper(),
            scheme=str(environ.get("wsgi.url_scheme") or "http"),
            target=target,
            headers=headers,
            peer=str(environ.get("REMOTE_ADDR") or ""),
            server=f"{name}:{port}" if name and port else str(name or ""),
            native=environ,
        )


SkipValue = Union[None, str, Sequence[str], Callable[[IncomingRequest], bool]]
OnError = Callable[[BaseException, IncomingRequest], Any]


class Settings:
    """The middleware's options, checked once."""

    def __init__(
        self,
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
        if not deadline_ms or deadline_ms <= 0:
            raise ValueError("deadline_ms: a positive number of milliseconds")
        self.endpoint = _channels.Endpoint(target=target, tls=tls, token=token or None)
        self.deadline_ms = deadline_ms
        self.proxies = TrustedProxies(trusted_proxies)
        self.skip_prefixes: Tuple[str, ...] = ()
        self.skip_predicate: Optional[Callable[[IncomingRequest], bool]] = None
        if callable(skip):
            self.skip_predicate = skip
        elif isinstance(skip, str):
            self.skip_prefixes = (skip,)
        elif skip is not None:
            self.skip_prefixes = tuple(skip)
        self.user = user
        self.consent = consent
        self.on_error = on_error
        self.redirect_clean_url = redirect_clean_url
        self.ga_cookie = ga_cookie
        self.log = logger or log

    def ask_ga_cookie(self, request: pb.ResolveSessionRequest) -> None:
        """Sets the request's `ga_cookie` when the option is set (else the
        sidecar's own `ga_cookie` setting applies)."""
        if self.ga_cookie is not None:
            request.ga_cookie.value = bool(self.ga_cookie)

    @property
    def timeout(self) -> float:
        return self.deadline_ms / 1000.0

    def skips(self, incoming: IncomingRequest) -> bool:
        if self.skip_predicate is not None:
            return bool(self.skip_predicate(incoming))
        path = incoming.path
        return any(path.startswith(prefix) for prefix in self.skip_prefixes)

    def build_context(self, incoming: IncomingRequest, consent: Optional[pb.Consent] = None) -> pb.RequestContext:
        """The RequestContext of a request (clients/README.md, section 1)."""
        host = incoming.header("host") or incoming.server
        host, scheme = self.proxies.host_and_scheme(incoming.peer, incoming.headers, host, incoming.scheme)
        context = pb.RequestContext(
            host=host,
            url=f"{scheme}://{host}{incoming.target}",
            scheme=scheme,
            referer=incoming.header("referer"),
            user_agent=incoming.header("user-agent"),
            accept_language=", ".join(incoming.header_values("accept-language")),
            cookie_header="; ".join(incoming.header_values("cookie")),
            client_ip=self.proxies.client_ip(incoming.peer, incoming.headers),
            global_privacy_control=incoming.header("sec-gpc").strip() == "1",
        )
        if consent is not None:
            context.consent.CopyFrom(consent)
        return context

    def _hook(self, error: BaseException, incoming: IncomingRequest) -> Any:
        if self.on_error is None:
            return None
        try:
            return self.on_error(error, incoming)
        except Exception:
            self.log.exception("sessionbridge: the on_error hook raised")
            return None

    def report(self, rpc: str, error: BaseException, incoming: IncomingRequest, outcome: str) -> None:
        """Logs one line and calls `on_error`. Never raises."""
        self.log.warning("sessionbridge: %s failed: %s; %s", rpc, describe(error), outcome)
        answer = self._hook(error, incoming)
        if inspect.iscoroutine(answer):
            answer.close()
            self.log.warning("sessionbridge: an async on_error hook is only awaited by the async code paths")

    async def report_async(self, rpc: str, error: BaseException, incoming: IncomingRequest, outcome: str) -> None:
        """`report`, awaiting an async `on_error` hook."""
        self.log.warning("sessionbridge: %s failed: %s; %s", rpc, describe(error), outcome)
        answer = self._hook(error, incoming)
        if inspect.isawaitable(answer):
            try:
                await answer
            except Exception:
                self.log.exception("sessionbridge: the on_error hook raised")

    def call(self, rpc: str, request: Any, timeout: Optional[float] = None) -> Any:
        stub = _channels.sync_stub(self.endpoint)
        return getattr(stub, rpc)(
            request, timeout=self.timeout if timeout is None else timeout, metadata=self.endpoint.metadata
        )

    async def call_async(self, rpc: str, request: Any, timeout: Optional[float] = None) -> Any:
        stub = _channels.async_stub(self.endpoint)
        return await getattr(stub, rpc)(
            request, timeout=self.timeout if timeout is None else timeout, metadata=self.endpoint.metadata
        )


def describe(error: BaseException) -> str:
    """`UNAVAILABLE failed to connect ...`, or the exception's type and text."""
    if isinstance(error, grpc.RpcError):
        code = getattr(error, "code", None)
        details = getattr(error, "details", None)
        if callable(code):
            status = code()
            text = details() if callable(details) else ""
            return f"{getattr(status, 'name', status)} {text or ''}".strip()
    return f"{type(error).__name__}: {error}"


def is_not_found(error: BaseException) -> bool:
    code = getattr(error, "code", None)
    return isinstance(error, grpc.RpcError) and callable(code) and code() == grpc.StatusCode.NOT_FOUND


def _deletes(cookie: pb.Cookie) -> bool:
    return cookie.HasField("max_age_seconds") and cookie.max_age_seconds.value <= 0


def merge_cookie_header(header: str, updates: Mapping[str, Optional[str]]) -> str:
    """`header` as the browser will send it once it has the `updates`
    (name -> value; None deletes the cookie)."""
    if not updates:
        return header
    pairs = [p.strip() for p in header.split(";") if p.strip()]
    kept = [p for p in pairs if p.split("=", 1)[0].strip() not in updates]
    kept += [f"{name}={value}" for name, value in updates.items() if value is not None]
    return "; ".join(kept)


class Exchange:
    """One request's dealings with the sidecar: the context, the result, the
    cookies to add to the response. Kept in the ASGI scope / WSGI environ
    under "sessionbridge.exchange"."""

    def __init__(self, settings: Settings, incoming: IncomingRequest, asgi: bool) -> None:
        self.settings = settings
        self.incoming = incoming
        self.asgi = asgi
        self.result: Optional[Result] = None
        self.context: Optional[pb.RequestContext] = None
        self._cookies: Dict[Tuple[str, str, str], pb.Cookie] = {}
        incoming.native[EXCHANGE_KEY] = self
        self._publish()

    # -- the result, where the frameworks look for it

    def _publish(self) -> None:
        native = self.incoming.native
        native[RESULT_KEY] = self.result
        if self.asgi:
            state = native.get("state")
            if state is None:
                state = native["state"] = {}
            if isinstance(state, MutableMapping):
                state[RESULT_KEY] = self.result

    def accept(self, response: pb.ResolveSessionResponse) -> Result:
        self.queue(response.cookies)
        self.result = Result.from_response(response)
        self._publish()
        return self.result

    # -- cookies

    def queue(self, cookies: Sequence[pb.Cookie]) -> None:
        """Adds cookies to the response; a later cookie of the same name,
        domain and path replaces an earlier one."""
        for cookie in cookies:
            key = (cookie.name, cookie.domain, cookie.path)
            self._cookies.pop(key, None)
            self._cookies[key] = cookie

    def set_cookie_headers(self) -> List[str]:
        return [c.set_cookie_header for c in self._cookies.values() if c.set_cookie_header]

    # -- contexts

    def base_context(self) -> pb.RequestContext:
        if self.context is None:
            self.context = self.settings.build_context(self.incoming)
        return self.context

    def followup_context(self) -> pb.RequestContext:
        """The context for a second call in the same request: with the
        cookies this response already sets (as the browser will send them
        next), and without a hand-off token that was already redeemed."""
        context = pb.RequestContext()
        context.CopyFrom(self.base_context())
        updates: Dict[str, Optional[str]] = {}
        for cookie in self._cookies.values():
            updates[cookie.name] = None if _deletes(cookie) else cookie.value
        context.cookie_header = merge_cookie_header(context.cookie_header, updates)
        if self.result is not None and self.result.clean_url:
            context.url = self.result.clean_url
        return context

    # -- the middleware's call

    def should_redirect(self) -> bool:
        return bool(
            self.settings.redirect_clean_url
            and self.result is not None
            and self.result.clean_url
            and self.incoming.method in ("GET", "HEAD")
        )

    def _resolve_request(self, user: Any, consent: Any) -> pb.ResolveSessionRequest:
        if inspect.isawaitable(user) or inspect.isawaitable(consent):
            for value in (user, consent):
                if inspect.iscoroutine(value):
                    value.close()
            raise TypeError("the user and consent callbacks of the WSGI middleware must not be async")
        who = to_user(user)
        self.context = self.settings.build_context(self.incoming, to_consent(consent))
        request = pb.ResolveSessionRequest(context=self.context, user_id=who.user_id, email=who.email)
        self.settings.ask_ga_cookie(request)
        return request

    def resolve(self) -> None:
        """ResolveSession for this request, failing open."""
        s = self.settings
        try:
            user = s.user(self.incoming) if s.user else None
            consent = s.consent(self.incoming) if s.consent else None
            self.accept(s.call("ResolveSession", self._resolve_request(user, consent)))
        except Exception as error:
            s.report("ResolveSession", error, self.incoming, "serving without identity")

    async def resolve_async(self) -> None:
        """ResolveSession for this request on grpc.aio, failing open."""
        s = self.settings
        try:
            user = s.user(self.incoming) if s.user else None
            if inspect.isawaitable(user):
                user = await user
            consent = s.consent(self.incoming) if s.consent else None
            if inspect.isawaitable(consent):
                consent = await consent
            self.accept(await s.call_async("ResolveSession", self._resolve_request(user, consent)))
        except Exception as error:
            await s.report_async("ResolveSession", error, self.incoming, "serving without identity")

