"""The shared state against a real redis-server: the connection's health, the revocation feed between
replicas (two feeds in one process, each with its own connection and deny list, as two replicas have),
shared webhook de-duplication and the cross-replica refresh lock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from gateway.clerk.asks import ApiResponse
from gateway.revocation import Change, ChangeListeners, DenyList, Revocation
from gateway.shared.connection import RedisConnection
from gateway.shared.feed import RedisFeed
from gateway.shared.refresh import RedisRefreshFlight
from gateway.shared.sealing import Sealer
from tests.support.redis_server import RedisServer, needs_redis, running_redis

pytestmark = needs_redis

SECRET = "sk_test_shared_state_secret"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.expired-session-token.signature"
REFRESH_TOKEN = "refresh-token-of-the-browser"
PARTS = ("sess_1", TOKEN, REFRESH_TOKEN, "False", "http://app.test")
ANSWER = ApiResponse(200, {"object": "cookies", "cookies": [f"__session=fresh.{TOKEN}; Path=/"]})


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


async def eventually(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until `condition` held (polled every 10 ms); fails after `within` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
async def connect(redis_server: RedisServer) -> AsyncIterator[Callable[..., Awaitable[RedisConnection]]]:
    opened: list[RedisConnection] = []

    async def open_one(**options: float) -> RedisConnection:
        connection = RedisConnection(redis_server.url, **options)
        await connection.start()
        opened.append(connection)
        return connection

    yield open_one
    for connection in opened:
        await connection.aclose()


@pytest.fixture
async def replica(
    connect: Callable[..., Awaitable[RedisConnection]],
) -> AsyncIterator[Callable[[], Awaitable[RedisFeed]]]:
    feeds: list[RedisFeed] = []

    async def start_one() -> RedisFeed:
        connection = await connect(backoff_max=0.2)
        feed = RedisFeed(connection, DenyList(), ChangeListeners())
        await feed.start()
        feeds.append(feed)
        assert feed.synchronised == 1  # `start` returns once the live entries are loaded
        return feed

    yield start_one
    for feed in feeds:
        await feed.aclose()


def revoked_session(subject: str = "sess_1", *, retention: float = 3600) -> Revocation:
    now = time.time()
    return Revocation("session", subject, now, now + retention)


# ---------------------------------------------------------------------------------------- connection


async def test_the_connection_is_up_from_start_and_says_so_once(
    connect: Callable[..., Awaitable[RedisConnection]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.redis")
    connection = await connect()
    assert connection.up and connection.connected == 1
    assert [r.getMessage().split()[0] for r in caplog.records] == ["redis.up"]


async def test_redis_going_away_and_coming_back_is_one_log_line_each_way_and_reconnects_by_itself(
    redis_server: RedisServer, connect: Callable[..., Awaitable[RedisConnection]], caplog: pytest.LogCaptureFixture
) -> None:
    connection = await connect(check_interval=0.1, backoff_max=0.2)
    caplog.set_level(logging.INFO, "gateway.redis")
    caplog.clear()  # from here on: the transitions only
    redis_server.stop()
    await eventually(lambda: not connection.up, 3, "seen down")
    for _ in range(5):  # callers failing meanwhile add no line
        connection.failed("feed", redis.ConnectionError("refused"))
    await asyncio.sleep(0.5)  # several reconnection attempts fail meanwhile: still no new line
    redis_server.start()
    await eventually(lambda: connection.up, 3, "back up")
    assert [r.getMessage().split()[0] for r in caplog.records] == ["redis.down", "redis.up"]
    assert connection.connected == 2
    assert connection.failures["feed"] == 5 and connection.failures["ping"] >= 2


async def test_a_gateway_started_while_redis_is_away_comes_up_when_it_arrives(redis_server: RedisServer) -> None:
    redis_server.stop()
    connection = RedisConnection(redis_server.url, backoff_max=0.2)
    try:
        await connection.start()
        assert not connection.up
        redis_server.start()
        await eventually(lambda: connection.up, 3, "up once Redis is there")
    finally:
        await connection.aclose()


# ------------------------------------------------------------------------------------------ the feed


async def test_a_revocation_published_on_one_replica_is_held_by_every_replica_within_a_second(
    replica: Callable[[], Awaitable[RedisFeed]],
) -> None:
    first, second, third = await replica(), await replica(), await replica()
    revocation = revoked_session()
    await first.publish(revocation)
    assert first.deny_list.is_revoked("sess_1", None, None)  # the replica that heard it: at once
    took = await eventually(
        lambda: all(feed.deny_list.is_revoked("sess_1", None, None) for feed in (second, third)), 1, "delivered"
    )
    assert took < 1


async def test_a_new_replica_loads_the_live_revocations(replica: Callable[[], Awaitable[RedisFeed]]) -> None:
    first = await replica()
    await first.publish(revoked_session("sess_old"))
    await first.publish(Revocation("user", "user_gone", time.time(), time.time() + 3600))
    late = await replica()
    assert late.deny_list.is_revoked("sess_old", None, None)
    assert late.deny_list.is_revoked(None, "user_gone", time.time() - 10)
    assert not late.deny_list.is_revoked(None, "user_gone", time.time() + 10)  # a token issued after it


async def test_revocations_survive_a_redis_restarted_without_persistence(
    redis_server: RedisServer, replica: Callable[[], Awaitable[RedisFeed]]
) -> None:
    first, second = await replica(), await replica()
    await first.publish(revoked_session("sess_before"))
    await eventually(lambda: second.deny_list.is_revoked("sess_before", None, None), 1, "delivered")
    redis_server.restart()
    await eventually(lambda: first.synchronised >= 2 and second.synchronised >= 2, 5, "resynchronised")
    late = await replica()
    assert late.deny_list.is_revoked("sess_before", None, None)


async def test_a_revocation_heard_while_redis_is_away_applies_here_at_once_and_reaches_the_others_after(
    redis_server: RedisServer, replica: Callable[[], Awaitable[RedisFeed]]
) -> None:
    first, second = await replica(), await replica()
    redis_server.stop()
    await eventually(lambda: not first.connection.up, 3, "down")
    await first.publish(revoked_session("sess_during"))
    assert first.deny_list.is_revoked("sess_during", None, None)
    redis_server.start()
    await eventually(lambda: second.deny_list.is_revoked("sess_during", None, None), 5, "re-published")


async def test_expired_revocations_are_neither_loaded_nor_written_back(
    replica: Callable[[], Awaitable[RedisFeed]],
) -> None:
    first = await replica()
    await first.publish(revoked_session("sess_short", retention=0.3))
    await eventually(lambda: not first.deny_list.is_revoked("sess_short", None, None), 2, "expired")
    late = await replica()
    assert len(late.deny_list) == 0


async def test_a_malformed_message_on_the_channel_is_ignored(replica: Callable[[], Awaitable[RedisFeed]]) -> None:
    first = await replica()
    client = first.connection.client
    for junk in (b"not json", b"[]", b'{"type": "revocation", "kind": "nobody"}'):
        await client.publish("gateway:revocations", junk)
    await first.publish(revoked_session("sess_after_junk"))
    await eventually(lambda: first.deny_list.is_revoked("sess_after_junk", None, None), 1, "still following")
    assert len(first.deny_list) == 1


async def test_changes_reach_the_listeners_of_every_replica_once(
    replica: Callable[[], Awaitable[RedisFeed]],
) -> None:
    first, second = await replica(), await replica()
    heard: dict[str, list[str]] = {"first": [], "second": []}
    first.listeners.on_user_changed(lambda change: heard["first"].append(change.subject_id))
    second.listeners.on_user_changed(lambda change: heard["second"].append(change.subject_id))
    await first.publish_change(Change("user", "user_alice", time.time()))
    await eventually(lambda: heard["second"] == ["user_alice"], 1, "delivered")
    await asyncio.sleep(0.1)  # its own message came back by now: not heard twice
    assert heard == {"first": ["user_alice"], "second": ["user_alice"]}


async def test_a_webhook_message_is_first_delivered_once_across_replicas(
    replica: Callable[[], Awaitable[RedisFeed]],
) -> None:
    first, second = await replica(), await replica()
    assert await first.first_delivery("msg_1", 60) is True
    assert await second.first_delivery("msg_1", 60) is False
    assert await first.first_delivery("msg_1", 60) is False
    assert await second.first_delivery("msg_2", 60) is True


async def test_a_forgotten_delivery_is_a_first_delivery_again_on_every_replica(
    replica: Callable[[], Awaitable[RedisFeed]],
) -> None:
    first, second = await replica(), await replica()
    assert await first.first_delivery("msg_failed", 60) is True
    await first.forget_delivery("msg_failed")  # its application failed: Clerk delivers it again
    assert await second.first_delivery("msg_failed", 60) is True
    assert await first.first_delivery("msg_failed", 60) is False


async def test_webhook_de_duplication_falls_back_to_this_process_while_redis_is_away(
    redis_server: RedisServer, replica: Callable[[], Awaitable[RedisFeed]]
) -> None:
    first = await replica()
    redis_server.stop()
    await eventually(lambda: not first.connection.up, 3, "down")
    assert await first.first_delivery("msg_away", 60) is True
    assert await first.first_delivery("msg_away", 60) is False


# -------------------------------------------------------------------------------- the refresh lock


class SlowBackend:
    """A refresh call that takes `seconds` and is counted."""

    def __init__(self, seconds: float = 0.2, answer: ApiResponse = ANSWER) -> None:
        self.seconds = seconds
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> ApiResponse:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return self.answer


async def flights(connect: Callable[..., Awaitable[RedisConnection]], count: int, **options: float) -> list[
    RedisRefreshFlight
]:
    return [RedisRefreshFlight(await connect(), Sealer(SECRET), **options) for _ in range(count)]


@pytest.mark.parametrize(
    ("what", "call_seconds", "options"),
    [
        ("a quick Backend API", 0.05, {}),
        ("a Backend API slower than the lease (renewed meanwhile)", 1.2, {"lease": 0.3}),
    ],
)
async def test_replicas_refreshing_the_same_session_make_one_call_and_share_its_answer(
    connect: Callable[..., Awaitable[RedisConnection]], what: str, call_seconds: float, options: dict[str, float]
) -> None:
    replicas = await flights(connect, 3, **options)
    backend = SlowBackend(call_seconds)
    answers = await asyncio.gather(*(flight.run(PARTS, backend) for flight in replicas))
    assert backend.calls == 1, what
    assert answers == [ANSWER] * 3
    assert sum(flight.answers_shared for flight in replicas) == 2


async def test_a_refresh_whose_holder_died_is_taken_over_when_its_lease_lapses(
    connect: Callable[..., Awaitable[RedisConnection]],
) -> None:
    (flight,) = await flights(connect, 1, lease=0.3)
    # What a replica killed mid-call leaves: the lock, with the lease it last had, and no answer.
    name = "gateway:refresh:" + Sealer(SECRET).digest(*PARTS)
    await flight._connection.client.set(name + ":lock", b"dead-replica", px=300)
    backend = SlowBackend(0.01)
    started = time.monotonic()
    assert await flight.run(PARTS, backend) == ANSWER
    assert backend.calls == 1 and 0.2 < time.monotonic() - started < 2


async def test_a_transient_failure_is_not_shared_and_the_next_refresh_tries_again(
    connect: Callable[..., Awaitable[RedisConnection]],
) -> None:
    first, second = await flights(connect, 2)
    failing = SlowBackend(0.01, ApiResponse(503, None, body_is_json=False))
    assert (await first.run(PARTS, failing)).status == 503
    working = SlowBackend(0.01)
    assert await second.run(PARTS, working) == ANSWER
    assert working.calls == 1


async def test_the_shared_answer_is_sealed_and_no_token_names_a_key(
    connect: Callable[..., Awaitable[RedisConnection]],
) -> None:
    (flight,) = await flights(connect, 1)
    await flight.run(PARTS, SlowBackend(0.01))
    client = flight._connection.client
    keys = [key async for key in client.scan_iter(match="gateway:refresh:*")]
    assert len(keys) == 1 and keys[0].endswith(b":answer")
    stored = await client.get(keys[0])
    assert all(secret.encode() not in key + stored for key in keys for secret in (TOKEN, REFRESH_TOKEN, "sess_1"))
    other_instance = RedisRefreshFlight(flight._connection, Sealer("sk_test_another_instance"))
    other_backend = SlowBackend(0.01)
    await other_instance.run(PARTS, other_backend)
    assert other_backend.calls == 1  # another secret names other keys and cannot open this answer


async def test_with_redis_away_the_refresh_is_made_here_and_never_fails(
    redis_server: RedisServer, connect: Callable[..., Awaitable[RedisConnection]]
) -> None:
    (flight,) = await flights(connect, 1)
    redis_server.stop()
    backend = SlowBackend(0.01)
    # The first call may be the one that finds Redis gone (it fails over); the next sees it down.
    assert [await flight.run(PARTS, backend) for _ in range(2)] == [ANSWER, ANSWER]
    assert backend.calls == 2
    assert flight._connection.failures["refresh"] <= 1


class LooksTooEarly(RedisRefreshFlight):
    """A replica whose first look came just before the holder stored its answer (the race's window)."""

    looked = 0

    async def _shared_answer(self, answer_key: str) -> ApiResponse | None:
        self.looked += 1
        return None if self.looked == 1 else await super()._shared_answer(answer_key)


async def test_a_replica_that_takes_the_lock_just_after_the_holder_released_it_uses_the_stored_answer(
    connect: Callable[..., Awaitable[RedisConnection]],
) -> None:
    (holder,) = await flights(connect, 1)
    backend = SlowBackend(0.01)
    await holder.run(PARTS, backend)  # answered, stored, released
    late = LooksTooEarly(await connect(), Sealer(SECRET))
    assert await late.run(PARTS, backend) == ANSWER
    assert backend.calls == 1 and late.looked == 2
    lock = "gateway:refresh:" + Sealer(SECRET).digest(*PARTS) + ":lock"
    assert await late._connection.client.exists(lock) == 0  # and it let go of the lock it took
