"""Hand-offs between two Python apps, each beside its own sidecar (its own
sled store), the sidecars sharing one key file; and the payment-webhook
flow (`webhook_identity`)."""

from __future__ import annotations

from typing import Callable, Dict, List

import httpx
import pytest

from conftest import App, Sidecar, own_cookies

SHOP = "shop.example.com"
CHECKOUT = "checkout.example.net"
HOOKS = "hooks.example.com"


@pytest.fixture(scope="module")
def checkout_apps(sidecar_factory: Callable[..., Sidecar], app_factory: Callable[..., List[App]]) -> Dict[str, App]:
    """The destination apps, on a second sidecar with a store of its own."""
    other = sidecar_factory("checkout")
    flask, django = app_factory([("flask", other, {}), ("django-asgi", other, {"SB_REDIRECT_CLEAN_URL": "0"})])
    return {"flask": flask, "django-asgi": django}


def test_fastapi_to_flask_keeps_the_client_id(
    main_apps: Dict[str, App], checkout_apps: Dict[str, App], browser: httpx.Client
) -> None:
    shop, checkout = main_apps["fastapi"], checkout_apps["flask"]
    first = browser.get(shop.url(SHOP)).json()["identity"]
    destination = checkout.url(CHECKOUT, "/?order=42")

    leave = browser.get(shop.url(SHOP, "/go"), params={"to": destination})
    assert leave.status_code == 303
    arrive = browser.get(leave.headers["location"])
    # The destination's middleware took the token out of the address bar.
    assert arrive.status_code == 303 and arrive.headers["location"] == destination
    assert own_cookies(arrive)

    landed = browser.get(destination).json()
    assert landed["app"] == "flask"
    assert landed["identity"]["method"] == "COOKIE"
    assert landed["identity"]["client_id"] == first["client_id"]
    assert landed["identity"]["session_id"] == first["session_id"]


def test_django_wsgi_to_django_asgi_that_leaves_the_clean_url_to_the_app(
    main_apps: Dict[str, App], checkout_apps: Dict[str, App], browser: httpx.Client
) -> None:
    shop, checkout = main_apps["django-wsgi"], checkout_apps["django-asgi"]
    first = browser.get(shop.url(SHOP)).json()["identity"]
    destination = checkout.url(CHECKOUT, "/")

    leave = browser.get(shop.url(SHOP, "/go"), params={"to": destination})
    arrive = browser.get(leave.headers["location"])
    assert arrive.status_code == 200
    landed = arrive.json()["identity"]
    assert landed["method"] == "HANDOFF_TOKEN"
    assert landed["client_id"] == first["client_id"]
    assert landed["clean_url"] == destination
    assert own_cookies(arrive)

    again = browser.get(destination).json()["identity"]
    assert again["method"] == "COOKIE"
    assert again["client_id"] == first["client_id"]


def test_a_token_from_another_store_is_replayed_no_more_than_allowed(
    main_apps: Dict[str, App], checkout_apps: Dict[str, App], new_browser: Callable[[], httpx.Client]
) -> None:
    shop, checkout = main_apps["flask"], checkout_apps["flask"]
    visitor = new_browser()
    first = visitor.get(shop.url(SHOP)).json()["identity"]
    link = visitor.get(shop.url(SHOP, "/handoff"), params={"to": checkout.url(CHECKOUT, "/")}).json()["url"]

    assert visitor.get(link).status_code == 303
    # The same link in another browser: the single use is spent.
    stranger = new_browser()
    replay = stranger.post(link).json()["identity"]
    assert replay["method"] == "NEW"
    assert replay["client_id"] != first["client_id"]
    assert any(r["kind"] == "HANDOFF_TOKEN" and r["reason"] == "REPLAYED" for r in replay["rejected"])


@pytest.mark.parametrize("kind", ["fastapi", "flask", "django-wsgi"])
def test_a_webhook_gets_the_same_identity_at_every_delivery(
    kind: str, main_apps: Dict[str, App], new_browser: Callable[[], httpx.Client]
) -> None:
    app = main_apps[kind]
    visitor = new_browser()
    first = visitor.get(app.url(SHOP)).json()["identity"]
    handed = visitor.get(
        app.url(SHOP, "/handoff"),
        params={"to": "https://pay.example.net/?cart=1", "max_uses": "2", "extra": HOOKS},
    ).json()
    assert handed["ok"] and handed["token"]

    # The payment provider: no cookies, the token in the body, delivered
    # several times.
    provider = new_browser()
    answers = []
    for _ in range(4):
        hook = provider.post(app.url(HOOKS, "/webhook"), json={"token": handed["token"]})
        assert hook.status_code == 200, app.log_text()[-3000:]
        assert not own_cookies(hook)
        answers.append(hook.json()["identity"])
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["client_id"] == first["client_id"]
    assert answers[0]["session_id"] == first["session_id"]
    assert answers[0]["method"] == "HANDOFF_TOKEN"
    assert provider.cookies.jar.__len__() == 0

    # Passive calls spent no use: the visitor's own redirect still redeems it.
    back = new_browser().post(handed["url"].replace("pay.example.net", f"{HOOKS}:{app.port}", 1))
    assert back.json()["identity"]["method"] == "HANDOFF_TOKEN"

    # A forged token names no one.
    token = handed["token"]
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    hook = provider.post(app.url(HOOKS, "/webhook"), json={"token": forged})
    assert hook.status_code == 404
    assert hook.json() == {"identity": None}
