"""Collapse concurrent identical calls into one, and reuse its result for a moment afterwards.

Why: a browser whose session token just expired may fire dozens of requests carrying the same expired
token and refresh token; refreshing it once per request would hammer Clerk and, with rotating refresh
tokens, make all but one fail. The JWKS cache has the same shape of problem (many requests waiting for
one key fetch). One `asyncio.Task` per key does the work; every caller awaits it through
`asyncio.shield`, so a caller that is cancelled (client went away) leaves the shared call running for
the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _always(_: object) -> bool:
    return True


class SingleFlight(Generic[K, V]):
    """Runs at most one call per key at a time; callers of the same key share its outcome.

    `result_ttl` > 0 keeps a finished call's result for that many seconds (measured by `clock`) so a
    burst arriving just after completion reuses it too; `cache_if` chooses which results are worth
    keeping (e.g. not transient failures). Exceptions are shared by the waiters of that call but never
    cached.
    """

    def __init__(
        self,
        *,
        result_ttl: float = 0.0,
        max_results: int = 4096,
        cache_if: Callable[[V], bool] = _always,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._in_flight: dict[K, asyncio.Task[V]] = {}
        self._results: TTLCache[K, V] | None = (
            TTLCache(maxsize=max_results, ttl=result_ttl, timer=clock) if result_ttl > 0 else None
        )
        self._cache_if = cache_if
        self.calls_started = 0
        """How many times a call really ran (observability; the rest were shared or cached)."""

    def is_running(self, key: K) -> bool:
        return key in self._in_flight

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        """Return the result of `call()`, or of the identical call already running or just finished."""
        if self._results is not None:
            # A missing key and an expired entry both raise KeyError; `get` would conflate None results.
            try:
                return self._results[key]
            except KeyError:
                pass
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self.calls_started += 1
            self._in_flight[key] = task
            # Registered before any waiter's callback, so the bookkeeping is done when waiters resume.
            task.add_done_callback(lambda finished: self._finish(key, finished))
        return await asyncio.shield(task)

    def _finish(self, key: K, task: asyncio.Task[V]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if task.cancelled():
            return
        # Reading the exception marks it retrieved even if every waiter was cancelled meanwhile.
        if task.exception() is not None:
            return
        result = task.result()
        if self._results is not None and self._cache_if(result):
            self._results[key] = result

    async def aclose(self) -> None:
        """Cancel the calls still running (shutdown) and wait for them to unwind."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
