"""Fixtures: running emulators (development and production), HTTP clients, the OpenAPI specs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.emulator.server import EmulatorServer
from gateway.emulator.signing import generate_private_key
from tests.emulator.support import Browser, OpenAPISpec, bapi_spec, fapi_spec

APP_ORIGIN = "http://app.test:3000"
SATELLITE = "sat.test"


@pytest.fixture(scope="session")
def shared_signing_key() -> rsa.RSAPrivateKey:
    """One RSA key for the long-lived emulators: key generation is the slowest part of a start."""
    return generate_private_key()


@pytest.fixture(scope="session")
def fapi_openapi() -> OpenAPISpec:
    return fapi_spec()


@pytest.fixture(scope="session")
def bapi_openapi() -> OpenAPISpec:
    return bapi_spec()


@pytest.fixture(scope="module")
def dev_emulator(shared_signing_key: rsa.RSAPrivateKey) -> Iterator[EmulatorServer]:
    with EmulatorServer(signing_key=shared_signing_key) as server:
        yield server


@pytest.fixture(scope="module")
def prod_emulator(shared_signing_key: rsa.RSAPrivateKey) -> Iterator[EmulatorServer]:
    with EmulatorServer(
        production=True,
        fapi_host="clerk.primary.test:{port}",
        cookie_domain="primary.test",
        satellite_domains=(SATELLITE,),
        signing_key=shared_signing_key,
    ) as server:
        yield server


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start a private emulator with custom settings; stopped after the test."""
    started: list[EmulatorServer] = []

    def start(**settings: Any) -> EmulatorServer:
        server = EmulatorServer(**settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client that keeps no cookies: tests pass cookies explicitly (or through `Browser`)."""
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    with httpx.Client(timeout=5.0, cookies=no_cookies) as client:
        yield client


@pytest.fixture
def browser(http: httpx.Client) -> Browser:
    return Browser(http)
