"""The Django test app, one module: its WSGI and its ASGI application, each
wrapped by the package's middleware. Views are sync (under ASGI Django runs
them in a thread), so they use the blocking helpers."""

from __future__ import annotations

import json
from typing import Any, Iterator

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="sessionbridge-tests-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

import sessionbridge  # noqa: E402
import common  # noqa: E402

NAME = "django"


def index(request: HttpRequest) -> HttpResponse:
    response = JsonResponse(common.page(NAME, request))
    response.set_cookie(*common.APP_COOKIE, secure=True, httponly=True)
    return response


def static_info(request: HttpRequest) -> HttpResponse:
    return JsonResponse(common.page(NAME, request))


def stream(request: HttpRequest) -> HttpResponse:
    result = sessionbridge.current(request)

    def body() -> Iterator[bytes]:
        for i in range(common.STREAM_CHUNKS):
            yield f"chunk {i}\n".encode()
        yield f"client_id={result.client_id if result else ''}\n".encode()

    return StreamingHttpResponse(body(), content_type="text/plain")


def go(request: HttpRequest) -> HttpResponse:
    h = sessionbridge.handoff(request, request.GET["to"], **common.handoff_options(request.GET))
    response = HttpResponseRedirect(h.url)
    response.status_code = 303
    return response


def handoff(request: HttpRequest) -> HttpResponse:
    h = sessionbridge.handoff(request, request.GET["to"], **common.handoff_options(request.GET))
    return JsonResponse(common.handoff_answer(h, request))


def webhook(request: HttpRequest) -> HttpResponse:
    result = sessionbridge.webhook_identity(request, json.loads(request.body)["token"])
    return JsonResponse({"identity": common.identity(result)}, status=200 if result else 404)


def login(request: HttpRequest) -> HttpResponse:
    before = sessionbridge.current(request)
    after = sessionbridge.link_login(request, request.GET.get("user", ""), email=request.GET.get("email", ""))
    return JsonResponse(
        {
            "before": common.identity(before),
            "after": common.identity(after),
            "current": common.identity(sessionbridge.current(request)),
        }
    )


def forget_me(request: HttpRequest) -> HttpResponse:
    r = common.client().forget_visitor(request)
    return JsonResponse(r and {"found": r.found, "identities_erased": r.identities_erased}, safe=False)


def errors(request: HttpRequest) -> HttpResponse:
    return JsonResponse(common.errors(), safe=False)


def csrf_exempt_post(view: Any) -> Any:
    view.csrf_exempt = True
    return view


urlpatterns = [
    path("", index),
    path("static/info", static_info),
    path("stream", stream),
    path("go", go),
    path("handoff", handoff),
    path("webhook", csrf_exempt_post(webhook)),
    path("login", login),
    path("forget-me", forget_me),
    path("errors", errors),
]


def make_wsgi() -> Any:
    from django.core.wsgi import get_wsgi_application

    global NAME
    NAME = "django-wsgi"
    return sessionbridge.WSGIMiddleware(get_wsgi_application(), **common.options())


def make_asgi() -> Any:
    from django.core.asgi import get_asgi_application

    global NAME
    NAME = "django-asgi"
    return sessionbridge.ASGIMiddleware(get_asgi_application(), **common.options(asgi=True))
