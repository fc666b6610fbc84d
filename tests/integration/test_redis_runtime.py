"""The runtime's Redis parts outlive a configuration reload: handed over, they are neither closed nor doubled."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.edge.runtime import EdgeRuntime
from gateway.emulator.server import EmulatorServer
from gateway.revocation import ChangeListeners, DenyList, Revocation
from gateway.shared.connection import RedisConnection
from gateway.shared.feed import RedisFeed
from gateway.shared.refresh import RedisRefreshFlight
from tests.integration.conftest import gateway_settings
from tests.support.redis_server import RedisServer, needs_redis, running_redis
from tests.support.upstream import EchoUpstream

pytestmark = needs_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.mark.parametrize("hand_over_redis_too", [False, True], ids=["revocations only", "revocations and redis"])
async def test_a_reloaded_runtime_keeps_the_connection_and_the_subscription(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, redis_server: RedisServer, hand_over_redis_too: bool
) -> None:
    settings = gateway_settings(dev_clerk, upstream.url, GATEWAY_REDIS_URL=redis_server.url)
    before = EdgeRuntime(settings)
    await before.start()
    revocations = before.hand_over_revocations()
    redis = before.hand_over_redis() if hand_over_redis_too else None
    after = EdgeRuntime(settings, revocations=revocations, redis=redis)
    await before.aclose()
    await after.start()
    other = RedisConnection(redis_server.url)
    await other.start()
    other_feed = RedisFeed(other, DenyList(), ChangeListeners())
    try:
        assert after.redis is before.redis and after.redis is not None and after.redis.up
        assert isinstance(after.revocations.feed, RedisFeed) and after.revocations.feed.connection is after.redis
        await other_feed.publish(Revocation("session", "sess_reload", time.time(), time.time() + 60))
        deadline = time.monotonic() + 2
        while not after.revocations.deny_list.is_revoked("sess_reload", None, None):
            assert time.monotonic() < deadline, "the handed-over feed stopped following"
            await asyncio.sleep(0.01)
    finally:
        await other_feed.aclose()
        await other.aclose()
        await after.aclose()


async def test_an_app_of_its_own_instance_shares_its_refreshes_under_its_own_secret(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, redis_server: RedisServer
) -> None:
    """Its refreshes collapse across replicas as `[clerk]`'s do, named and sealed with its own secret."""
    other = EmulatorServer()
    other.start()
    try:
        apps = [{"name": "other", "hosts": ["other.test:8000"], "upstream": upstream.url,
                 "clerk": {"publishable_key": other.publishable_key, "secret_key": other.secret_key,
                           "api_url": other.api_url, "frontend_api_url": other.fapi_url}}]  # fmt: skip
        settings = gateway_settings(
            dev_clerk, upstream.url, GATEWAY_REDIS_URL=redis_server.url, GATEWAY_APPS=json.dumps(apps)
        )
        runtime = EdgeRuntime(settings)
        try:
            own = runtime.app_named("other")
            assert own is not None and own.instance is not None
            own_backend, main_backend = own.instance.authenticator.backend, runtime.authenticator.backend
            assert own_backend is not None and main_backend is not None
            own_flight, main_flight = own_backend.shared_refreshes, main_backend.shared_refreshes
            assert isinstance(own_flight, RedisRefreshFlight) and isinstance(main_flight, RedisRefreshFlight)
            assert own_flight is not main_flight
            assert own_flight.name_for(("refresh-token",)) != main_flight.name_for(("refresh-token",))
        finally:
            await runtime.aclose()
    finally:
        other.stop()
