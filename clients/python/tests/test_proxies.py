"""The trusted-proxy rules (clients/README.md, "Trusted proxies"): a table
for the parser, then end to end through real frameworks, where the
sidecar's answer shows which address was sent."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import httpx
import pytest

from sessionbridge import IncomingRequest, TrustedProxies
from sessionbridge._core import Settings, merge_cookie_header
from sessionbridge.proxies import parse_address, parse_forwarded
from conftest import App, Sidecar

H = Sequence[Tuple[str, str]]
XFF = "x-forwarded-for"

# (trusted_proxies, peer, headers, expected client address)
CLIENT_IP: List[Tuple[object, str, H, str]] = [
    # No trusted proxies (the default): the peer, whatever the headers say.
    (None, "203.0.113.9", [(XFF, "1.2.3.4")], "203.0.113.9"),
    (None, "127.0.0.1", [("forwarded", "for=1.2.3.4")], "127.0.0.1"),
    # A list: a spoofed X-Forwarded-For from an untrusted peer is ignored.
    (["10.0.0.0/8"], "203.0.113.9", [(XFF, "1.2.3.4")], "203.0.113.9"),
    # A trusted peer: walk from the right, skipping trusted hops.
    (["10.0.0.0/8"], "10.0.0.2", [(XFF, "198.51.100.7")], "198.51.100.7"),
    (["10.0.0.0/8"], "10.0.0.2", [(XFF, "1.2.3.4, 198.51.100.7, 10.0.0.9")], "198.51.100.7"),
    (["10.0.0.0/8", "192.0.2.1"], "10.0.0.2", [(XFF, "6.6.6.6, 198.51.100.7, 192.0.2.1, 10.1.1.1")], "198.51.100.7"),
    # Every X-Forwarded-For header, in order.
    (["10.0.0.0/8"], "10.0.0.2", [(XFF, "1.2.3.4"), (XFF, "198.51.100.7, 10.0.0.3")], "198.51.100.7"),
    # All trusted: the leftmost.
    (["10.0.0.0/8"], "10.0.0.2", [(XFF, "10.0.0.7, 10.0.0.8")], "10.0.0.7"),
    # A trusted peer that sent no header at all: the peer.
    (["10.0.0.0/8"], "10.0.0.2", [], "10.0.0.2"),
    # Ports and brackets as proxies write them; IPv6 networks.
    (["10.0.0.0/8"], "10.0.0.2", [(XFF, "198.51.100.7:4711, 10.0.0.3:80")], "198.51.100.7:4711"),
    (["2001:db8::/32"], "2001:db8::1", [(XFF, "2001:db8:cafe::17, [2001:db8::5]:443")], "2001:db8:cafe::17"),
    # An IPv4-mapped peer matches its IPv4 entry.
    (["127.0.0.1"], "::ffff:127.0.0.1", [(XFF, "198.51.100.7")], "198.51.100.7"),
    # Forwarded, when there is no X-Forwarded-For.
    (["10.0.0.0/8"], "10.0.0.2", [("forwarded", 'for=198.51.100.7;proto=https, for="10.0.0.3"')], "198.51.100.7"),
    (["10.0.0.0/8"], "10.0.0.2", [("forwarded", 'for="[2001:db8:cafe::17]:4711"')], "[2001:db8:cafe::17]:4711"),
    # X-Forwarded-For wins over Forwarded.
    (["10.0.0.0/8"], "10.0.0.2", [("forwarded", "for=5.5.5.5"), (XFF, "198.51.100.7")], "198.51.100.7"),
    # Not an address: passed on as it is, for the sidecar to reject.
    (["10.0.0.0/8"], "10.0.0.2", [(XFF, "1.2.3.4, junk")], "junk"),
    (["10.0.0.0/8"], "10.0.0.2", [("forwarded", "for=unknown")], "unknown"),
    # A hop count: the n-th address from the right, never further.
    (1, "10.0.0.2", [(XFF, "1.2.3.4, 198.51.100.7")], "198.51.100.7"),
    (2, "10.0.0.2", [(XFF, "1.2.3.4, 198.51.100.7, 10.0.0.3")], "198.51.100.7"),
    (2, "10.0.0.2", [(XFF, "1.2.3.4"), (XFF, "198.51.100.7, 10.0.0.3")], "198.51.100.7"),
    (3, "10.0.0.2", [(XFF, "198.51.100.7, 10.0.0.3")], "10.0.0.2"),
    (1, "10.0.0.2", [], "10.0.0.2"),
    (1, "10.0.0.2", [("forwarded", "for=198.51.100.7")], "198.51.100.7"),
    # The string forms an environment variable gives.
    ("10.0.0.0/8, 127.0.0.1", "127.0.0.1", [(XFF, "198.51.100.7")], "198.51.100.7"),
    ("1", "10.0.0.2", [(XFF, "1.2.3.4, 198.51.100.7")], "198.51.100.7"),
    (0, "10.0.0.2", [(XFF, "198.51.100.7")], "10.0.0.2"),
]


@pytest.mark.parametrize("spec, peer, headers, expected", CLIENT_IP)
def test_client_ip(spec: object, peer: str, headers: H, expected: str) -> None:
    assert TrustedProxies(spec).client_ip(peer, headers) == expected  # type: ignore[arg-type]


# (trusted_proxies, peer, headers, expected (host, scheme))
HOST_SCHEME: List[Tuple[object, str, H, Tuple[str, str]]] = [
    (None, "10.0.0.2", [("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "http")], ("shop.example.com", "https")),
    (["10.0.0.0/8"], "203.0.113.9", [("x-forwarded-host", "evil.example")], ("shop.example.com", "https")),
    (["10.0.0.0/8"], "10.0.0.2", [("x-forwarded-host", "spoof.example, www.example.com"), ("x-forwarded-proto", "https, http")], ("www.example.com", "http")),
    (["10.0.0.0/8"], "10.0.0.2", [("forwarded", "host=spoof.example;proto=https, for=1.2.3.4;host=www.example.com;proto=http")], ("www.example.com", "http")),
    # Only the nearest Forwarded element counts: one further left may be the client's.
    (["10.0.0.0/8"], "10.0.0.2", [("forwarded", "for=1.2.3.4;host=spoof.example;proto=http, for=10.0.0.3")], ("shop.example.com", "https")),
    (1, "10.0.0.2", [("x-forwarded-host", "www.example.com")], ("www.example.com", "https")),
    (["10.0.0.0/8"], "10.0.0.2", [], ("shop.example.com", "https")),
]


@pytest.mark.parametrize("spec, peer, headers, expected", HOST_SCHEME)
def test_host_and_scheme(spec: object, peer: str, headers: H, expected: Tuple[str, str]) -> None:
    proxies = TrustedProxies(spec)  # type: ignore[arg-type]
    assert proxies.host_and_scheme(peer, headers, "shop.example.com", "https") == expected


def test_bad_specifications_are_refused() -> None:
    with pytest.raises(TypeError):
        TrustedProxies(True)
    with pytest.raises(ValueError):
        TrustedProxies(["10.0.0.0/33"])
    with pytest.raises(ValueError):
        TrustedProxies(-1)


def test_forwarded_parser_keeps_quoted_separators() -> None:
    assert parse_forwarded(['for="a,b;c";proto=https, For=x', "host=h"]) == [
        {"for": "a,b;c", "proto": "https"},
        {"for": "x"},
        {"host": "h"},
    ]


@pytest.mark.parametrize(
    "text, expected",
    [("1.2.3.4", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"), ("[::1]:80", "::1"), ("::1", "::1"),
     ("::ffff:10.0.0.1", "10.0.0.1"), ("junk", None), ("[::1", None), ("", None)],
)
def test_parse_address(text: str, expected: Optional[str]) -> None:
    address = parse_address(text)
    assert (str(address) if address else None) == expected


def incoming(headers: H, peer: str = "127.0.0.1", target: str = "/p?q=%20") -> IncomingRequest:
    return IncomingRequest(
        method="GET", scheme="https", target=target, headers=tuple(headers), peer=peer, server="127.0.0.1:443", native={}
    )


def test_the_context_is_built_from_the_request_as_received() -> None:
    context = Settings().build_context(
        incoming(
            [
                ("host", "shop.example.com:8443"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("referer", "https://www.example.org/x"),
                ("user-agent", "UA/1"),
                ("accept-language", "fr"),
                ("sec-gpc", "1"),
                ("x-forwarded-for", "1.2.3.4"),
            ]
        )
    )
    assert context.host == "shop.example.com:8443"
    assert context.url == "https://shop.example.com:8443/p?q=%20"
    assert context.scheme == "https"
    assert context.cookie_header == "a=1; b=2"
    assert context.referer == "https://www.example.org/x"
    assert context.user_agent == "UA/1"
    assert context.accept_language == "fr"
    assert context.client_ip == "127.0.0.1"
    assert context.global_privacy_control is True
    assert not context.HasField("consent")


def test_without_a_host_header_the_server_address_is_used() -> None:
    context = Settings().build_context(incoming([]))
    assert context.host == "127.0.0.1:443"
    assert context.global_privacy_control is False


def test_merge_cookie_header() -> None:
    assert merge_cookie_header("a=1; __Secure-sbid=old; b=2", {"__Secure-sbid": "new"}) == "a=1; b=2; __Secure-sbid=new"
    assert merge_cookie_header("a=1; __Secure-sbid=old", {"__Secure-sbid": None}) == "a=1"
    assert merge_cookie_header("", {"x": "1"}) == "x=1"
    assert merge_cookie_header("a=1;b=2", {}) == "a=1;b=2"


def test_the_default_deadline_is_50_ms() -> None:
    assert Settings().deadline_ms == 50
    with pytest.raises(ValueError):
        Settings(deadline_ms=0)


# -- end to end --------------------------------------------------------------

SHOP = "shop.example.com"


@pytest.fixture(scope="module")
def behind_proxy(sidecar: Sidecar, app_factory: Callable[..., List[App]]) -> Dict[str, App]:
    """Apps that trust 127.0.0.1 (the test client) as their proxy."""
    trusting = {"SB_TRUSTED_PROXIES": "127.0.0.1"}
    fastapi, flask = app_factory([("fastapi", sidecar, trusting), ("flask", sidecar, trusting)])
    return {"fastapi": fastapi, "flask": flask}


def client_ip_rejections(body: Dict[str, object]) -> List[Dict[str, str]]:
    identity = body["identity"]
    assert isinstance(identity, dict)
    return [r for r in identity["rejected"] if r["field"] == "context.client_ip"]


@pytest.mark.parametrize("kind", ["fastapi", "flask"])
def test_behind_a_trusted_proxy_the_forwarded_address_reaches_the_sidecar(
    kind: str, behind_proxy: Dict[str, App], browser: httpx.Client
) -> None:
    app = behind_proxy[kind]
    good = browser.get(app.url(SHOP), headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}).json()
    assert good["context"]["client_ip"] == "198.51.100.7"
    assert client_ip_rejections(good) == []

    # What the proxy vouched for is not an address: the sidecar says so.
    junk = browser.get(app.url(SHOP), headers={"X-Forwarded-For": "198.51.100.7, not-an-address"}).json()
    assert junk["context"]["client_ip"] == "not-an-address"
    rejected = client_ip_rejections(junk)
    assert [(r["kind"], r["reason"]) for r in rejected] == [("CLIENT_IP", "MALFORMED")], junk

    forwarded = browser.get(
        app.url(SHOP), headers={"Forwarded": "for=not-an-address;host=www.example.com;proto=https"}
    ).json()
    assert forwarded["context"]["client_ip"] == "not-an-address"
    assert forwarded["context"]["host"] == "www.example.com"
    assert forwarded["context"]["url"] == "https://www.example.com/"
    assert len(client_ip_rejections(forwarded)) == 1


@pytest.mark.parametrize("kind", ["fastapi", "django-wsgi"])
def test_without_trusted_proxies_a_spoofed_header_is_ignored(
    kind: str, main_apps: Dict[str, App], browser: httpx.Client
) -> None:
    app = main_apps[kind]
    body = browser.get(
        app.url(SHOP),
        headers={"X-Forwarded-For": "not-an-address", "X-Forwarded-Host": "evil.example", "Forwarded": "for=junk"},
    ).json()
    assert body["context"]["client_ip"] == "127.0.0.1"
    assert body["context"]["host"] == f"{SHOP}:{app.port}"
    assert client_ip_rejections(body) == []
