"""Three real `gateway serve` replicas (one worker each) behind a real nginx (round robin), sharing a
real redis-server, in front of the echo app, with the Clerk emulator sending its signed webhooks.

What several replicas must do together (README, "Running several replicas"):
* a burst with the same expired session token, spread over the three, makes one Backend API refresh;
* a revocation webhook received by one replica is enforced by all three within a second;
* a replica killed during load costs at most its in-flight requests; Redis restarted (empty, no
  persistence) during load costs none, and revocations made before it are still honoured after it,
  by the replicas that lived through it and by one that joins afterwards.

The figures are printed as plain `replicas: ...` lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from gateway.emulator.webhooks import new_signing_secret
from tests.support.browser import FETCH
from tests.support.redis_server import RedisServer, needs_redis, running_redis
from tests.support.replicas import (
    NGINX,
    OffsetClock,
    Replica,
    browser_cookies,
    environment_for_replicas,
    round_robin_nginx,
)
from tests.support.upstream import EchoUpstream, upstream_in_thread

pytestmark = [
    needs_redis,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (`make test` installs it): replicas not run"),
]

HOST = "app.test"
REPLICAS = 3


@dataclass
class Cluster:
    clerk: EmulatorServer
    clock: OffsetClock
    redis: RedisServer
    replicas: list[Replica]
    front: str  # nginx

    def refresh_calls(self) -> int:
        """Counted by the emulator, read over HTTP as an operator would (`/v1/__emulator/state`)."""
        state = httpx.get(
            f"{self.clerk.bapi_url}/v1/__emulator/state",
            headers={"authorization": f"Bearer {self.clerk.secret_key}"}, timeout=5,
        ).json()  # fmt: skip
        return int(state["calls"].get("refresh", 0))

    def revoke(self, session_id: str) -> None:
        """Revoke through the Backend API: the emulator then sends `session.revoked` to its webhook endpoints."""
        answer = httpx.post(
            f"{self.clerk.bapi_url}/v1/sessions/{session_id}/revoke",
            headers={"authorization": f"Bearer {self.clerk.secret_key}"}, timeout=5,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    clock = OffsetClock()
    secret = new_signing_secret()
    upstream: EchoUpstream
    with running_redis(tmp) as redis, upstream_in_thread() as upstream:
        clerk = EmulatorServer(clock=clock, token_lifetime=60, webhook_secret=secret).start()
        environment = {
            **environment_for_replicas(),
            "CLERK_PUBLISHABLE_KEY": clerk.publishable_key,
            "CLERK_SECRET_KEY": clerk.secret_key,
            "CLERK_API_URL": clerk.api_url,
            "CLERK_FAPI_URL": clerk.fapi_url,
            "CLERK_WEBHOOK_SIGNING_SECRET": secret,
            "GATEWAY_UPSTREAM": upstream.url,
            "GATEWAY_API_PATHS": "/api/*",
            "GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_REDIS_URL": redis.url,
        }
        replicas = [Replica(f"replica-{n}", environment, tmp / f"replica-{n}.log") for n in range(1, REPLICAS + 1)]
        try:
            for replica in replicas:
                replica.launch()
            for replica in replicas:
                replica.wait_ready()
            # Clerk's webhooks reach one replica only: the feed must carry them to the others.
            clerk.webhooks.add_url(f"{replicas[0].url}/__gateway/webhooks/clerk")
            with round_robin_nginx(tmp, [replica.port for replica in replicas]) as front:
                yield Cluster(clerk, clock, redis, replicas, front)
        finally:
            for replica in replicas:
                replica.stop()
            clerk.stop()


def report(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    with capsys.disabled():
        print()
        for line in lines:
            print(f"replicas: {line}")


async def get(client: httpx.AsyncClient, url: str, cookie: str) -> httpx.Response:
    return await client.get(f"{url}/api/items", headers={"host": HOST, "cookie": cookie, **FETCH})


def identity_of(response: httpx.Response) -> str | None:
    headers = {name.lower(): value for name, value in response.json()["headers"]}
    return headers.get("x-clerk-user-id")


def proxied(replica: Replica) -> float:
    return replica.metric("gateway_requests_total", route_class="proxy")


# ------------------------------------------------------------------------------------------ refresh


async def test_a_burst_with_one_expired_token_over_three_replicas_makes_one_refresh_call(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = browser_cookies(cluster.clerk, cluster.clock, "user_alice", age=120)  # expired a minute ago
    before_calls = cluster.refresh_calls()
    before_spread = [proxied(replica) for replica in cluster.replicas]
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
        answers = await asyncio.gather(*(get(client, cluster.front, browser.cookie) for _ in range(50)))
    spread = [int(proxied(replica) - before) for replica, before in zip(cluster.replicas, before_spread, strict=True)]
    calls = cluster.refresh_calls() - before_calls
    failures = sum(answer.status_code != 200 for answer in answers)
    report(capsys, f"burst of 50 requests with one expired token: failures={failures} "
                   f"per replica={spread} Backend API refresh calls={calls}")  # fmt: skip
    assert [answer.status_code for answer in answers] == [200] * 50
    assert {identity_of(answer) for answer in answers} == {"user_alice"}
    assert all(answer.headers.get_list("set-cookie") for answer in answers)  # every one carries the new token
    assert all(count > 0 for count in spread), spread
    assert calls == 1


# ---------------------------------------------------------------------------------------- revocation


async def refused_everywhere(cluster: Cluster, cookie: str, within: float) -> list[float]:
    """Seconds until each replica (asked directly, not through nginx) refuses `cookie` as revoked."""
    started = time.monotonic()
    refused_after: list[float | None] = [None] * len(cluster.replicas)
    async with httpx.AsyncClient(timeout=5) as client:
        while None in refused_after:
            assert time.monotonic() - started < within, f"still accepted after {within}s: {refused_after}"
            for index, replica in enumerate(cluster.replicas):
                if refused_after[index] is None:
                    answer = await get(client, replica.url, cookie)
                    if answer.status_code == 401:
                        assert answer.json()["reason"] == "session-revoked", answer.text
                        refused_after[index] = time.monotonic() - started
            await asyncio.sleep(0.005)
    return [seconds for seconds in refused_after if seconds is not None]


async def test_a_revocation_webhook_to_one_replica_is_enforced_by_all_three_within_a_second(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = browser_cookies(cluster.clerk, cluster.clock, "user_bob")
    async with httpx.AsyncClient(timeout=5) as client:
        for replica in cluster.replicas:  # signed in everywhere first (and remembered: memo, token cache)
            assert (await get(client, replica.url, browser.cookie)).status_code == 200
    cluster.revoke(browser.session_id)
    refused_after = await refused_everywhere(cluster, browser.cookie, within=5)
    report(capsys, "time to refuse a revoked session on every replica (webhook to replica-1 only): "
                   + " ".join(f"{seconds * 1000:.0f}ms" for seconds in refused_after))  # fmt: skip
    assert max(refused_after) < 1.0


# ------------------------------------------------------------------------------------------ failures


@dataclass
class Load:
    """`workers` clients sending signed-in GETs through nginx until `stop` (or `limit` requests)."""

    url: str
    cookie: str
    workers: int = 16
    limit: int = 20_000
    sent: int = 0
    in_flight: int = 0
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, seconds_at_most: float = 60) -> None:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=self.workers)) as client:
            async with asyncio.timeout(seconds_at_most):
                await asyncio.gather(*(self._worker(client) for _ in range(self.workers)))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set() and self.sent < self.limit:
            self.sent += 1
            self.in_flight += 1
            try:
                answer = await get(client, self.url, self.cookie)
                if answer.status_code != 200 or identity_of(answer) != "user_alice":
                    self.failures.append(f"{answer.status_code} {answer.text[:80]}")
            except httpx.HTTPError as error:
                self.failures.append(type(error).__name__)
            finally:
                self.in_flight -= 1

    async def until_sent(self, count: int) -> None:
        while self.sent < count:
            await asyncio.sleep(0.005)


async def test_a_replica_killed_during_load_costs_at_most_its_in_flight_requests(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    load = Load(cluster.front, browser_cookies(cluster.clerk, cluster.clock, "user_alice").cookie)
    running = asyncio.create_task(load.run())
    await load.until_sent(300)
    victim = cluster.replicas[2]
    in_flight_at_kill = load.in_flight
    victim.kill()
    await load.until_sent(load.sent + 600)
    load.stop.set()
    await running
    report(capsys, f"replica killed during load: requests={load.sent} failures={len(load.failures)} "
                   f"in flight at the kill={in_flight_at_kill}")  # fmt: skip
    assert len(load.failures) <= in_flight_at_kill, load.failures[:5]
    victim.launch()  # back for the next test
    victim.wait_ready()


async def test_redis_restarted_during_load_costs_nothing_and_earlier_revocations_still_hold(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    revoked = browser_cookies(cluster.clerk, cluster.clock, "user_bob")
    cluster.revoke(revoked.session_id)
    await refused_everywhere(cluster, revoked.cookie, within=5)
    synchronised = [replica.metric("gateway_revocation_feed_synchronisations_total") for replica in cluster.replicas]

    load = Load(cluster.front, browser_cookies(cluster.clerk, cluster.clock, "user_alice").cookie)
    running = asyncio.create_task(load.run())
    await load.until_sent(300)
    await asyncio.to_thread(cluster.redis.restart)  # killed (nothing saved) and started again, empty
    restarted_at = load.sent
    await load.until_sent(load.sent + 600)
    load.stop.set()
    await running

    # Each replica reconnected by itself and wrote back what it holds into the empty Redis.
    deadline = time.monotonic() + 10
    while not all(
        replica.metric("gateway_revocation_feed_synchronisations_total") > before
        for replica, before in zip(cluster.replicas, synchronised, strict=True)
    ):
        assert time.monotonic() < deadline, "the replicas did not resynchronise with the restarted Redis"
        await asyncio.sleep(0.05)
    down = [replica.metric("gateway_redis_up") for replica in cluster.replicas]
    # A replica that joins now knows the revocation from Redis alone (no webhook, no other source).
    newcomer = cluster.replicas[1]
    newcomer.stop()
    newcomer.launch()
    newcomer.wait_ready()
    async with httpx.AsyncClient(timeout=5) as client:
        after = [await get(client, replica.url, revoked.cookie) for replica in cluster.replicas]
    report(capsys, f"redis restarted during load: requests={load.sent} (restart after {restarted_at}) "
                   f"failures={len(load.failures)}; revoked before the restart, refused after it by "
                   f"{sum(answer.status_code == 401 for answer in after)}/{len(after)} replicas "
                   "(one of them started after the restart)")  # fmt: skip
    assert load.failures == []
    assert down == [1.0] * REPLICAS
    assert [(answer.status_code, answer.json().get("reason")) for answer in after] == [(401, "session-revoked")] * 3
