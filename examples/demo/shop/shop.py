"""The demo shop: a small Python backend beside its own sessionbridge sidecar.

Every page calls ResolveSession with the request's context and sets the
cookies the sidecar returns. The checkout buttons call RecordHandoff and
redirect: straight to the checkout with the hand-off token in the URL, or
through a partner link service that drops every query parameter (the
checkout then finds the visitor through the referrer bridge).

The same server answers for several host names, as a site with subdomains
would: the shop itself, a second subdomain of the same site (`www`), and the
partner link service on another site.

Configuration comes from the environment (see examples/demo/run):
SIDECAR, SHOP_PORT, SHOP_HOSTS, LINKS_HOST, CHECKOUT_ORIGIN, TLS_CERT,
TLS_KEY, STUBS (directory of the generated Python stubs).
"""

import html
import os
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.environ["STUBS"])

import grpc  # noqa: E402
from sessionbridge.v1 import sessionbridge_pb2 as pb  # noqa: E402
from sessionbridge.v1 import sessionbridge_pb2_grpc as pb_grpc  # noqa: E402

SHOP_HOSTS = set(os.environ["SHOP_HOSTS"].split(","))
LINKS_HOST = os.environ["LINKS_HOST"]
CHECKOUT_ORIGIN = os.environ["CHECKOUT_ORIGIN"]
PORT = int(os.environ["SHOP_PORT"])

channel = grpc.insecure_channel(os.environ["SIDECAR"])
sidecar = pb_grpc.SessionBridgeServiceStub(channel)


def method_name(value):
    return pb.ResolutionMethod.Name(value).removeprefix("RESOLUTION_METHOD_")


class Shop(BaseHTTPRequestHandler):
    server_version = "demo-shop"

    def host(self):
        return (self.headers.get("Host") or "").split(":")[0].lower()

    def context(self):
        """The request as sessionbridge needs it: what the browser sent."""
        return pb.RequestContext(
            host=self.headers.get("Host", ""),
            url=f"https://{self.headers.get('Host', '')}{self.path}",
            referer=self.headers.get("Referer", ""),
            user_agent=self.headers.get("User-Agent", ""),
            cookie_header=self.headers.get("Cookie", ""),
            client_ip=self.client_address[0],
            accept_language=self.headers.get("Accept-Language", ""),
        )

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = urllib.parse.urlsplit(self.path).path
        try:
            if self.host() == LINKS_HOST and path == "/r":
                return self.partner_redirect()
            if self.host() not in SHOP_HOSTS:
                return self.plain(404, "unknown host")
            if path == "/":
                return self.page()
            if path == "/checkout":
                return self.checkout(through_partner=False)
            if path == "/checkout-partner":
                return self.checkout(through_partner=True)
            return self.plain(404, "not found")
        except grpc.RpcError as e:
            return self.plain(502, f"sessionbridge: {e.code().name}: {e.details()}")

    def page(self):
        r = sidecar.ResolveSession(
            pb.ResolveSessionRequest(context=self.context()), timeout=2
        )
        rejected = "".join(
            f"<li>{pb.EvidenceKind.Name(x.kind).removeprefix('EVIDENCE_KIND_')}: "
            f"{pb.RejectionReason.Name(x.reason).removeprefix('REJECTION_REASON_')}"
            f" ({html.escape(x.detail)})</li>"
            for x in r.rejected
        )
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo shop</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
dt{{font-weight:bold}} a.button{{display:inline-block;margin:.5em 1em .5em 0;padding:.6em 1em;
background:#2b6;color:#fff;text-decoration:none;border-radius:4px}}</style></head>
<body>
<h1>Demo shop <small>({html.escape(self.host())})</small></h1>
<p>An espresso machine, 199 €.</p>
<dl>
<dt>client id</dt><dd id="client-id">{r.identity.client_id}</dd>
<dt>session id</dt><dd id="session-id">{r.identity.session_id}</dd>
<dt>session number</dt><dd id="session-number">{r.identity.session_number}</dd>
<dt>resolved by</dt><dd id="method">{method_name(r.method)}</dd>
</dl>
<ul id="rejected">{rejected}</ul>
<a class="button" id="checkout" href="/checkout">Checkout</a>
<a class="button" id="checkout-partner" href="/checkout-partner">Checkout through a partner link</a>
</body></html>"""
        self.send(200, body, r.cookies)

    def checkout(self, through_partner):
        r = sidecar.RecordHandoff(
            pb.RecordHandoffRequest(
                context=self.context(), destination_url=f"{CHECKOUT_ORIGIN}/start"
            ),
            timeout=2,
        )
        target = r.decorated_url
        if through_partner:
            target = f"https://{LINKS_HOST}:{PORT}/r?" + urllib.parse.urlencode(
                {"to": r.decorated_url}
            )
        self.send_response(303)
        self.send_header("Location", target)
        for c in r.cookies:
            self.send_header("Set-Cookie", c.set_cookie_header)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def partner_redirect(self):
        """A link service that forwards to the checkout and, like many
        trackers and shorteners, drops the query string on the way."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        to = urllib.parse.urlsplit((query.get("to") or [""])[0])
        if f"{to.scheme}://{to.netloc}" != CHECKOUT_ORIGIN:
            return self.plain(400, "to: only the demo checkout")
        self.send_response(302)
        self.send_header("Location", f"{CHECKOUT_ORIGIN}{to.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send(self, status, body, cookies=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        for c in cookies:
            self.send_header("Set-Cookie", c.set_cookie_header)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def plain(self, status, text):
        data = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write(f"shop: {self.host()} {fmt % args}\n")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Shop)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    print(f"shop listening on https://127.0.0.1:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
