"""Two real apps behind one gateway, by path prefix and by host: each gets its own requests, under its
own rules, the path it routes being the path its rules judged; forward-auth picks the app the same way."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.browser import FETCH
from tests.support.faults import mint_token
from tests.support.upstream import EchoUpstream, running_upstream

HOST = "app.test:8000"
GRAFANA = "grafana.test:8000"


@pytest.fixture
async def second(stack: AsyncExitStack) -> EchoUpstream:
    """The second app (Prometheus by prefix, Grafana by host): another echo server on its own port."""
    return await stack.enter_async_context(running_upstream())


@pytest.fixture
async def gateway(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, second: EchoUpstream, run_gateway: Callable[..., Any]
) -> RunningGateway:
    apps = [
        {"name": "prom", "path_prefix": "/prom", "strip_prefix": True, "upstream": second.url,
         "preserve_host": False, "websockets": False, "routes": [{"path": "/-/healthy", "access": "public"}],
         "identity": {"presets": ["remote-user"], "user": "user_id"}},
        {"name": "grafana", "hosts": [GRAFANA], "upstream": second.url, "preserve_host": False,
         "routes": [{"path": "/admin/*", "access": "deny"}], "public_paths": ["/login"],
         "identity": {"headers": {"X-Grafana-User": "{user_id}"}}},
    ]  # fmt: skip
    settings = gateway_settings(dev_clerk, upstream.url, GATEWAY_APPS=json.dumps(apps), GATEWAY_PRESERVE_HOST="false")
    return await run_gateway(settings, HOST)


def _authorization(clerk: EmulatorServer) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(clerk, 'user_bob')}"}


def _served_by(response: httpx.Response, first: EchoUpstream, second: EchoUpstream) -> tuple[str, str]:
    """Which echo app answered (by the `Host` the gateway sent it) and the path it received."""
    body = response.json()
    host = next(value for name, value in body["headers"] if name.lower() == "host")
    apps = {urlsplit(first.url).netloc: "first", urlsplit(second.url).netloc: "second"}
    return apps[host], body["path"]


@pytest.mark.parametrize(
    ("case", "host", "path", "signed_in", "status", "served"),
    [
        ("the prefix's public path, stripped", HOST, "/prom/-/healthy", False, 200, ("second", "/-/healthy")),
        ("the prefix's other paths need a user", HOST, "/prom/api/v1/query", False, 401, None),
        ("signed in, the app gets the path without its prefix", HOST, "/prom/api/v1/query", True, 200,
         ("second", "/api/v1/query")),
        ("the prefix alone is the app's root", HOST, "/prom", True, 200, ("second", "/")),
        ("a longer segment is the default app's", HOST, "/prometheus", True, 200, ("first", "/prometheus")),
        ("letter case counts", HOST, "/PROM/-/healthy", True, 200, ("first", "/PROM/-/healthy")),
        ("the default app's rules stay the default app's", HOST, "/-/healthy", False, 401, None),
        ("an escaped letter is the letter", HOST, "/pro%6D/-/healthy", False, 200, ("second", "/-/healthy")),
        ("a dot segment leaving the prefix leaves the app", HOST, "/prom/%2e%2e/-/healthy", False, 401, None),
        ("an escaped slash is refused before any app", HOST, "/prom%2F..%2Fadmin", True, 400, None),
        ("by host: the host's app and its rules", GRAFANA, "/admin/users", True, 403, None),
        ("by host: the app gets the whole path", GRAFANA, "/d/abc", True, 200, ("second", "/d/abc")),
        ("by host: its own public paths", GRAFANA, "/login", False, 200, ("second", "/login")),
        ("by host: a trailing dot is the same host", "grafana.test.:8000", "/admin/x", True, 403, None),
        ("by host: another port is another host", "grafana.test:8001", "/admin/x", True, 200,
         ("first", "/admin/x")),
        ("by host: the prefix app is not on the host's", GRAFANA, "/prom/-/healthy", False, 401, None),
    ],
)
async def test_each_request_goes_to_its_app_under_its_rules(
    case: str, host: str, path: str, signed_in: bool, status: int, served: tuple[str, str] | None,
    gateway: RunningGateway, dev_clerk: EmulatorServer, upstream: EchoUpstream, second: EchoUpstream,
    http_client: httpx.AsyncClient,
) -> None:  # fmt: skip
    headers = {"host": host, **FETCH, **(_authorization(dev_clerk) if signed_in else {})}
    response = await http_client.get(f"{gateway.url}{path}", headers=headers)
    assert response.status_code == status, (case, response.text)
    if served is not None:
        assert _served_by(response, upstream, second) == served, case
    elif status == 401:
        assert response.json()["error"] == "unauthenticated", case


@pytest.mark.parametrize(
    ("host", "path", "present", "absent"),
    [
        (HOST, "/prom/api", {"remote-user": "user_bob"}, ("x-clerk-user-id", "x-grafana-user")),
        (GRAFANA, "/d/x", {"x-grafana-user": "user_bob", "x-clerk-user-id": "user_bob"}, ("remote-user",)),
        (HOST, "/x", {"x-clerk-user-id": "user_bob"}, ("remote-user", "x-grafana-user", "remote_user")),
    ],
)
async def test_each_app_gets_its_own_identity_headers_and_no_spoofed_one(
    host: str, path: str, present: dict[str, str], absent: tuple[str, ...],
    gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient,
) -> None:  # fmt: skip
    spoofed = {"remote-user": "admin", "x-grafana-user": "admin", "remote_user": "admin", "x-clerk-user-id": "admin"}
    headers = {"host": host, **FETCH, **_authorization(dev_clerk), **spoofed}
    response = await http_client.get(f"{gateway.url}{path}", headers=headers)
    assert response.status_code == 200, response.text
    received: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        received.setdefault(name.lower(), []).append(value)
    for name, value in present.items():
        assert received.get(name) == [value], name
    for name in absent:
        assert name not in received, name


async def test_metrics_and_the_access_log_name_the_app(
    gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient
) -> None:
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    access = logging.getLogger("gateway.access")
    access.addHandler(handler)
    level, access.level = access.level, logging.INFO
    try:
        for host, path in ((HOST, "/prom/-/healthy"), (GRAFANA, "/login"), (HOST, "/x"), (HOST, "/prom%2F")):
            await http_client.get(f"{gateway.url}{path}", headers={"host": host, **FETCH})
        expected = [
            f'gateway_requests_total{{app="{app}",decision="{decision}",reason="{reason}",route_class="proxy",'
            f'status="{status}"}} 1.0'
            for app, decision, reason, status in (
                ("prom", "signed-out", "dev-browser-missing", "2xx"),
                ("grafana", "signed-out", "dev-browser-missing", "2xx"),
                ("default", "signed-out", "dev-browser-missing", "4xx"),
                ("none", "refused", "ambiguous_path", "4xx"),
            )
        ]
        for _ in range(100):  # a request is counted just after its last byte is sent
            text = (await http_client.get(f"{gateway.url}/__gateway/metrics")).text
            if all(line in text for line in expected) and len(lines) >= 5:
                break
            await asyncio.sleep(0.01)
    finally:
        access.removeHandler(handler)
        access.level = level
    counted = [line for line in text.splitlines() if line.startswith("gateway_requests_total")]
    for line in expected:
        assert line in counted, counted
    logged = [(entry["path"], entry["app"]) for entry in map(json.loads, lines) if entry["route"] == "proxy"]
    assert logged == [("/prom/-/healthy", "prom"), ("/login", "grafana"), ("/x", "default"), ("/prom/", None)]


async def test_websockets_per_app(
    gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    real = urlsplit(gateway.url)
    headers = _authorization(dev_clerk)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"ws://{HOST}/prom/_/ws", host=real.hostname, port=real.port,
                                      additional_headers=headers):  # fmt: skip
            pass
    assert refused.value.response.status_code == 404
    for host in (HOST, GRAFANA):
        async with websockets.connect(
            f"ws://{host}/_/ws", host=real.hostname, port=real.port, additional_headers=headers
        ) as connection:
            await connection.send(f"hello {host}")
            assert await connection.recv() == f"hello {host}"


@pytest.mark.parametrize(
    ("case", "original", "signed_in", "status"),
    [
        ("the host's rule", {"x-forwarded-host": GRAFANA, "x-forwarded-uri": "/admin/x"}, True, 403),
        ("the host's other paths", {"x-forwarded-host": GRAFANA, "x-forwarded-uri": "/d/x"}, True, 200),
        ("the host's public path", {"x-forwarded-host": GRAFANA, "x-forwarded-uri": "/login"}, False, 200),
        ("the prefix's public path", {"x-forwarded-host": HOST, "x-forwarded-uri": "/prom/-/healthy"}, False, 200),
        ("the prefix's other paths", {"x-forwarded-host": HOST, "x-forwarded-uri": "/prom/api"}, False, 401),
        ("the default app's rules", {"x-forwarded-host": HOST, "x-forwarded-uri": "/admin/x"}, True, 200),
        ("nginx's spelling", {"x-original-url": f"http://{GRAFANA}/admin/x"}, True, 403),
        ("nginx's spelling, the prefix", {"x-original-url": f"http://{HOST}/prom/-/healthy"}, False, 200),
    ],
)
async def test_forward_auth_picks_the_app_of_the_original_request(
    case: str, original: dict[str, str], signed_in: bool, status: int,
    gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient,
) -> None:  # fmt: skip
    headers = {"host": HOST, **FETCH, **original, **(_authorization(dev_clerk) if signed_in else {})}
    response = await http_client.get(f"{gateway.url}/__gateway/auth", headers=headers)
    assert response.status_code == status, (case, response.text)
    if status == 200 and signed_in:
        assert response.headers["x-clerk-user-id"] == "user_bob", case


async def test_a_request_no_app_takes_is_404_no_app(
    dev_clerk: EmulatorServer, second: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    apps = [{"name": "prom", "path_prefix": "/prom", "upstream": second.url}]
    settings = gateway_settings(dev_clerk, "", GATEWAY_APPS=json.dumps(apps))
    running = await run_gateway(settings, HOST)
    headers = {"host": HOST, **FETCH, **_authorization(dev_clerk)}
    response = await http_client.get(f"{running.url}/grafana", headers=headers)
    assert (response.status_code, response.json()["error"]) == (404, "no_app")
    assert (await http_client.get(f"{running.url}/prom/x", headers=headers)).json()["path"] == "/prom/x"
    assert (await http_client.get(f"{running.url}/__gateway/healthz")).status_code == 200


async def test_readiness_checks_every_app(gateway: RunningGateway, http_client: httpx.AsyncClient) -> None:
    ready = await http_client.get(f"{gateway.url}/__gateway/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["apps"] == {"prom": "ok", "grafana": "ok", "default": "ok"}


OTHER = "other.test:8000"


async def test_an_app_with_its_own_clerk_instance(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, second: EchoUpstream, run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient, stack: AsyncExitStack, clock: Any,
) -> None:  # fmt: skip
    """Two emulators (two instances, two signing keys): each app takes its own instance's tokens only,
    and its host's Frontend API proxy goes to its own instance."""
    other = EmulatorServer(clock=clock)
    other.start()
    stack.callback(other.stop)
    apps = [{"name": "other", "hosts": [OTHER], "upstream": second.url, "preserve_host": False,
             "clerk": {"publishable_key": other.publishable_key, "secret_key": other.secret_key,
                       "api_url": other.api_url, "frontend_api_url": other.fapi_url}}]  # fmt: skip
    settings = gateway_settings(dev_clerk, upstream.url, GATEWAY_APPS=json.dumps(apps), GATEWAY_PRESERVE_HOST="false")
    assert settings.app_clerk["other"].publishable_key.raw == other.publishable_key
    gateway = await run_gateway(settings, HOST)
    theirs = {"authorization": f"Bearer {mint_token(other, 'user_bob')}"}
    ours = {"authorization": f"Bearer {mint_token(dev_clerk, 'user_bob')}"}
    cases = [
        (OTHER, theirs, 200, "second"), (OTHER, ours, 401, None), (HOST, theirs, 401, None), (HOST, ours, 200, "first")
    ]  # fmt: skip
    for host, token, status, served in cases:
        response = await http_client.get(f"{gateway.url}/x", headers={"host": host, **FETCH, **token})
        assert response.status_code == status, (host, token is theirs, response.text)
        if served is not None:
            assert _served_by(response, upstream, second)[0] == served
    for host, clerk in ((OTHER, other), (HOST, dev_clerk)):  # each instance has its own signing key
        proxied = await http_client.get(f"{gateway.url}/__clerk/.well-known/jwks.json", headers={"host": host, **FETCH})
        direct = await http_client.get(f"{clerk.fapi_url}/.well-known/jwks.json")
        assert proxied.status_code == 200 and proxied.json() == direct.json(), host
    assert (await http_client.get(f"{other.fapi_url}/.well-known/jwks.json")).json() != direct.json()
