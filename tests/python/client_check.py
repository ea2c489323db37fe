"""A backend in another language: Python with stubs generated from the proto.

Usage: client_check.py ADDRESS PROTO_DIR

Generates the stubs into a temporary directory, then does what a Python
backend does on two page views: MintCookie on the first, ResolveSession with
the cookie the browser sends back on the second. Exits non-zero on any
mismatch.
"""

import importlib
import importlib.resources
import sys
import tempfile

import grpc
from grpc_tools import protoc


def main() -> int:
    address, proto_dir = sys.argv[1], sys.argv[2]
    out = tempfile.mkdtemp(prefix="sb-stubs-")
    # grpc_tools ships the well-known types (google/protobuf/*.proto).
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    rc = protoc.main([
        "protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "sessionbridge/v1/sessionbridge.proto",
    ])
    if rc != 0:
        print(f"protoc failed with {rc}", file=sys.stderr)
        return 1
    sys.path.insert(0, out)
    pb = importlib.import_module("sessionbridge.v1.sessionbridge_pb2")
    rpc = importlib.import_module("sessionbridge.v1.sessionbridge_pb2_grpc")

    with grpc.insecure_channel(address) as channel:
        stub = rpc.SessionBridgeServiceStub(channel)
        ctx = pb.RequestContext(
            host="shop.example.com",
            url="https://shop.example.com/cart",
            user_agent="Mozilla/5.0 (Python client check)",
            client_ip="198.51.100.4",
        )
        minted = stub.MintCookie(pb.MintCookieRequest(context=ctx), timeout=10)
        assert minted.method == pb.RESOLUTION_METHOD_NEW, minted
        own = [c for c in minted.cookies if c.name in ("__Host-sbid", "__Secure-sbid")]
        assert len(own) == 1 and own[0].http_only and own[0].secure, minted.cookies
        assert own[0].set_cookie_header.startswith(own[0].name + "="), own[0]

        ctx.cookie_header = f"other=1; {own[0].name}={own[0].value}"
        resolved = stub.ResolveSession(pb.ResolveSessionRequest(context=ctx), timeout=10)
        assert resolved.method == pb.RESOLUTION_METHOD_COOKIE, resolved
        assert resolved.identity.client_id == minted.identity.client_id, resolved
        assert resolved.identity.session_id == minted.identity.session_id, resolved
        assert not resolved.new_session, resolved

        try:
            stub.ResolveSession(pb.ResolveSessionRequest(context=pb.RequestContext()), timeout=10)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            assert "context.host" in err.details(), err.details()
        else:
            raise AssertionError("a request without host was accepted")

    print(f"python client ok: {resolved.identity.client_id} resolved by cookie")
    return 0


if __name__ == "__main__":
    sys.exit(main())
