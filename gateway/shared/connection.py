"""One Redis connection per process: whether it is up, reconnection with backoff, failure counts.

Why a module of its own: the feed and the refresh flight both need to know whether Redis answers right
now and to say when it stopped answering, and the operator wants one log line per change (not one per
failed call), a gauge and a counter. A monitor task pings Redis while it is up (every `check_interval`)
and, once it is down, retries with exponential backoff (capped) until it answers again; callers that see
a failure report it (`failed`), which marks the connection down at once and wakes the monitor.

Callers never wait for the monitor: they look at `up` and go on without Redis when it is False.
`connected` is a counter of transitions to up, so a subscriber can tell it must resynchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.settings.values import RedisUrl

logger = logging.getLogger("gateway.redis")

OPERATIONS = ("ping", "feed", "dedupe", "refresh")
"""What failure counts are kept for (the metric's `operation` label)."""


class RedisConnection:
    """Owns the `redis.asyncio` client of one process; constructible outside a runtime (reload keeps it)."""

    def __init__(
        self,
        url: str,
        *,
        check_interval: float = 1.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        command_timeout: float = 1.0,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self.url = url
        # One try per command: the monitor, not redis-py's own retry loop, decides when to try again,
        # and a caller on a request's path must learn of a failure fast.
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=command_timeout,
            socket_connect_timeout=command_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.up = False
        self.connected = 0
        """How many times the connection came up (a subscriber resynchronises when this moves)."""
        self.failures: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self._check_interval = check_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._random = random_source
        self._known = False  # no verdict logged yet: the first one is logged whichever it is
        self._wake = asyncio.Event()
        self._came_up = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try once (so a gateway that starts with Redis up serves shared from its first request), then
        leave the monitor running; a second call does nothing."""
        if self._monitor is not None:
            return
        await self._check()
        self._monitor = asyncio.create_task(self._watch(), name="redis-monitor")

    async def wait_up(self) -> None:
        """Until the connection is up (subscribers wait here while Redis is away)."""
        while not self.up:
            self._came_up.clear()
            await self._came_up.wait()

    def failed(self, operation: str, error: BaseException) -> None:
        """A command failed: count it, and mark the connection down (logged once) until a ping answers."""
        self.failures[operation] = self.failures.get(operation, 0) + 1
        if self.up or not self._known:
            self._mark_down(error)
        self._wake.set()

    async def _watch(self) -> None:
        delay = self._backoff_initial
        while True:
            if self.up:
                delay = self._backoff_initial
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._check_interval):
                        await self._wake.wait()
                self._wake.clear()
            else:
                # Full jitter: replicas that lost Redis together do not all come back in the same instant.
                await asyncio.sleep(delay * (0.5 + self._random() / 2))
                delay = min(delay * 2, self._backoff_max)
            await self._check()

    async def _check(self) -> None:
        try:
            await self.client.ping()
        except (redis.RedisError, OSError, TimeoutError) as error:
            self.failures["ping"] += 1
            if self.up or not self._known:
                self._mark_down(error)
            return
        if not self.up:
            self.up = True
            self._known = True
            self.connected += 1
            self._came_up.set()
            logger.info("redis.up url=%s", _masked(self.url))

    def _mark_down(self, error: BaseException) -> None:
        self.up = False
        self._known = True
        # The error's text names host and port, never the password (it is in the URL only).
        logger.warning("redis.down url=%s error=%s; serving from local state, reconnecting", _masked(self.url),
                       type(error).__name__ + (f": {error}" if str(error) else ""))  # fmt: skip

    async def aclose(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await self.client.aclose()


def _masked(url: str) -> str:
    return RedisUrl(url).masked
