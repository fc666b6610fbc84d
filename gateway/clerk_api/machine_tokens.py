"""Answers of the Backend API's machine-token verify endpoints, shared and kept for a few seconds.

Why: an API client sends the same opaque token (`ak_`, `mt_`, `oat_`) with every request, and Clerk's
SDK calls the Backend API for each one. Here concurrent requests with one token share one call
(`SingleFlight`) and an answer is reused for at most `revocation_window` seconds (default
`DEFAULT_REVOCATION_WINDOW`, 10 s), and never past the token's own `expiration`: a token revoked at
Clerk is refused here within that window. Only definitive answers are kept (a verified token, or
404 "no such token"); a 401 (our secret key), a 5xx or a transport failure is asked again next time.

Entries are keyed by a digest of the token, so the cache holds no token in clear.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from hashlib import blake2b

from gateway.clerk.asks import ApiResponse, VerifyMachineToken
from gateway.clerk.tokens import is_js_number
from gateway.clerk_api.single_flight import SingleFlight

DEFAULT_REVOCATION_WINDOW = 10.0


def _key(ask: VerifyMachineToken) -> bytes:
    return blake2b(f"{ask.token_type}\x00{ask.token}".encode("utf-8", "surrogatepass"), digest_size=16).digest()


class MachineTokenAnswers:
    """A bounded map (oldest entry out first) of verify answers with their end of validity."""

    def __init__(
        self,
        verify: Callable[[VerifyMachineToken], Awaitable[ApiResponse]],
        *,
        maxsize: int = 10_000,
        revocation_window: float = DEFAULT_REVOCATION_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verify = verify
        self._maxsize = maxsize
        self.revocation_window = revocation_window
        self._clock = clock
        self._answers: dict[bytes, tuple[float, ApiResponse]] = {}
        self._flights: SingleFlight[bytes, ApiResponse] = SingleFlight()

    @property
    def calls_started(self) -> int:
        """Verify calls that really went out (the rest were shared or answered from the cache)."""
        return self._flights.calls_started

    async def answer(self, ask: VerifyMachineToken) -> ApiResponse:
        key = _key(ask)
        kept = self._answers.get(key)
        if kept is not None:
            if kept[0] > self._clock():
                return kept[1]
            del self._answers[key]
        reply = await self._flights.run(key, lambda: self._verify(ask))
        self._keep(key, reply)
        return reply

    def _keep(self, key: bytes, reply: ApiResponse) -> None:
        if self.revocation_window <= 0 or reply.status not in (200, 404):
            return
        now = self._clock()
        until = now + self.revocation_window
        body = reply.body
        expiration = body.get("expiration") if isinstance(body, dict) else None
        if reply.status == 200 and isinstance(expiration, int | float) and is_js_number(expiration):
            until = min(until, float(expiration) / 1000)
        if until <= now:
            return
        answers = self._answers
        answers.pop(key, None)
        answers[key] = (until, reply)
        if len(answers) > self._maxsize:
            del answers[next(iter(answers))]

    def __len__(self) -> int:
        return len(self._answers)

    async def aclose(self) -> None:
        await self._flights.aclose()
