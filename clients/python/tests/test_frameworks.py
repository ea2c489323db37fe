"""The middleware in each framework (FastAPI, Flask, Django ASGI, Django
WSGI), served over HTTPS on a real port, against the real sidecar, driven
by an HTTP client that keeps cookies as a browser does."""

from __future__ import annotations

import re
import urllib.parse
from typing import Callable, Dict, List

import httpx

from conftest import App, Sidecar, own_cookies, set_cookies

SHOP = "shop.example.com"
CHECKOUT = "checkout.example.net"


def test_first_visit_sets_the_cookie_and_the_second_is_recognised_by_it(app: App, browser: httpx.Client) -> None:
    first = browser.get(app.url(SHOP))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["app"].startswith(app.kind.split("-")[0])
    identity = body["identity"]
    assert identity is not None, app.log_text()
    assert identity["method"] == "NEW"
    assert identity["new_client"] is True
    assert re.fullmatch(r"\d+\.\d+", identity["client_id"])
    # The sidecar's identity cookie, and the app's own cookie beside it.
    ours = own_cookies(first)
    assert len(ours) == 1 and ours[0].startswith("__Secure-sbid=") and "Domain=example.com" in ours[0], ours
    assert any(c.startswith("app_cookie=set-by-the-app") for c in set_cookies(first)), set_cookies(first)
    # What was sent: the Host header, the URL as received, the peer.
    assert body["context"]["host"] == f"{SHOP}:{app.port}"
    assert body["context"]["url"] == f"https://{SHOP}:{app.port}/"
    assert body["context"]["client_ip"] == "127.0.0.1"

    second = browser.get(app.url(SHOP, "/?q=a%20b&x=1"))
    again = second.json()["identity"]
    assert again["method"] == "COOKIE"
    assert again["client_id"] == identity["client_id"]
    assert again["session_id"] == identity["session_id"]
    assert again["new_client"] is False
    # The request target as received, not decoded.
    assert second.json()["context"]["url"] == f"https://{SHOP}:{app.port}/?q=a%20b&x=1"


def test_a_subdomain_of_the_same_site_shares_the_identity(app: App, browser: httpx.Client) -> None:
    first = browser.get(app.url(SHOP)).json()["identity"]
    www = browser.get(app.url("www.example.com")).json()["identity"]
    assert www["method"] == "COOKIE"
    assert www["client_id"] == first["client_id"]


def test_a_streaming_response_gets_the_cookies(app: App, browser: httpx.Client) -> None:
    with browser.stream("GET", app.url(SHOP, "/stream")) as response:
        assert response.status_code == 200
        assert own_cookies(response), response.headers
        lines = list(response.iter_lines())
    assert lines[:5] == [f"chunk {i}" for i in range(5)]
    client_id = lines[-1].removeprefix("client_id=")
    assert client_id
    # The cookie the stream carried names the identity the stream reported.
    after = browser.get(app.url(SHOP)).json()["identity"]
    assert after["method"] == "COOKIE"
    assert after["client_id"] == client_id


def test_an_error_page_the_app_renders_gets_the_cookies(app: App, browser: httpx.Client) -> None:
    missing = browser.get(app.url(SHOP, "/no-such-page"))
    assert missing.status_code == 404
    assert own_cookies(missing)
    assert browser.get(app.url(SHOP)).json()["identity"]["method"] == "COOKIE"


def test_a_skipped_path_makes_no_call_and_carries_no_result(app: App, browser: httpx.Client) -> None:
    skipped = browser.get(app.url(SHOP, "/static/info"))
    assert skipped.status_code == 200
    assert skipped.json()["identity"] is None
    assert not own_cookies(skipped)
    # ... and recorded nothing: the next page is a new visitor.
    assert browser.get(app.url(SHOP)).json()["identity"]["method"] == "NEW"


def test_a_hand_off_link_is_answered_by_a_303_to_the_clean_url(app: App, browser: httpx.Client) -> None:
    shop = browser.get(app.url(SHOP)).json()["identity"]
    destination = app.url(CHECKOUT, "/?cart=7")
    leave = browser.get(app.url(SHOP, "/go"), params={"to": destination})
    assert leave.status_code == 303, leave.text
    decorated = leave.headers["location"]
    assert decorated.startswith(destination + "&_sbt="), decorated

    arrive = browser.get(decorated)
    assert arrive.status_code == 303
    assert arrive.headers["location"] == destination
    cookies = own_cookies(arrive)
    assert cookies and "Domain=example.net" in cookies[0], cookies

    landed = browser.get(destination).json()["identity"]
    assert landed["method"] == "COOKIE"
    assert landed["client_id"] == shop["client_id"]
    assert landed["session_id"] == shop["session_id"]


def test_head_is_redirected_too_but_a_post_reaches_the_app(app: App, browser: httpx.Client, new_browser) -> None:  # type: ignore[no-untyped-def]
    shop = browser.get(app.url(SHOP)).json()["identity"]
    destination = app.url(CHECKOUT, "/")
    handed = browser.get(app.url(SHOP, "/handoff"), params={"to": destination, "max_uses": "2"}).json()
    assert handed["ok"] is True and handed["token"]

    head = new_browser().head(handed["url"])
    assert head.status_code == 303
    assert head.headers["location"] == destination

    post = new_browser().post(handed["url"])
    assert post.status_code == 200
    body = post.json()["identity"]
    assert body["method"] == "HANDOFF_TOKEN"
    assert body["client_id"] == shop["client_id"]
    assert body["clean_url"] == destination
    parsed = urllib.parse.urlsplit(handed["url"])
    assert "_sbt=" in parsed.query


def test_a_hand_off_on_the_first_visit_carries_the_identity_the_response_sets(
    app: App, browser: httpx.Client
) -> None:
    # No page before: the middleware mints the identity, and handoff() must
    # send that one (its cookie is not in the request yet), not mint another.
    handed = browser.get(app.url(SHOP, "/handoff"), params={"to": app.url(CHECKOUT, "/")})
    answer = handed.json()
    assert answer["ok"] and answer["request_client_id"]
    assert answer["client_id"] == answer["request_client_id"]
    assert len(own_cookies(handed)) == 1
    shop = browser.get(app.url(SHOP)).json()["identity"]
    assert shop["method"] == "COOKIE"
    assert shop["client_id"] == answer["client_id"]


def test_ga_cookie_asks_the_sidecar_for_a_ga4_cookie_too(
    main_apps: Dict[str, App], sidecar: Sidecar, app_factory: Callable[..., List[App]], new_browser: Callable[[], httpx.Client]
) -> None:
    """`ga_cookie=True` (both middlewares, and link_login) adds `_ga` naming
    the client id; by default the sidecar's setting (off here) applies."""
    asgi, wsgi = app_factory([("fastapi", sidecar, {"SB_GA_COOKIE": "1"}), ("flask", sidecar, {"SB_GA_COOKIE": "1"})])
    for app in (asgi, wsgi):
        visitor = new_browser()
        first = visitor.get(app.url(SHOP))
        client_id = first.json()["identity"]["client_id"]
        ga = [c for c in set_cookies(first) if c.startswith("_ga=")]
        assert len(ga) == 1 and ga[0].startswith(f"_ga=GA1.2.{client_id};"), set_cookies(first)
        login = visitor.get(app.url(SHOP, "/login"), params={"user": "ga-cookie-reader"})
        assert any(c.startswith(f"_ga=GA1.2.{client_id};") for c in set_cookies(login)), set_cookies(login)
    plain = new_browser().get(main_apps["fastapi"].url(SHOP))
    assert plain.json()["identity"] is not None
    assert not [c for c in set_cookies(plain) if c.startswith("_ga=")]
