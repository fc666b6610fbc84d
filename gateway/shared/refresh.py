"""One session refresh for all replicas: a lock per refresh in Redis, the answer shared for a moment.

Why: a browser whose token just expired sends its burst of requests through a load balancer to every
replica; each replica's own single-flight collapses its share into one call, and this collapses the
replicas' calls into one. With rotating refresh tokens a second call would fail, so the lock is a
lease renewed while the Backend API call runs (a slow Backend API does not let a second refresh
through), and a holder that died lets its lease lapse so another replica takes over.

The answer holds a session token, so it is sealed (`sealing.Sealer`) and kept `result_ttl` seconds;
the names are digests of what identifies the refresh, never a token. Waiters poll the answer's key with
a short backoff: at most a couple of replicas wait for one key, for well under a second.

Whenever Redis is not up, or fails mid-way before the call was made, the call is made here: the
per-process single-flight still collapses this replica's burst, so the cost of Redis being away is at
most one refresh per replica, never a failed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from gateway.clerk.asks import ApiResponse
from gateway.shared.connection import RedisConnection
from gateway.shared.sealing import Sealer

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _worth_sharing(response: ApiResponse) -> bool:
    """As the per-process flight: definitive answers only; a transient failure deserves a new try."""
    return response.status is not None and response.status < 500


class RedisRefreshFlight:
    """`run(parts, call)`: the answer of the one `call` made by any replica for these `parts`."""

    def __init__(
        self,
        connection: RedisConnection,
        sealer: Sealer,
        *,
        namespace: str = "gateway",
        lease: float = 3.0,
        result_ttl: float = 5.0,
        wait_limit: float = 20.0,
        poll_initial: float = 0.005,
        poll_max: float = 0.05,
    ) -> None:
        self._connection = connection
        self._sealer = sealer
        self._prefix = f"{namespace}:refresh:"
        self._lease_ms = max(1, int(lease * 1000))
        self._result_ms = max(1, int(result_ttl * 1000))
        self._wait_limit = wait_limit
        self._poll_initial = poll_initial
        self._poll_max = poll_max
        client = connection.client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.answers_shared = 0
        """Refreshes answered by another replica's call (observability, tests)."""

    def name_for(self, parts: tuple[str, ...]) -> str:
        """The Redis name of one refresh's lock and answer: keyed by this instance's secret, never a token."""
        return self._prefix + self._sealer.digest(*parts)

    async def run(self, parts: tuple[str, ...], call: Callable[[], Awaitable[ApiResponse]]) -> ApiResponse:
        connection = self._connection
        if not connection.up:
            return await call()
        name = self.name_for(parts)
        lock_key, answer_key = name + ":lock", name + ":answer"
        owner = os.urandom(16).hex()
        client = connection.client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_limit
        delay = self._poll_initial
        try:
            while True:
                if (answer := await self._shared_answer(answer_key)) is not None:
                    return answer
                if await client.set(lock_key, owner, nx=True, px=self._lease_ms):
                    # The holder before us stores its answer, then releases: between our look and our lock
                    # it may have done both, so look once more before calling.
                    if (answer := await self._shared_answer(answer_key)) is not None:
                        await self._release(keys=[lock_key], args=[owner])
                        return answer
                    break
                if loop.time() >= deadline:
                    return await call()  # the holder outlived any Backend API timeout: go on alone
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._poll_max)
        except (redis.RedisError, OSError) as error:
            connection.failed("refresh", error)
            return await call()
        return await self._hold(lock_key, answer_key, owner, call)

    async def _shared_answer(self, answer_key: str) -> ApiResponse | None:
        sealed = await self._connection.client.get(answer_key)
        if isinstance(sealed, bytes) and (answer := self._decode(sealed, answer_key)) is not None:
            self.answers_shared += 1
            return answer
        return None

    async def _hold(
        self, lock_key: str, answer_key: str, owner: str, call: Callable[[], Awaitable[ApiResponse]]
    ) -> ApiResponse:
        """Make the call under the lock, renewing its lease meanwhile; share the answer, release the lock."""
        renewing = asyncio.create_task(self._keep_lease(lock_key, owner))
        try:
            answer = await call()
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        try:
            if _worth_sharing(answer):
                await self._connection.client.set(answer_key, self._encode(answer, answer_key), px=self._result_ms)
            await self._release(keys=[lock_key], args=[owner])
        except (redis.RedisError, OSError) as error:
            self._connection.failed("refresh", error)
        return answer

    async def _keep_lease(self, lock_key: str, owner: str) -> None:
        interval = self._lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self._renew(keys=[lock_key], args=[owner, self._lease_ms]):
                    return  # lost (Redis restarted): the others may refresh; nothing to keep
            except (redis.RedisError, OSError) as error:
                self._connection.failed("refresh", error)
                return

    def _encode(self, answer: ApiResponse, key: str) -> bytes:
        plain = json.dumps({"status": answer.status, "body": answer.body, "json": answer.body_is_json}).encode()
        return self._sealer.seal(plain, key)

    def _decode(self, sealed: bytes, key: str) -> ApiResponse | None:
        plain = self._sealer.open(sealed, key)
        if plain is None:
            return None  # another instance's secret, or tampered with: not an answer for us
        try:
            fields = json.loads(plain)
            return ApiResponse(status=fields["status"], body=fields["body"], body_is_json=fields["json"])
        except (ValueError, KeyError, TypeError):
            return None
