"""How the package reaches a sidecar that is not plaintext on loopback: a
bearer token (the sidecar's --auth-token-file), TLS, mutual TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable, Dict, List

import grpc
import httpx
import pytest

import sessionbridge
from conftest import App, Sidecar, issue, own_cookies

SHOP = "shop.example.com"
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(sidecar_factory: Callable[..., Sidecar], workdir: Path) -> Sidecar:
    token_file = workdir / "token"
    token_file.write_text(TOKEN)
    return sidecar_factory("guarded", "--auth-token-file", str(token_file))


@pytest.mark.parametrize("kind", ["fastapi", "django-wsgi"])
def test_the_bearer_token_is_sent_and_without_it_the_app_fails_open(
    kind: str,
    guarded: Sidecar,
    app_factory: Callable[..., List[App]],
    new_browser: Callable[[], httpx.Client],
) -> None:
    with_token, without = app_factory([(kind, guarded, {"SB_TOKEN": TOKEN}), (kind, guarded, {})])
    visitor = new_browser()
    first = visitor.get(with_token.url(SHOP))
    assert first.json()["identity"]["method"] == "NEW"
    assert own_cookies(first)
    assert visitor.get(with_token.url(SHOP)).json()["identity"]["method"] == "COOKIE"

    refused = new_browser().get(without.url(SHOP))
    assert refused.status_code == 200
    assert refused.json()["identity"] is None
    errors = new_browser().get(without.url(SHOP, "/errors")).json()
    assert [e["error"].split()[0] for e in errors] == ["UNAUTHENTICATED"]


def test_the_clients_send_the_token(guarded: Sidecar) -> None:
    assert sessionbridge.Client(guarded.address, token=TOKEN).lookup_by_user("nobody") is None
    with pytest.raises(grpc.RpcError) as refused:
        sessionbridge.Client(guarded.address).lookup_by_user("nobody")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    async def lookup() -> object:
        return await sessionbridge.AsyncClient(guarded.address, token=TOKEN).lookup_by_user("nobody")

    assert asyncio.run(lookup()) is None


@pytest.fixture(scope="module")
def tls_sidecar(sidecar_factory: Callable[..., Sidecar], certs: Dict[str, Path]) -> Sidecar:
    server = issue(certs, "sidecar", "DNS:sidecar.internal,IP:127.0.0.1", "serverAuth")
    return sidecar_factory(
        "tls", "--tls-cert", str(server["cert"]), "--tls-key", str(server["key"]),
        "--tls-client-ca", str(certs["ca"]),
    )


def test_mutual_tls(tls_sidecar: Sidecar, certs: Dict[str, Path]) -> None:
    client_cert = issue(certs, "backend", "DNS:backend.internal", "clientAuth")
    tls = sessionbridge.TLS(ca=certs["ca"], cert=client_cert["cert"], key=client_cert["key"])
    assert sessionbridge.Client(tls_sidecar.address, tls=tls).lookup_by_user("nobody") is None
    # PEM data works as well as paths, and the name to verify can be given.
    pem = sessionbridge.TLS(
        ca=certs["ca"].read_bytes(),
        cert=client_cert["cert"].read_text(),
        key=client_cert["key"].read_bytes(),
        server_name="sidecar.internal",
    )
    assert sessionbridge.Client(tls_sidecar.address, tls=pem).lookup_by_user("nobody") is None

    # Without a client certificate, or over plaintext: refused.
    with pytest.raises(grpc.RpcError) as no_cert:
        sessionbridge.Client(tls_sidecar.address, tls=sessionbridge.TLS(ca=certs["ca"])).lookup_by_user("nobody")
    assert no_cert.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        sessionbridge.Client(tls_sidecar.address).lookup_by_user("nobody")
