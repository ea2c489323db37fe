"""Test harness: the real sidecar binary, a throwaway certificate authority,
the test apps served over HTTPS on real ports (tests/apps/serve.py), and
HTTP clients with a cookie jar that reach the apps by real-looking host
names.

The host names (shop.example.com, checkout.example.net, ...) resolve to
127.0.0.1 inside this process only: socket.getaddrinfo is patched here,
nothing on the machine changes.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import httpx
import pytest

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
ROOT = HERE.parent.parent.parent
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or "/var/tmp/sessionbridge-target")
SIDECAR_BIN = Path(os.environ.get("SESSIONBRIDGE_BIN") or TARGET_DIR / "debug" / "sessionbridge")
ALLOWED_DOMAINS = "example.com,example.net,example.org"
DOMAINS = ("example.com", "example.net", "example.org")
FRAMEWORKS = ["fastapi", "flask", "django-asgi", "django-wsgi"]
STARTUP_SECONDS = 30


# -- host names -----------------------------------------------------------

_real_getaddrinfo = socket.getaddrinfo


def _local_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and any(name == d or name.endswith("." + d) for d in DOMAINS):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_getaddrinfo  # type: ignore[assignment]


# -- processes ------------------------------------------------------------


def _read_line(proc: subprocess.Popen[str], prefix: str, log: Path, what: str) -> str:
    """The rest of the first stdout line starting with `prefix`."""
    found: List[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line[len(prefix) :].strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(STARTUP_SECONDS)
    if not found:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{what} did not start; log {log}:\n{log.read_text()[-4000:]}")
    return found[0]


class Sidecar:
    """The real sessionbridge binary with its own sled store."""

    def __init__(self, workdir: Path, keys: Path, name: str, *extra: str) -> None:
        self.workdir, self.keys, self.name, self.extra = workdir, keys, name, extra
        self.data = workdir / f"{name}-data"
        self.log = workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen[str]] = None
        self.address = ""

    def start(self, listen: str = "127.0.0.1:0") -> Sidecar:
        if not SIDECAR_BIN.is_file():
            pytest.fail(f"no sidecar binary at {SIDECAR_BIN}: build it, or set SESSIONBRIDGE_BIN")
        self.proc = subprocess.Popen(
            [
                str(SIDECAR_BIN), "serve", "--listen", listen, "--keys", str(self.keys),
                "--data-dir", str(self.data), "--allowed-domains", ALLOWED_DOMAINS, *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log.open("a"),
            text=True,
        )
        self.address = _read_line(self.proc, "sessionbridge listening on ", self.log, f"sidecar {self.name}")
        return self

    def kill(self) -> None:
        """SIGKILL: the sidecar dies as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        """Starts again on the same address, store and keys."""
        self.kill()
        self.start(self.address)


_app_numbers = iter(range(1, 1_000_000))


class App:
    """A test app (tests/apps/serve.py) in its own process."""

    def __init__(self, kind: str, sidecar: Sidecar, certs: Dict[str, Path], workdir: Path, **env: str) -> None:
        self.kind = kind
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(kind).name)
        self.log = workdir / f"app-{safe}-{next(_app_numbers)}.log"
        environment = dict(os.environ)
        environment.update(
            SB_APP=kind,
            SB_SIDECAR=sidecar.address,
            SB_PORT="0",
            SB_TLS_CERT=str(certs["cert"]),
            SB_TLS_KEY=str(certs["key"]),
            # Above the default 50 ms: a debug build of the sidecar on a
            # shared two-core machine may take longer now and then, and
            # these tests are about behaviour, not latency
            # (test_fail_open.py checks the deadline itself).
            SB_DEADLINE_MS="2000",
            PYTHONUNBUFFERED="1",
        )
        environment.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, str(APPS / "serve.py")],
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            env=environment,
            text=True,
        )

    def wait(self) -> App:
        url = _read_line(self.proc, "listening on ", self.log, f"app {self.kind}")
        self.port = int(url.rsplit(":", 1)[1])
        return self

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text()


# -- fixtures -------------------------------------------------------------


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sessionbridge")


@pytest.fixture(scope="session")
def certs(workdir: Path) -> Dict[str, Path]:
    """A throwaway CA and one certificate for every test host name, as the
    demo makes them (examples/demo/run)."""
    d = workdir / "tls"
    d.mkdir()
    san = ",".join(f"DNS:{d},DNS:*.{d}" for d in DOMAINS)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sessionbridge tests CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=shop.example.com",
            "-keyout", str(d / "site.key"), "-out", str(d / "site.csr"))
    (d / "site.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(d / "site.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", str(d / "site.ext"), "-out", str(d / "site.pem"))
    return {"ca": d / "ca.pem", "cert": d / "site.pem", "key": d / "site.key", "dir": d}


def issue(certs: Dict[str, Path], name: str, san: str, usage: str) -> Dict[str, Path]:
    """Another certificate from the test CA: `usage` serverAuth or clientAuth."""
    d = certs["dir"]
    key, csr, ext, pem = (d / f"{name}.{x}" for x in ("key", "csr", "ext", "pem"))
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(certs["ca"]), "-CAkey", str(d / "ca.key"),
                    "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(pem)],
                   check=True, capture_output=True)
    return {"cert": pem, "key": key}


@pytest.fixture(scope="session")
def keys(workdir: Path) -> Path:
    """One key file, shared by every sidecar: they recognise each other's
    cookies and hand-off tokens."""
    path = workdir / "keys.json"
    subprocess.run([str(SIDECAR_BIN), "keygen", "--out", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def sidecar_factory(workdir: Path, keys: Path) -> Iterator[Callable[..., Sidecar]]:
    started: List[Sidecar] = []
    counter = iter(range(1000))

    def make(name: str, *extra: str) -> Sidecar:
        s = Sidecar(workdir, keys, f"{name}-{next(counter)}", *extra).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.kill()


@pytest.fixture(scope="session")
def app_factory(workdir: Path, certs: Dict[str, Path]) -> Iterator[Callable[..., List[App]]]:
    """Starts apps in parallel: app_factory([(kind, sidecar, env), ...])."""
    started: List[App] = []

    def make(specs: List[Any]) -> List[App]:
        apps = [App(kind, sidecar, certs, workdir, **env) for kind, sidecar, env in specs]
        started.extend(apps)
        return [a.wait() for a in apps]

    yield make
    for a in started:
        a.stop()


@pytest.fixture(scope="session")
def sidecar(sidecar_factory: Callable[..., Sidecar]) -> Sidecar:
    """The sidecar of the main apps."""
    return sidecar_factory("main")


@pytest.fixture(scope="session")
def main_apps(sidecar: Sidecar, app_factory: Callable[..., List[App]]) -> Dict[str, App]:
    """One app per framework on the main sidecar, default options."""
    apps = app_factory([(kind, sidecar, {}) for kind in FRAMEWORKS])
    return dict(zip(FRAMEWORKS, apps))


@pytest.fixture(params=FRAMEWORKS)
def app(request: pytest.FixtureRequest, main_apps: Dict[str, App]) -> App:
    return main_apps[request.param]


@pytest.fixture(scope="session")
def tls_context(certs: Dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs["ca"]))


@pytest.fixture
def browser(tls_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    """A fresh visitor: an HTTP client with its own cookie jar, trusting
    the test CA, following no redirect by itself."""
    with httpx.Client(verify=tls_context, timeout=20) as client:
        yield client


@pytest.fixture
def new_browser(tls_context: ssl.SSLContext) -> Iterator[Callable[[], httpx.Client]]:
    clients: List[httpx.Client] = []

    def make() -> httpx.Client:
        c = httpx.Client(verify=tls_context, timeout=20)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def set_cookies(response: httpx.Response) -> List[str]:
    return response.headers.get_list("set-cookie")


def own_cookies(response: httpx.Response) -> List[str]:
    """The sidecar's identity cookies among the response's Set-Cookie."""
    return [c for c in set_cookies(response) if c.split("=", 1)[0].endswith("sbid")]


def wait_until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s (last: {last!r})")
