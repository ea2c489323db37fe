"""The `user` and `consent` callbacks (async ones under ASGI), and Global
Privacy Control, as the sidecar applies them."""

from __future__ import annotations

import uuid
from typing import Callable, Dict, List

import httpx
import pytest

import sessionbridge
from conftest import App, Sidecar, own_cookies

SHOP = "shop.example.com"
KINDS = ["fastapi", "flask", "django-asgi"]


@pytest.fixture(scope="module")
def with_callbacks(sidecar: Sidecar, app_factory: Callable[..., List[App]]) -> Dict[str, App]:
    apps = app_factory([(kind, sidecar, {"SB_CALLBACKS": "1"}) for kind in KINDS])
    return dict(zip(KINDS, apps))


@pytest.mark.parametrize("kind", KINDS)
def test_the_user_callback_links_the_login(
    kind: str, with_callbacks: Dict[str, App], sidecar: Sidecar, browser: httpx.Client
) -> None:
    app = with_callbacks[kind]
    anonymous = browser.get(app.url(SHOP)).json()["identity"]
    assert anonymous["user_id"] == ""
    dave = f"dave-{uuid.uuid4().hex[:8]}"
    logged_in = browser.get(app.url(SHOP), headers={"X-Test-User": dave}).json()["identity"]
    assert logged_in["user_id"] == dave
    assert logged_in["client_id"] == anonymous["client_id"]
    found = sessionbridge.Client(sidecar.address).lookup_by_user(dave)
    assert found is not None and found.identity.client_id == anonymous["client_id"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_consent_callback_and_global_privacy_control(
    kind: str, with_callbacks: Dict[str, App], new_browser: Callable[[], httpx.Client]
) -> None:
    app = with_callbacks[kind]
    refused = new_browser().get(app.url(SHOP), headers={"X-Test-Consent": "denied"})
    identity = refused.json()["identity"]
    assert identity["method"] == "NO_CONSENT"
    assert identity["persisted"] is False
    assert identity["consent"]["analytics_storage"] == "DENIED"
    assert not own_cookies(refused)

    granted = new_browser().get(app.url(SHOP), headers={"X-Test-Consent": "granted", "Sec-GPC": "1"})
    identity = granted.json()["identity"]
    assert identity["method"] == "NEW"
    assert identity["consent"]["analytics_storage"] == "GRANTED"
    # Global Privacy Control denies the ad signals whatever consent says.
    assert identity["consent"]["ad_storage"] == "DENIED"
    assert own_cookies(granted)
