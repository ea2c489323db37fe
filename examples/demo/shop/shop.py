"""The demo shop: a small Flask backend beside its own sessionbridge sidecar,
on the sessionbridge package (clients/python).

The package's WSGI middleware resolves every page (ResolveSession) and adds
the sidecar's cookies to the response; the page shows what it answered. The
checkout buttons call `sessionbridge.handoff` (RecordHandoff) and redirect:
straight to the checkout with the hand-off token in the URL, or through a
partner link service that drops every query parameter (the checkout then
finds the visitor through the referrer bridge).

The same server answers for several host names, as a site with subdomains
would: the shop itself, a second subdomain of the same site (`www`), and the
partner link service on another site, which is not the shop's and makes no
call (the middleware's `skip`).

Configuration comes from the environment (see examples/demo/run):
SIDECAR, SHOP_PORT, SHOP_HOSTS, LINKS_HOST, CHECKOUT_ORIGIN, TLS_CERT,
TLS_KEY.
"""

import html
import logging
import os
import urllib.parse

from flask import Flask, Response, redirect, request
from werkzeug.serving import make_server

import sessionbridge

SHOP_HOSTS = set(os.environ["SHOP_HOSTS"].split(","))
LINKS_HOST = os.environ["LINKS_HOST"]
CHECKOUT_ORIGIN = os.environ["CHECKOUT_ORIGIN"]
PORT = int(os.environ["SHOP_PORT"])


def host_of(host_header):
    return host_header.split(":")[0].lower()


def not_a_shop_page(incoming):
    """The link service and unknown hosts get no identity."""
    return host_of(incoming.header("host")) not in SHOP_HOSTS


app = Flask(__name__)
app.wsgi_app = sessionbridge.WSGIMiddleware(
    app.wsgi_app,
    target=os.environ["SIDECAR"],
    skip=not_a_shop_page,
    # Above the default 50 ms: the demo runs a debug build of the sidecar,
    # on machines shared with the browser under test.
    deadline_ms=500,
)


@app.before_request
def by_host():
    host = host_of(request.host)
    if host == LINKS_HOST and request.path == "/r":
        return partner_redirect()
    if host not in SHOP_HOSTS:
        return plain(404, "unknown host")
    return None


@app.get("/")
def page():
    r = sessionbridge.current(request)  # None when the sidecar failed
    rejected = "".join(
        f"<li>{x.kind}: {x.reason} ({html.escape(x.detail)})</li>" for x in (r.rejected if r else ())
    )
    none = "none (the sidecar did not answer)"
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo shop</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
dt{{font-weight:bold}} a.button{{display:inline-block;margin:.5em 1em .5em 0;padding:.6em 1em;
background:#2b6;color:#fff;text-decoration:none;border-radius:4px}}</style></head>
<body>
<h1>Demo shop <small>({html.escape(host_of(request.host))})</small></h1>
<p>An espresso machine, 199 €.</p>
<dl>
<dt>client id</dt><dd id="client-id">{r.client_id if r else none}</dd>
<dt>session id</dt><dd id="session-id">{r.session_id if r else ""}</dd>
<dt>session number</dt><dd id="session-number">{r.session_number if r else ""}</dd>
<dt>resolved by</dt><dd id="method">{r.method if r else ""}</dd>
</dl>
<ul id="rejected">{rejected}</ul>
<a class="button" id="checkout" href="/checkout">Checkout</a>
<a class="button" id="checkout-partner" href="/checkout-partner">Checkout through a partner link</a>
</body></html>"""
    return Response(body, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


@app.get("/checkout")
def checkout():
    return leave(through_partner=False)


@app.get("/checkout-partner")
def checkout_partner():
    return leave(through_partner=True)


def leave(through_partner):
    # The destination decorated with a hand-off token (the plain destination
    # when the sidecar failed); the middleware adds the cookies.
    target = sessionbridge.handoff(request, f"{CHECKOUT_ORIGIN}/start").url
    if through_partner:
        target = f"https://{LINKS_HOST}:{PORT}/r?" + urllib.parse.urlencode({"to": target})
    return redirect(target, 303)


def partner_redirect():
    """A link service that forwards to the checkout and, like many trackers
    and shorteners, drops the query string on the way."""
    to = urllib.parse.urlsplit(request.args.get("to", ""))
    if f"{to.scheme}://{to.netloc}" != CHECKOUT_ORIGIN:
        return plain(400, "to: only the demo checkout")
    return redirect(f"{CHECKOUT_ORIGIN}{to.path}", 302)


def plain(status, text):
    return Response(text + "\n", status=status, content_type="text/plain; charset=utf-8")


def main():
    logging.basicConfig(level=logging.INFO, format="shop: %(message)s")
    server = make_server(
        "127.0.0.1", PORT, app, threaded=True, ssl_context=(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
    )
    print(f"shop listening on https://127.0.0.1:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
