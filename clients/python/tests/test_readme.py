"""The Python snippets of the top-level README ("Add it to your app"): each
one, as written (only the sidecar's address changes), served over HTTPS on
a real port against the real sidecar, and visited twice by a browser with a
cookie jar. The Django snippet is its asgi.py: the test adds the settings
and one view, which a Django project has already."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, List

import httpx
import pytest

from conftest import ROOT, App, Sidecar, own_cookies

SHOP = "shop.example.com"
ADDRESS = "127.0.0.1:50051"

DJANGO_PROJECT = '''\
import os
import sys

import django
from django.conf import settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
settings.configure(
    SECRET_KEY="readme-test", ROOT_URLCONF="readme_django_urls", ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True,
)
django.setup()

# The README's asgi.py:
{snippet}
app = application
'''

DJANGO_URLS = '''\
from django.http import JsonResponse
from django.urls import path

import sessionbridge


def home(request):
    r = sessionbridge.current(request)  # as the README says views do
    return JsonResponse({"client_id": r and r.client_id})


urlpatterns = [path("", home)]
'''


def snippets() -> Dict[str, str]:
    """The README's `<!-- add-it: NAME -->` blocks, by name."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Add it to your app\n", 1)[1].split("\n## ", 1)[0]
    found = dict(re.findall(r"<!-- add-it: (\w+) -->\n```\w+\n(.*?)```", section, re.S))
    assert set(found) == {"fastapi", "flask", "django", "express", "fastify"}, sorted(found)
    return found


def asked_again(call: Callable[[], httpx.Response]) -> httpx.Response:
    """The snippets keep the 50 ms default deadline, which the debug build of
    the sidecar on a busy machine may miss: the page is then served without
    identity, as it should be, and is asked for again (a few times)."""
    for _ in range(5):
        response = call()
        if response.status_code != 200 or response.json().get("client_id") is not None:
            return response
    return response


@pytest.mark.parametrize("name", ["fastapi", "flask", "django"])
def test_the_readme_snippet_gives_every_request_an_identity(
    name: str,
    sidecar: Sidecar,
    app_factory: Callable[..., List[App]],
    workdir: Path,
    new_browser: Callable[[], httpx.Client],
) -> None:
    code = snippets()[name]
    assert code.count(ADDRESS) == 1, code
    code = code.replace(ADDRESS, sidecar.address)
    path = workdir / f"readme_{name}.py"
    if name == "django":
        (workdir / "readme_django_urls.py").write_text(DJANGO_URLS)
        code = DJANGO_PROJECT.format(snippet=code)
    path.write_text(code)
    (app,) = app_factory([(f"file:{path}", sidecar, {})])

    visitor = new_browser()
    first = asked_again(lambda: visitor.get(app.url(SHOP)))
    assert first.status_code == 200, app.log_text()[-3000:]
    client_id: Any = first.json()["client_id"]
    assert re.fullmatch(r"\d+\.\d+", client_id), first.text
    assert own_cookies(first)

    # The cookie the middleware set comes back: the same visitor.
    second = asked_again(lambda: visitor.get(app.url(SHOP, "/")))
    assert second.json() == {"client_id": client_id}
    # Another browser is another visitor.
    other = asked_again(lambda: new_browser().get(app.url(SHOP))).json()["client_id"]
    assert other is not None and other != client_id
