"""Several `gateway serve` replicas behind a real nginx (round robin), for the replica test.

* `Replica`: one `gateway serve` process (granian, one worker) on its own port; `kill()` is SIGKILL (a
  crashed replica: no drain), `start()` brings a new process up on the same port, ready by `/readyz`.
* `round_robin_nginx(tmp, ports)`: nginx in front of the replicas; it retries an idempotent request on
  the next replica when one refuses connections, as a production balancer does.
* `OffsetClock`: the emulator's clock, the wall clock plus an offset a test moves, so the emulator can
  mint a token that is already expired for the gateways (which read the wall clock in their processes).
* `browser_cookies(clerk, ...)`: the Cookie header of a browser holding a session, exactly the cookies
  Clerk's handshake leaves (`session_directives`), whose token may have just expired.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gateway.emulator.cookies import DirectiveInputs, session_directives
from gateway.emulator.server import EmulatorServer
from gateway.emulator.tokens import mint_session_token
from tests.support.servers import wait_until_ready
from tests.support.upstream import unused_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


class OffsetClock:
    """Wall-clock seconds plus `offset` (thread-safe: the emulator reads it from its own thread)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    @contextlib.contextmanager
    def shifted(self, seconds: float) -> Iterator[None]:
        with self._lock:
            self._offset += seconds
        try:
            yield
        finally:
            with self._lock:
                self._offset -= seconds


@dataclass
class BrowserSession:
    session_id: str
    cookie: str


def browser_cookies(clerk: EmulatorServer, clock: OffsetClock, user_id: str, *, age: float = 0.0) -> BrowserSession:
    """A browser signed in as `user_id`, its session token minted `age` seconds ago (expired past 60 s)."""
    state = clerk.state
    user = state.user(user_id)
    assert user is not None, user_id
    with clock.shifted(-age):
        dev_browser, client = state.new_dev_browser()
        session = state.create_session(client, user, "password")
        token = mint_session_token(state, clerk.instance.keys, session, authorized_party=None,
                                   issuer=clerk.config.issuer)  # fmt: skip
        issued_at = state.now()
    directives = session_directives(
        DirectiveInputs(
            suffix=clerk.cookie_suffix, suffixed=True, production=False, cookie_domain=None,
            session_token=token, client_uat=issued_at, refresh_token=session.refresh_token, dev_browser=dev_browser,
        )
    )  # fmt: skip
    pairs = [directive.split(";", 1)[0] for directive in directives]
    return BrowserSession(session.id, "; ".join(pair for pair in pairs if not pair.endswith("=")))


@dataclass
class Replica:
    name: str
    environment: dict[str, str]
    log: Path
    port: int = field(default_factory=unused_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        environment = {**self.environment, "GATEWAY_LISTEN": f"127.0.0.1:{self.port}", "GATEWAY_WORKERS": "1"}
        command = [sys.executable, "-m", "gateway", "serve", "--server", "granian"]
        with self.log.open("ab") as output:
            # A session of its own, so that `kill` reaches granian's worker process too (a crashed host).
            self.process = subprocess.Popen(
                command, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        wait_until_ready(self.process, f"{self.url}/__gateway/readyz", self.log, timeout)

    def kill(self) -> None:
        """SIGKILL to the server and its worker at once: no drain, connections reset mid-request."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self._wait_port_free()

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then whatever is left of its process group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._wait_port_free()

    def _wait_port_free(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.01)
        raise AssertionError(f"{self.name}: something still listens on {self.port} after it was stopped")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        text = httpx.get(f"{self.url}/__gateway/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{", 1)[0] != name:
                continue
            if all(f'{key}="{wanted}"' in series for key, wanted in labels.items()):
                total += float(value)
        return total


@contextlib.contextmanager
def round_robin_nginx(tmp: Path, ports: list[int]) -> Iterator[str]:
    """nginx on a free port spreading requests over `ports` in turn (keep-alive to each replica)."""
    assert NGINX is not None
    port = unused_port()
    servers = "".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;\n" for p in ports)
    (tmp / "nginx.conf").write_text(
        f"daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log warn; worker_processes 1;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};\n"
        f"fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n"
        f"upstream gateways {{ {servers} keepalive 32; }}\n"
        f"server {{ listen 127.0.0.1:{port};\n"
        "  location / { proxy_pass http://gateways; proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
        "    proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $remote_addr;\n"
        "    proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $http_host; } } }\n"
    )
    process = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise AssertionError(f"nginx exited with {process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            if time.monotonic() > deadline:
                raise AssertionError("nginx did not listen within 20s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def environment_for_replicas() -> dict[str, str]:
    """This process's environment less anything that would configure the replicas behind the test's back."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("CLERK_", "GATEWAY_"))}
