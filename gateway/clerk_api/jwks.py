"""The JWKS cache: the verification keys the hot path reads, and the one place that fetches them.

Why it is more than Clerk's SDK cache (PROTOCOL.md §7.3): a gateway sees every request of every user,
so it must not turn traffic into JWKS calls. Hence one fetch at a time however many requests wait
(single-flight), at most one fetch per `min_refetch_interval` whatever the reason (a flood of forged
`kid`s stays one call), and stale keys kept while Clerk is unreachable (verification keys rotate
rarely; refusing every session because the JWKS endpoint blinked would be worse). Keys are parsed
once per fetch; a request only looks one up in the immutable `KeySet` snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from jwt.exceptions import PyJWTError

from gateway.clerk.asks import ApiResponse, FetchKeys, KeyFailure, KeysAnswer
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.jwk import EMPTY_KEY_SET, KeySet, key_set_from_jwks
from gateway.clerk_api.single_flight import SingleFlight

logger = logging.getLogger(__name__)

DEFAULT_TTL = 300.0
DEFAULT_MIN_REFETCH_INTERVAL = 5.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_BASE = 0.125
DEFAULT_FETCH_DEADLINE = 10.0
NO_SIGNING_KEYS_MESSAGE = "The JWKS endpoint did not contain any signing keys. Contact support@clerk.com."
INVALID_SECRET_KEY_CODE = "clerk_key_invalid"
_FLIGHT = "jwks"  # the single key of the single-flight: there is one JWKS per cache


class JwksSource(Protocol):
    """Where keys come from: `BackendApi` in production, anything answering the same in tests."""

    @property
    def jwks_url(self) -> str: ...

    def fetch_jwks(self) -> Awaitable[ApiResponse]: ...


def _is_transient(response: ApiResponse) -> bool:
    """Worth another try: no response at all, rate limited, or a server-side failure."""
    return response.status is None or response.status == 429 or response.status >= 500


def _error_with_code(body: Any, code: str) -> Mapping[str, Any] | None:
    """The Clerk error envelope's entry (`{"errors": [{"code": …}]}`) with that code, if any."""
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if not isinstance(errors, list):
        return None
    for error in errors:
        if isinstance(error, Mapping) and error.get("code") == code:
            return error
    return None


class JwksCache:
    """The current `KeySet` plus the policy for replacing it from `source` (see the module docstring).

    `clock`, `sleep` and `jitter` are injectable so tests move time instead of waiting. Counters
    (`fetch_count`, `request_count`, `failure_count`, `last_success_at`, `last_failure`)
    are plain attributes for observability; times are `clock()` values.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        ttl: float = DEFAULT_TTL,
        min_refetch_interval: float = DEFAULT_MIN_REFETCH_INTERVAL,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        fetch_deadline: float | None = DEFAULT_FETCH_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._source = source
        self._ttl = ttl
        self._min_refetch_interval = min_refetch_interval
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._fetch_deadline = fetch_deadline
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._keys: KeySet = EMPTY_KEY_SET
        self._last_attempt_at: float | None = None
        self._flight: SingleFlight[str, KeysAnswer] = SingleFlight()
        self._background: set[asyncio.Task[KeysAnswer]] = set()
        self.fetch_count = 0
        """Fetches started (each may make up to `max_attempts` HTTP requests)."""
        self.request_count = 0
        """HTTP requests made to the JWKS endpoint, retries included."""
        self.failure_count = 0
        """Fetches that ended without a new key set."""
        self.last_success_at: float | None = None
        self.last_failure: KeyFailure | None = None
        """Why the latest fetch failed; cleared by the next success."""

    @property
    def current(self) -> KeySet:
        """The latest good key set, possibly stale; no I/O, safe on the hot path."""
        return self._keys

    @property
    def is_stale(self) -> bool:
        """Never loaded, or the last successful load is older than the TTL."""
        return self.last_success_at is None or self._clock() - self.last_success_at >= self._ttl

    async def load(self) -> KeysAnswer:
        """Fetch at startup. A failure is reported in the answer, and the cache keeps working empty."""
        return await self._fetch_if_allowed()

    async def answer(self, ask: FetchKeys) -> KeysAnswer:
        """Answer the core's `FetchKeys`: fetch when stale or when the `kid` is unknown, within the limits.

        When the refetch interval has not passed, the current snapshot is the answer at once; the core
        then decides `jwk-kid-mismatch` for an unknown `kid`.
        """
        if not self.is_stale and (ask.kid is None or ask.kid in self._keys.by_kid):
            return self._snapshot_answer()
        return await self._fetch_if_allowed()

    async def refresh_if_stale(self) -> KeysAnswer:
        """Refetch if the TTL has passed (subject to the refetch interval); otherwise answer at once."""
        if not self.is_stale:
            return self._snapshot_answer()
        return await self._fetch_if_allowed()

    def adopt(self, other: JwksCache) -> bool:
        """Take `other`'s keys when this cache has none (a reloaded runtime while the JWKS endpoint fails:
        the keys of the runtime it replaces still verify). True when keys were taken."""
        if len(self._keys) > 0 or len(other._keys) == 0:
            return False
        self._keys = other._keys
        self.last_success_at = other.last_success_at
        return True

    def refresh_in_background_if_stale(self) -> None:
        """For the hot path: keep serving `current` while a refetch runs, instead of making a request wait.

        Needs a running event loop. The task is kept here (so it is not garbage-collected) and cancelled
        by `aclose()`.
        """
        if not self.is_stale or self._flight.is_running(_FLIGHT) or not self._may_fetch_now():
            return
        task = asyncio.create_task(self._fetch_if_allowed())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Cancel background and shared fetches (application shutdown)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._flight.aclose()

    def _may_fetch_now(self) -> bool:
        """The refetch interval has passed since the last fetch started (or none ever did)."""
        if self._last_attempt_at is None:
            return True
        return self._clock() - self._last_attempt_at >= self._min_refetch_interval

    async def _fetch_if_allowed(self) -> KeysAnswer:
        """Join the running fetch, start one if the interval allows, or answer with what we have."""
        if not self._flight.is_running(_FLIGHT):
            if not self._may_fetch_now():
                return self._snapshot_answer()
            # Recorded before the first await so that every request arriving meanwhile sees it.
            self._last_attempt_at = self._clock()
        return await self._flight.run(_FLIGHT, self._fetch)

    def _snapshot_answer(self) -> KeysAnswer:
        # Stale keys still verify: a failure only matters to the core when there is nothing to use.
        failure = self.last_failure if len(self._keys) == 0 else None
        return KeysAnswer(keys=self._keys, failure=failure)

    async def _fetch(self) -> KeysAnswer:
        self.fetch_count += 1
        try:
            if self._fetch_deadline is None:
                response = await self._fetch_with_retries()
            else:
                async with asyncio.timeout(self._fetch_deadline):
                    response = await self._fetch_with_retries()
        except TimeoutError:
            response = ApiResponse(status=None)
        outcome = self._interpret(response)
        if isinstance(outcome, KeySet):
            self._keys = outcome
            self.last_success_at = self._clock()
            self.last_failure = None
            logger.info("clerk_api.jwks_loaded keys=%d", len(outcome))
        else:
            self.failure_count += 1
            self.last_failure = outcome
            logger.warning(
                "clerk_api.jwks_failed reason=%s message=%r serving_stale_keys=%d",
                outcome.reason,
                outcome.message,
                len(self._keys),
            )
        return self._snapshot_answer()

    async def _fetch_with_retries(self) -> ApiResponse:
        """Up to `max_attempts` requests, backing off `backoff_base × 2ⁿ` (jittered ×0.5–1.5) between them."""
        for attempt in range(self._max_attempts):
            self.request_count += 1
            response = await self._source.fetch_jwks()
            if not _is_transient(response) or attempt == self._max_attempts - 1:
                return response
            await self._sleep(self._backoff_base * 2**attempt * (0.5 + self._jitter()))
        raise AssertionError("unreachable: the last attempt always returns")

    def _interpret(self, response: ApiResponse) -> KeySet | KeyFailure:
        """Map one JWKS response to a key set or to Clerk's failure reasons (PROTOCOL.md §7.3)."""
        url = self._source.jwks_url
        if response.status is None:
            return KeyFailure("unexpected-error", f"Failed to fetch the JWKS from {url}: no response.")
        if not response.body_is_json:
            # Clerk's SDK calls response.json() here and throws: not a verification error.
            return KeyFailure("unexpected-error", f"The JWKS response from {url} (code={response.status}) is not JSON.")
        if not 200 <= response.status < 300:
            invalid_key = _error_with_code(response.body, INVALID_SECRET_KEY_CODE)
            if invalid_key is not None:
                message = invalid_key.get("message")
                return KeyFailure(
                    "secret-key-invalid",
                    message if isinstance(message, str) and message else "The secret key is invalid.",
                )
            message = f"Error loading Clerk JWKS from {url} with code={response.status}"
            return KeyFailure("jwk-remote-failed-to-load", message)
        try:
            keys = key_set_from_jwks(response.body)
        except ClerkProtocolError as error:
            return KeyFailure("jwk-remote-invalid", error.message)
        except PyJWTError as error:
            # key_set_from_jwks lets PyJWT's InvalidKeyError through (an RSA entry without `n`/`e`).
            return KeyFailure("jwk-remote-invalid", f"A JWKS key could not be parsed: {error}")
        if len(keys) == 0:
            return KeyFailure("jwk-remote-failed-to-load", NO_SIGNING_KEYS_MESSAGE)
        return keys
