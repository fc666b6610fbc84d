"""The shipped nginx forward-auth recipe, run for real: nginx `auth_request` in front of the echo app,
the gateway answering `/__gateway/auth`, a browser signing in through it all."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from tests.integration import forward_auth_cases as cases
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.integration.test_gateway_flows import echoed, sign_in
from tests.support.browser import Browser
from tests.support.forward_auth import ALL_PRESETS, Front
from tests.support.upstream import EchoUpstream

RECIPE = Path(__file__).resolve().parents[2] / "config" / "nginx.forward-auth.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed: forward-auth recipe not run")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def running_nginx(tmp: Path, upstream: str, gateway: str) -> AsyncIterator[str]:
    port = free_port()
    server = (RECIPE.read_text().replace("127.0.0.1:3000", upstream).replace("127.0.0.1:9000", gateway)
              .replace("listen 8080;", f"listen 127.0.0.1:{port};"))
    (tmp / "site.conf").write_text(server)
    (tmp / "nginx.conf").write_text(
        f"daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log warn; events {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};\n"
        f"fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp}; include {tmp}/site.conf; }}\n")
    assert NGINX is not None
    process = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            await asyncio.sleep(0.025)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_sign_in_through_nginx_auth_request_reaches_the_app_with_identity(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser], tmp_path: Path,
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url), "app.test:8080")
    gateway_address = gateway.url.removeprefix("http://")
    async with running_nginx(tmp_path, upstream.url.removeprefix("http://"), gateway_address) as nginx_url:
        front = RunningGateway(nginx_url, "app.test:8080", gateway.settings)
        browser = new_browser(front)
        landed = await sign_in(browser, front, path="/reports")
        assert landed.status_code == 200
        identity = echoed(landed)
        assert identity["x-clerk-user-id"] == "user_alice"
        assert identity["x-clerk-org-role"] == "org:admin"
        api = await browser.fetch("GET", f"{front.origin}/api/items")
        assert api.status_code == 200
        anonymous = new_browser(front)
        refused = await anonymous.fetch("GET", f"{front.origin}/api/items")
        assert refused.status_code == 401


async def test_the_presets_headers_reach_the_app_through_nginx_and_a_clients_never_do(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser], tmp_path: Path,
) -> None:
    mapping = '{"presets": ["remote-user", "grafana"], "user": "username"}'
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_IDENTITY=mapping), "app.test:8080")
    app, gateway_address = upstream.url.removeprefix("http://"), gateway.url.removeprefix("http://")
    async with running_nginx(tmp_path, app, gateway_address) as url:
        front = RunningGateway(url, "app.test:8080", gateway.settings)
        browser = new_browser(front)
        assert (await sign_in(browser, front, path="/reports")).status_code == 200
        forged = {"Remote-User": "root", "X-WEBAUTH-USER": "admin", "X-Auth-Request-User": "root"}
        identity = echoed(await browser.fetch("GET", f"{front.origin}/api/items", headers=forged))
        assert (identity["remote-user"], identity["remote-name"], identity["x-webauth-user"]) == (
            "alice", "Alice Admin", "alice")
        assert "x-auth-request-user" not in identity and "x-clerk-user-id" not in identity


@pytest.fixture
async def nginx_front(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[Front]:
    settings = gateway_settings(dev_clerk, upstream.url, GATEWAY_IDENTITY=ALL_PRESETS)
    gateway = await run_gateway(settings, "app.test:8080")
    app, gateway_address = upstream.url.removeprefix("http://"), gateway.url.removeprefix("http://")
    async with running_nginx(tmp_path, app, gateway_address) as url:
        yield Front(url, "app.test:8080")


async def test_signed_out_public_path_carries_no_identity_through_nginx(
    http_client: httpx.AsyncClient, nginx_front: Front
) -> None:
    await cases.signed_out_visitor_to_a_public_path_carries_no_identity(http_client, nginx_front)


async def test_client_sent_identity_headers_never_reach_the_app_through_nginx(
    http_client: httpx.AsyncClient, nginx_front: Front
) -> None:
    await cases.client_sent_identity_never_reaches_the_app(http_client, nginx_front)


async def test_client_sent_identity_headers_spelled_with_underscores_never_reach_the_app_through_nginx(
    http_client: httpx.AsyncClient, nginx_front: Front
) -> None:
    await cases.client_sent_underscore_identity_never_reaches_the_app(http_client, nginx_front)


@pytest.mark.parametrize("spoof", cases.ORIGINAL_REQUEST_SPOOFS.values(), ids=cases.ORIGINAL_REQUEST_SPOOFS.keys())
async def test_client_cannot_choose_the_judged_request_through_nginx(
    http_client: httpx.AsyncClient, nginx_front: Front, spoof: dict[str, str]
) -> None:
    await cases.client_cannot_choose_the_request_that_is_judged(http_client, nginx_front, spoof)
