"""Loopback fixtures for the gateway's flow tests: the emulator, the echo app and gateways in front of it."""

from __future__ import annotations

import contextlib
import http.cookiejar
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.edge.app import create_app
from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from gateway.settings import Settings, load_settings
from tests.support.browser import Browser
from tests.support.upstream import EchoUpstream, running_upstream, serving_asgi


@pytest.fixture(scope="session")
def emulator_signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def start_emulator(
    emulator_signing_key: rsa.RSAPrivateKey, clock: FakeClock
) -> Iterator[Callable[..., EmulatorServer]]:
    started: list[EmulatorServer] = []

    def start(**options: Any) -> EmulatorServer:
        server = EmulatorServer(signing_key=emulator_signing_key, clock=clock, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dev_clerk(start_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return start_emulator(token_lifetime=60)


@pytest.fixture
async def upstream() -> AsyncIterator[EchoUpstream]:
    async with running_upstream() as echo:
        yield echo


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    """Async resources a test starts one by one, closed in reverse order at teardown."""
    async with contextlib.AsyncExitStack() as exit_stack:
        yield exit_stack


def gateway_settings(clerk: EmulatorServer, upstream_url: str, **environment: str) -> Settings:
    """Settings for a gateway in front of `upstream_url`, talking to the emulator `clerk`."""
    environ = {
        "CLERK_PUBLISHABLE_KEY": clerk.publishable_key,
        "CLERK_SECRET_KEY": clerk.secret_key,
        "CLERK_API_URL": clerk.api_url,
        "CLERK_FAPI_URL": clerk.fapi_url,
        "CLERK_SIGN_IN_URL": clerk.sign_in_url,
        "GATEWAY_UPSTREAM": upstream_url,
        "GATEWAY_API_PATHS": "/api/*",
        "GATEWAY_PUBLIC_PATHS": "/public/*",
        "GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
        **environment,
    }
    return load_settings(None, environ, require_upstream=True)


@dataclass
class RunningGateway:
    url: str  # the loopback URL it listens on
    host: str  # the virtual host browsers use, e.g. app.test:8000
    settings: Settings

    @property
    def origin(self) -> str:
        return f"http://{self.host}"


@pytest.fixture
async def run_gateway(clock: FakeClock) -> AsyncIterator[Callable[..., Any]]:
    """`await run_gateway(settings, host)` starts a gateway (full lifespan) and returns it."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(settings: Settings, host: str = "app.test:8000") -> RunningGateway:
            url = await stack.enter_async_context(serving_asgi(create_app(settings, clock=clock), lifespan="on"))
            return RunningGateway(url, host, settings)

        yield start


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    no_cookies = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(timeout=20, follow_redirects=False, cookies=no_cookies) as client:
        yield client


@pytest.fixture
def new_browser(http_client: httpx.AsyncClient, clock: FakeClock) -> Callable[..., Browser]:
    def make(*gateways: RunningGateway) -> Browser:
        return Browser(http_client, routes={gateway.host: gateway.url for gateway in gateways}, clock=clock)

    return make
