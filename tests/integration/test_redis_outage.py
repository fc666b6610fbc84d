"""A gateway with `GATEWAY_REDIS_URL` while Redis goes away and comes back (a real redis-server, killed).

The chosen behaviour (README, "Running several replicas"): the replica keeps serving from its own state,
stays ready (`/readyz` 200, its body says Redis is down), shows `gateway_redis_up 0`, refreshes through
its own single-flight, applies a revocation webhook locally at once and writes it back into Redis
when Redis returns, by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.integration.test_gateway_flows import echoed, sign_in
from tests.support.browser import FETCH, Browser
from tests.support.redis_server import RedisServer, needs_redis, running_redis
from tests.support.upstream import EchoUpstream

pytestmark = needs_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


async def readiness(client: httpx.AsyncClient, gateway: RunningGateway) -> tuple[int, dict[str, Any]]:
    answer = await client.get(f"{gateway.url}/__gateway/readyz")
    return answer.status_code, answer.json()["checks"]


async def until_redis_is(client: httpx.AsyncClient, gateway: RunningGateway, wanted: str) -> None:
    deadline = time.monotonic() + 10
    while (await readiness(client, gateway))[1].get("redis") != wanted:
        assert time.monotonic() < deadline, f"/readyz never said redis={wanted}"
        await asyncio.sleep(0.02)


def metric_line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))


async def test_with_redis_away_a_replica_serves_from_its_own_state_stays_ready_and_catches_up_after(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser],
    http_client: httpx.AsyncClient,
    clock: FakeClock,
    redis_server: RedisServer,
) -> None:
    settings = gateway_settings(
        dev_clerk, upstream.url,
        GATEWAY_REDIS_URL=redis_server.url, CLERK_WEBHOOK_SIGNING_SECRET=dev_clerk.webhooks.secret,
    )  # fmt: skip
    gateway = await run_gateway(settings)
    dev_clerk.webhooks.add_url(f"{gateway.url}/__gateway/webhooks/clerk")
    assert await readiness(http_client, gateway) == (200, {"settings": "ok", "keys": "ok", "upstream": "ok",
                                                            "redis": "ok"})  # fmt: skip
    staying, leaving = new_browser(gateway), new_browser(gateway)
    await sign_in(staying, gateway)
    leaving_session = echoed(await sign_in(leaving, gateway))["x-clerk-session-id"]

    redis_server.stop()
    await until_redis_is(http_client, gateway, "down")
    status, checks = await readiness(http_client, gateway)
    assert (status, checks["redis"]) == (200, "down")  # still in the load balancer
    metrics = (await http_client.get(f"{gateway.url}/__gateway/metrics")).text
    assert metric_line(metrics, "gateway_redis_up") == "gateway_redis_up 0.0"
    assert float(metric_line(metrics, 'gateway_redis_failures_total{operation="ping"}').split()[-1]) >= 1

    # A revocation webhook meanwhile: applied here at once (the webhook is acknowledged, never refused for Redis).
    revoked = await http_client.post(
        f"{dev_clerk.bapi_url}/v1/sessions/{leaving_session}/revoke",
        headers={"authorization": f"Bearer {dev_clerk.secret_key}"},
    )  # fmt: skip
    assert revoked.status_code == 200
    delivered = await asyncio.to_thread(
        dev_clerk.webhooks.wait_for, lambda deliveries: any(d.status == "delivered" for d in deliveries)
    )
    assert [d.event_type for d in delivered if d.status == "delivered"] == ["session.revoked"]
    refused = await http_client.get(
        f"{gateway.url}/api/items", headers={"host": gateway.host, "cookie": leaving.cookie_header("app.test"), **FETCH}
    )  # fmt: skip
    assert (refused.status_code, refused.json()["reason"]) == (401, "session-revoked")

    # Serving goes on: signed-in requests, and a refresh of an expired token through this process alone.
    clock.advance(120)
    before = dev_clerk.state.refresh_calls
    answers = [await staying.fetch("GET", f"{gateway.origin}/api/items") for _ in range(10)]
    assert [answer.status_code for answer in answers] == [200] * 10
    assert dev_clerk.state.refresh_calls - before == 1

    # Redis comes back, empty: the replica reconnects by itself and writes back what it heard meanwhile.
    redis_server.start()
    await until_redis_is(http_client, gateway, "ok")
    direct = redis_client.Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        deadline = time.monotonic() + 5
        while not direct.exists(f"gateway:revocation:session:{leaving_session}"):
            assert time.monotonic() < deadline, "the revocation heard while Redis was away was not written back"
            await asyncio.sleep(0.02)
    finally:
        direct.close()
    metrics = (await http_client.get(f"{gateway.url}/__gateway/metrics")).text
    assert metric_line(metrics, "gateway_redis_up") == "gateway_redis_up 1.0"


async def test_without_redis_configured_readiness_and_metrics_say_nothing_of_it(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url))
    assert await readiness(http_client, gateway) == (200, {"settings": "ok", "keys": "ok", "upstream": "ok"})
    assert "gateway_redis" not in (await http_client.get(f"{gateway.url}/__gateway/metrics")).text
