"""The runtime's Redis parts outlive a configuration reload: handed over, they are neither closed nor doubled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.edge.runtime import EdgeRuntime
from gateway.emulator.server import EmulatorServer
from gateway.revocation import ChangeListeners, DenyList, Revocation
from gateway.shared.connection import RedisConnection
from gateway.shared.feed import RedisFeed
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
