"""How the gateway degrades when Clerk or the app fails: real servers stopped, slowed or answering garbage.

Clerk's Backend API and Frontend API sit behind a `FaultyProxy` (tests/support/faults.py) that resets,
errors, hangs or answers garbage for chosen paths; the app is the echo app, an unused port, or a TCP
server that does not speak HTTP. The rule throughout: a clean 4xx/5xx with a short body, never a 500,
never a traceback, never a sign-in on error, and the gateway stays healthy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.browser import FETCH, NAVIGATION
from tests.support.faults import Fault, FaultyProxy, faulty_proxy, garbage_server, mint_token
from tests.support.upstream import EchoUpstream, unused_port

FAST_JWKS = {"GATEWAY_JWKS_MIN_REFETCH_INTERVAL": "0.01"}


@pytest.fixture
async def bapi(dev_clerk: EmulatorServer) -> AsyncIterator[FaultyProxy]:
    async with faulty_proxy(dev_clerk.bapi_url) as proxy:
        yield proxy


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "host": "app.test:8000", **FETCH}


async def metric(client: httpx.AsyncClient, gateway: RunningGateway, name: str) -> float:
    text = (await client.get(f"{gateway.url}/__gateway/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith((name + " ", name + "{")))


async def assert_healthy(client: httpx.AsyncClient, gateway: RunningGateway) -> None:
    assert (await client.get(f"{gateway.url}/__gateway/healthz")).status_code == 200


# ------------------------------------------------------------------------------------------ JWKS


async def test_jwks_down_at_start_gives_token_carriers_a_clear_503_and_recovers_without_restart(
    dev_clerk: EmulatorServer,
    bapi: FaultyProxy,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    bapi.fault("/v1/jwks", "reset")
    settings = gateway_settings(dev_clerk, upstream.url, CLERK_API_URL=bapi.url, **FAST_JWKS)
    gateway = await run_gateway(settings)
    token = mint_token(dev_clerk, "user_alice")
    for attempt in range(3):  # every request, not only the first: no sign-out storm, no sign-in
        api = await http_client.get(f"{gateway.url}/api/items", headers=bearer(token))
        assert api.status_code == 503, (attempt, api.text)
        assert api.json()["error"] == "keys_unavailable" and api.headers["retry-after"]
        assert "set-cookie" not in api.headers
        await asyncio.sleep(0.02)  # past the refetch interval: each attempt really asks the JWKS again
    page = await http_client.get(
        f"{gateway.url}/reports", headers={**NAVIGATION, "host": gateway.host, "cookie": f"__session={token}"}
    )
    assert page.status_code in (503, 307), page.text
    assert not [cookie for cookie in page.headers.get_list("set-cookie") if cookie.startswith("__session")]
    if page.status_code == 307:  # a handshake to Clerk, never the sign-in page or the app
        assert page.headers["x-clerk-auth-status"] == "handshake"
    anonymous = await http_client.get(f"{gateway.url}/api/items", headers={"host": gateway.host, **FETCH})
    assert anonymous.status_code == 401  # no token: the ordinary answer, keys or not
    ready = await http_client.get(f"{gateway.url}/__gateway/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["keys"] == "unavailable"
    assert await metric(http_client, gateway, "gateway_jwks_fetch_failures_total") >= 2

    bapi.fault("/v1/jwks", "pass")
    await asyncio.sleep(0.02)
    recovered = await http_client.get(f"{gateway.url}/api/items", headers=bearer(token))
    assert recovered.status_code == 200, recovered.text
    assert {k.lower(): v for k, v in recovered.json()["headers"]}["x-clerk-user-id"] == "user_alice"
    assert (await http_client.get(f"{gateway.url}/__gateway/readyz")).status_code == 200


@pytest.mark.parametrize("fault", ["reset", "error", "garbage", "hang"])
async def test_jwks_down_mid_run_keeps_serving_with_the_stale_keys(
    fault: Fault,
    dev_clerk: EmulatorServer,
    bapi: FaultyProxy,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    settings = gateway_settings(
        dev_clerk, upstream.url, CLERK_API_URL=bapi.url, GATEWAY_JWKS_CACHE_TTL="0.05", **FAST_JWKS
    )
    gateway = await run_gateway(settings)
    token = mint_token(dev_clerk, "user_bob")
    assert (await http_client.get(f"{gateway.url}/api/items", headers=bearer(token))).status_code == 200
    bapi.fault("/v1/jwks", fault)
    for _ in range(5):
        await asyncio.sleep(0.06)  # the keys are stale now: every request starts a background refetch
        response = await http_client.get(f"{gateway.url}/api/items", headers=bearer(token))
        assert response.status_code == 200, response.text
    if fault != "hang":  # a fetch retries with backoff (~0.4 s) before it counts as failed
        for _ in range(100):
            if await metric(http_client, gateway, "gateway_jwks_fetch_failures_total") >= 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the failed JWKS fetch was never counted")
        assert (await http_client.get(f"{gateway.url}/api/items", headers=bearer(token))).status_code == 200
    assert await metric(http_client, gateway, "gateway_jwks_keys") >= 1
    await assert_healthy(http_client, gateway)


async def test_key_rotation_is_picked_up_without_restart_and_old_tokens_stay_valid(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, **FAST_JWKS))
    old_kid = dev_clerk.signing_key.kid
    old_token = mint_token(dev_clerk, "user_alice")
    assert (await http_client.get(f"{gateway.url}/api/x", headers=bearer(old_token))).status_code == 200
    fetches = await metric(http_client, gateway, "gateway_jwks_fetches_total")

    new_kid = dev_clerk.rotate_keys()
    assert new_kid != old_kid
    new_token = mint_token(dev_clerk, "user_bob")
    await asyncio.sleep(0.02)
    fresh = await http_client.get(f"{gateway.url}/api/x", headers=bearer(new_token))
    assert fresh.status_code == 200, fresh.text
    assert {k.lower(): v for k, v in fresh.json()["headers"]}["x-clerk-user-id"] == "user_bob"
    assert await metric(http_client, gateway, "gateway_jwks_fetches_total") == fetches + 1

    still = await http_client.get(f"{gateway.url}/api/x", headers=bearer(old_token))
    assert still.status_code == 200  # signed by the old key, still published, not yet expired
    clock.advance(120)
    expired = await http_client.get(f"{gateway.url}/api/x", headers=bearer(old_token))
    assert expired.status_code == 401 and expired.json()["reason"].startswith("session-token-expired")


# ------------------------------------------------------------------------------------------ Backend API


@pytest.mark.parametrize("fault", ["reset", "error", "garbage"])
async def test_backend_api_down_during_refresh_signs_out_or_handshakes_as_clerk_does(
    fault: Fault,
    dev_clerk: EmulatorServer,
    bapi: FaultyProxy,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    new_browser: Callable[..., Any],
    clock: FakeClock,
    http_client: httpx.AsyncClient,
) -> None:
    from tests.integration.test_gateway_flows import sign_in

    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, CLERK_API_URL=bapi.url))
    browser = new_browser(gateway)
    assert (await sign_in(browser, gateway)).status_code == 200
    clock.advance(120)
    bapi.fault("/v1/sessions/", fault)
    api = await browser.fetch("GET", f"{gateway.origin}/api/items")
    assert api.status_code == 401, api.text
    assert api.json()["reason"].startswith("session-token-expired-refresh-")
    page = await browser.navigate(f"{gateway.origin}/reports", follow=False)
    assert page.status_code == 307 and page.headers["x-clerk-auth-status"] == "handshake"
    assert "Traceback" not in api.text
    assert await metric(http_client, gateway, "gateway_session_refresh_failures_total") >= 1
    bapi.fault("/v1/sessions/", "pass")
    healed = await browser.fetch("GET", f"{gateway.origin}/api/items")
    assert healed.status_code == 200 and healed.json()["headers"]


# ------------------------------------------------------------------------------------------ Frontend API


@pytest.mark.parametrize("fault", ["down", "reset"])
async def test_frontend_api_down_behind_the_proxy_path_is_a_502(
    fault: str,
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    async with faulty_proxy(dev_clerk.fapi_url, {"/": "reset"}) as fapi:
        fapi_url = f"http://127.0.0.1:{unused_port()}" if fault == "down" else fapi.url
        gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, CLERK_FAPI_URL=fapi_url))
        response = await http_client.get(f"{gateway.url}/__clerk/v1/environment", headers={"host": gateway.host})
    assert response.status_code == 502
    assert "Traceback" not in response.text
    await assert_healthy(http_client, gateway)


# ------------------------------------------------------------------------------------------ the app


async def test_app_refusing_hanging_resetting_or_speaking_garbage_gives_clean_errors(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    public = {"host": "app.test:8000", **FETCH}
    refused = await run_gateway(gateway_settings(dev_clerk, f"http://127.0.0.1:{unused_port()}"))
    answer = await http_client.get(f"{refused.url}/public/x", headers=public)
    assert answer.status_code == 502 and answer.json()["error"] == "bad_gateway"

    slow = await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_READ_TIMEOUT="0.3", GATEWAY_PUBLIC_PATHS="/public/*,/_/*")
    )
    answer = await http_client.get(f"{slow.url}/_/slow?seconds=5", headers=public)
    assert answer.status_code == 504 and answer.json()["error"] == "gateway_timeout"

    with pytest.raises(httpx.HTTPError):  # promised 1 MiB, sent 64 KiB: the client sees a broken body
        await http_client.get(f"{slow.url}/_/reset", headers=public)
    after = await http_client.get(f"{slow.url}/public/after", headers=public)
    assert after.status_code == 200

    async with garbage_server() as garbage_url:
        garbage = await run_gateway(gateway_settings(dev_clerk, garbage_url))
        answer = await http_client.get(f"{garbage.url}/public/x", headers=public)
    assert answer.status_code == 502 and "Traceback" not in answer.text

    metrics = (await http_client.get(f"{slow.url}/__gateway/metrics")).text
    assert 'gateway_upstream_errors_total{kind="timeout"} 1.0' in metrics
    assert 'gateway_upstream_errors_total{kind="aborted"} 1.0' in metrics
    for gateway in (refused, slow, garbage):
        await assert_healthy(http_client, gateway)
