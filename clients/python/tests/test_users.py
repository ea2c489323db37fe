"""Logins and erasure: link_login in each framework, then the clients'
lookup_by_user, forget_user and forget_visitor against the same sidecar."""

from __future__ import annotations

import asyncio
import uuid
from typing import Callable, Dict

import httpx
import pytest

import sessionbridge
from conftest import App, Sidecar, own_cookies

SHOP = "shop.example.com"


def user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def test_link_login_then_lookup_by_user_finds_the_client(app: App, sidecar: Sidecar, browser: httpx.Client) -> None:
    first = browser.get(app.url(SHOP)).json()["identity"]
    alice = user()
    login = browser.get(app.url(SHOP, "/login"), params={"user": alice, "email": f"{alice}@example.org"}).json()
    assert login["before"]["client_id"] == first["client_id"]
    assert login["before"]["user_id"] == ""
    assert login["after"]["user_id"] == alice
    assert login["after"]["client_id"] == first["client_id"]
    # The request's result was replaced.
    assert login["current"] == login["after"]

    client = sessionbridge.Client(sidecar.address)
    found = client.lookup_by_user(alice)
    assert found is not None
    assert found.identity.client_id == first["client_id"]
    by_email = client.lookup_by_user(email=f"{alice}@example.org")
    assert by_email is not None and by_email.identity.client_id == first["client_id"]

    async def lookup() -> object:
        return await sessionbridge.AsyncClient(sidecar.address).lookup_by_user(alice)

    found_async = asyncio.run(lookup())
    assert isinstance(found_async, sessionbridge.v1.sessionbridge_pb2.LookupByUserResponse)
    assert found_async.identity.client_id == first["client_id"]
    assert client.lookup_by_user(user()) is None


def test_link_login_on_a_first_visit_keeps_the_identity_just_minted(app: App, browser: httpx.Client) -> None:
    bob = user()
    response = browser.get(app.url(SHOP, "/login"), params={"user": bob})
    login = response.json()
    assert login["before"]["method"] == "NEW"
    # The second call saw the cookie the response is about to set.
    assert login["after"]["client_id"] == login["before"]["client_id"]
    assert login["after"]["user_id"] == bob
    # One identity cookie, not one per call.
    assert len(own_cookies(response)) == 1
    again = browser.get(app.url(SHOP)).json()["identity"]
    assert again["client_id"] == login["before"]["client_id"]
    assert again["user_id"] == bob


def test_forget_user_erases_the_linked_identity(main_apps: Dict[str, App], sidecar: Sidecar, browser: httpx.Client) -> None:
    app = main_apps["flask"]
    carol = user()
    first = browser.get(app.url(SHOP, "/login"), params={"user": carol}).json()["after"]
    client = sessionbridge.Client(sidecar.address)
    assert client.lookup_by_user(carol) is not None

    erased = client.forget_user(carol)
    assert erased.found is True
    assert erased.identities_erased == 1
    assert client.lookup_by_user(carol) is None
    # The browser's cookie now names an erased visitor: a new one is minted.
    after = browser.get(app.url(SHOP)).json()["identity"]
    assert after["client_id"] != first["client_id"]
    assert after["method"] == "NEW"
    assert client.forget_user(carol).found is False


@pytest.mark.parametrize("kind", ["fastapi", "django-wsgi"])
def test_forget_visitor_erases_the_visitor_and_deletes_the_cookie(
    kind: str, main_apps: Dict[str, App], new_browser: Callable[[], httpx.Client]
) -> None:
    app = main_apps[kind]
    visitor = new_browser()
    first = visitor.get(app.url(SHOP)).json()["identity"]
    forget = visitor.get(app.url(SHOP, "/forget-me"))
    assert forget.json() == {"found": True, "identities_erased": 1}
    deletions = own_cookies(forget)
    assert deletions and all("Max-Age=0" in c for c in deletions), deletions
    after = visitor.get(app.url(SHOP)).json()["identity"]
    assert after["method"] == "NEW"
    assert after["client_id"] != first["client_id"]


def test_forget_visitor_without_an_own_cookie_is_none(sidecar: Sidecar) -> None:
    """NOT_FOUND is an answer here, as for lookup_by_user: no one to forget."""
    strangers = [
        sessionbridge.v1.sessionbridge_pb2.RequestContext(host=SHOP, user_agent="test"),
        sessionbridge.v1.sessionbridge_pb2.RequestContext(host=SHOP, cookie_header="__Secure-sbid=forged"),
    ]
    client = sessionbridge.Client(sidecar.address)
    for context in strangers:
        assert client.forget_visitor(context) is None

    async def forget_async() -> list:
        async_client = sessionbridge.AsyncClient(sidecar.address)
        return [await async_client.forget_visitor(context) for context in strangers]

    assert asyncio.run(forget_async()) == [None, None]


def test_the_client_checks_its_arguments(sidecar: Sidecar) -> None:
    client = sessionbridge.Client(sidecar.address)
    with pytest.raises(ValueError):
        client.lookup_by_user()
    with pytest.raises(ValueError):
        client.forget_user("a", email="a@example.org")
