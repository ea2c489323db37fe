"""Fail open: with the sidecar gone or too slow, every page is still served,
without identity, and on_error hears of it; the helpers fail open too,
except webhook_identity, which raises so that the webhook is retried."""

from __future__ import annotations

import signal
import time
from typing import Callable, List

import httpx
import pytest

from conftest import FRAMEWORKS, App, Sidecar, own_cookies, set_cookies, wait_until

SHOP = "shop.example.com"
HOOKS = "hooks.example.com"
# A generous bound: failing open must not hang a page, but the machine is
# shared and slow at times.
SECONDS = 5.0


@pytest.mark.parametrize("kind", FRAMEWORKS)
def test_the_sidecar_killed_mid_test(
    kind: str,
    sidecar_factory: Callable[..., Sidecar],
    app_factory: Callable[..., List[App]],
    new_browser: Callable[[], httpx.Client],
) -> None:
    dying = sidecar_factory("dying")
    (app,) = app_factory([(kind, dying, {})])
    visitor = new_browser()
    first = visitor.get(app.url(SHOP)).json()["identity"]
    assert first and first["method"] == "NEW"

    dying.kill()
    started = time.monotonic()
    page = visitor.get(app.url(SHOP))
    assert time.monotonic() - started < SECONDS
    assert page.status_code == 200
    assert page.json()["identity"] is None
    assert not own_cookies(page)
    assert any(c.startswith("app_cookie=") for c in set_cookies(page))
    errors = visitor.get(app.url(SHOP, "/errors")).json()
    assert any(e["path"] == "/" and e["error"].startswith("UNAVAILABLE") for e in errors), errors
    assert "sessionbridge: ResolveSession failed: UNAVAILABLE" in app.log_text()
    assert "serving without identity" in app.log_text()

    # handoff: the plain destination.
    destination = "https://checkout.example.net/?cart=7"
    started = time.monotonic()
    leave = visitor.get(app.url(SHOP, "/go"), params={"to": destination})
    assert time.monotonic() - started < SECONDS
    assert leave.status_code == 303
    assert leave.headers["location"] == destination
    # link_login: no new result, the page goes on.
    login = visitor.get(app.url(SHOP, "/login"), params={"user": "carol"})
    assert login.status_code == 200
    assert login.json() == {"before": None, "after": None, "current": None}
    assert len(visitor.get(app.url(SHOP, "/errors")).json()) >= 3
    # webhook_identity raises: the webhook answers 5xx and will be retried.
    hook = new_browser().post(app.url(HOOKS, "/webhook"), json={"token": "anything"})
    assert hook.status_code >= 500

    # The sidecar comes back on the same address: the next pages find the
    # visitor again, without restarting the app.
    dying.restart()

    def recognised() -> object:
        identity = visitor.get(app.url(SHOP)).json()["identity"]
        return identity if identity and identity["method"] == "COOKIE" else None

    back = wait_until(recognised, 15, "the app reconnects to the sidecar")
    assert back["client_id"] == first["client_id"]


@pytest.mark.parametrize("kind", ["fastapi", "flask"])
def test_a_call_over_the_deadline_is_abandoned(
    kind: str,
    sidecar: Sidecar,
    app_factory: Callable[..., List[App]],
    new_browser: Callable[[], httpx.Client],
) -> None:
    # A sidecar that answers nothing while the page is served (stopped, so
    # the call cannot finish however fast the machine): the 50 ms deadline
    # passes. A microsecond deadline alone was met now and then.
    (app,) = app_factory([(kind, sidecar, {"SB_DEADLINE_MS": "50"})])
    visitor = new_browser()
    assert sidecar.proc is not None
    sidecar.proc.send_signal(signal.SIGSTOP)
    try:
        page = visitor.get(app.url(SHOP))
    finally:
        sidecar.proc.send_signal(signal.SIGCONT)
    assert page.status_code == 200
    assert page.json()["identity"] is None
    assert not own_cookies(page)
    errors = visitor.get(app.url(SHOP, "/errors")).json()
    assert [e["error"].split()[0] for e in errors] == ["DEADLINE_EXCEEDED"], errors
