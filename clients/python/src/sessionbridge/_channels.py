"""One long-lived gRPC channel per process and target (per event loop for
grpc.aio), shared by the middleware, the helpers and the clients."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import grpc
import grpc.aio

from .v1 import sessionbridge_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
"""The sidecar's default listening address."""

CHANNEL_OPTIONS: Tuple[Tuple[str, Any], ...] = (
    # Keepalive every 30 s, also without calls, so that an idle backend
    # finds a dead connection before a visitor does.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # The sidecar is on loopback: after it restarts, reconnect within
    # seconds rather than gRPC's default two minutes of backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)

PemSource = Union[str, bytes, "os.PathLike[str]"]
"""PEM data (bytes, or a str starting with "-----BEGIN") or a file path."""


def _pem(source: Optional[PemSource]) -> Optional[bytes]:
    if source is None:
        return None
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    return Path(source).read_bytes()


@dataclasses.dataclass(frozen=True)
class TLS:
    """TLS to a sidecar that is not on the pod's loopback."""

    ca: Optional[PemSource] = None
    """CA bundle (PEM data or a path); None: the system's roots."""
    cert: Optional[PemSource] = None
    """Client certificate chain for mutual TLS (PEM data or a path)."""
    key: Optional[PemSource] = None
    """Private key of `cert` (PEM data or a path)."""
    server_name: Optional[str] = None
    """The name to verify the sidecar's certificate against, when it is not
    the target's host."""

    def _material(self) -> Tuple[Optional[bytes], Optional[bytes], Optional[bytes], Optional[str]]:
        return _pem(self.ca), _pem(self.key), _pem(self.cert), self.server_name


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the sidecar is and how to reach it."""

    target: str = DEFAULT_TARGET
    tls: Optional[TLS] = None
    token: Optional[str] = None

    @property
    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def _channel_key(self) -> Tuple[Any, ...]:
        return (self.target, self.tls._material() if self.tls else None)

    def _credentials_and_options(self) -> Tuple[Any, Tuple[Tuple[str, Any], ...]]:
        if self.tls is None:
            return None, CHANNEL_OPTIONS
        ca, key, cert, server_name = self.tls._material()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        options = CHANNEL_OPTIONS
        if server_name:
            options += (("grpc.ssl_target_name_override", server_name),)
        return credentials, options


# The generated stub class carries no type annotations.
_Stub: Any = pb_grpc.SessionBridgeServiceStub

_lock = threading.Lock()
_pid = os.getpid()
_sync: Dict[Tuple[Any, ...], Any] = {}
_async: Dict[int, Tuple[asyncio.AbstractEventLoop, Dict[Tuple[Any, ...], Any]]] = {}


def _after_fork() -> None:
    # A forked worker (gunicorn --preload) must not share its parent's
    # channels: gRPC's core does not survive fork.
    global _pid
    if os.getpid() != _pid:
        _pid = os.getpid()
        _sync.clear()
        _async.clear()


def sync_stub(endpoint: Endpoint) -> Any:
    """The blocking stub on this process's channel to `endpoint`."""
    key = endpoint._channel_key()
    with _lock:
        _after_fork()
        stub = _sync.get(key)
        if stub is None:
            credentials, options = endpoint._credentials_and_options()
            if credentials is None:
                channel = grpc.insecure_channel(endpoint.target, options=options)
            else:
                channel = grpc.secure_channel(endpoint.target, credentials, options=options)
            stub = _Stub(channel)
            _sync[key] = stub
        return stub


def async_stub(endpoint: Endpoint) -> Any:
    """The grpc.aio stub on the running event loop's channel to `endpoint`."""
    loop = asyncio.get_running_loop()
    key = endpoint._channel_key()
    with _lock:
        _after_fork()
        for loop_id, (other, _) in list(_async.items()):
            if other.is_closed():
                del _async[loop_id]
        entry = _async.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = (loop, {})
            _async[id(loop)] = entry
        stub = entry[1].get(key)
        if stub is None:
            credentials, options = endpoint._credentials_and_options()
            if credentials is None:
                channel = grpc.aio.insecure_channel(endpoint.target, options=options)
            else:
                channel = grpc.aio.secure_channel(endpoint.target, credentials, options=options)
            stub = _Stub(channel)
            entry[1][key] = stub
        return stub
