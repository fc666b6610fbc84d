"""MachineTokenAnswers: one verify call per token at a time, answers kept for the revocation window and
never past the token's expiry, only definitive answers kept."""

from __future__ import annotations

import asyncio

import pytest

from gateway.clerk.asks import ApiResponse, VerifyMachineToken
from gateway.clerk_api.machine_tokens import MachineTokenAnswers

ASK = VerifyMachineToken("api_key", "ak_secret")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Verify:
    def __init__(self, *replies: ApiResponse) -> None:
        self.replies = list(replies)
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, ask: VerifyMachineToken) -> ApiResponse:
        self.calls += 1
        await self.release.wait()
        return self.replies[min(self.calls, len(self.replies)) - 1]


def answers(verify: Verify, clock: FakeClock, window: float = 10.0, maxsize: int = 100) -> MachineTokenAnswers:
    return MachineTokenAnswers(verify, revocation_window=window, clock=clock, maxsize=maxsize)


async def test_concurrent_asks_for_one_token_share_one_call() -> None:
    verify = Verify(ApiResponse(200, {"id": "ak_1", "subject": "user_1"}))
    verify.release.clear()
    cache = answers(verify, FakeClock())
    waiting = [asyncio.create_task(cache.answer(ASK)) for _ in range(20)]
    await asyncio.sleep(0)
    verify.release.set()
    assert {reply.status for reply in await asyncio.gather(*waiting)} == {200}
    assert verify.calls == 1 == cache.calls_started


async def test_an_answer_is_kept_for_the_revocation_window_only() -> None:
    clock = FakeClock()
    verify = Verify(ApiResponse(200, {"id": "ak_1"}), ApiResponse(404, {}))
    cache = answers(verify, clock)
    assert (await cache.answer(ASK)).status == 200
    clock.now += 9.9
    assert (await cache.answer(ASK)).status == 200 and verify.calls == 1
    clock.now += 0.2
    assert (await cache.answer(ASK)).status == 404 and verify.calls == 2


async def test_an_answer_never_outlives_the_tokens_expiry() -> None:
    clock = FakeClock()
    expires_ms = (clock.now + 3) * 1000
    verify = Verify(ApiResponse(200, {"id": "ak_1", "expiration": expires_ms}), ApiResponse(404, {}))
    cache = answers(verify, clock)
    await cache.answer(ASK)
    clock.now += 2.9
    await cache.answer(ASK)
    assert verify.calls == 1
    clock.now += 0.1
    assert (await cache.answer(ASK)).status == 404 and verify.calls == 2


async def test_an_already_expired_answer_is_not_kept() -> None:
    clock = FakeClock()
    verify = Verify(ApiResponse(200, {"id": "ak_1", "expiration": (clock.now - 1) * 1000}))
    cache = answers(verify, clock)
    await cache.answer(ASK)
    assert len(cache) == 0


@pytest.mark.parametrize("reply", [ApiResponse(None), ApiResponse(401, {}), ApiResponse(500, {}), ApiResponse(429, {})])
async def test_failures_are_asked_again(reply: ApiResponse) -> None:
    verify = Verify(reply)
    cache = answers(verify, FakeClock())
    await cache.answer(ASK)
    await cache.answer(ASK)
    assert verify.calls == 2 and len(cache) == 0


async def test_a_zero_window_keeps_nothing() -> None:
    verify = Verify(ApiResponse(200, {"id": "ak_1"}))
    cache = answers(verify, FakeClock(), window=0)
    await cache.answer(ASK)
    await cache.answer(ASK)
    assert verify.calls == 2


async def test_the_cache_is_bounded_and_holds_no_token_in_clear() -> None:
    verify = Verify(ApiResponse(404, {}))
    cache = answers(verify, FakeClock(), maxsize=3)
    for number in range(5):
        await cache.answer(VerifyMachineToken("api_key", f"ak_{number}"))
    assert len(cache) == 3
    assert all(b"ak_" not in key for key in cache._answers)


async def test_tokens_of_different_kinds_are_kept_apart() -> None:
    verify = Verify(ApiResponse(200, {"id": "x"}))
    cache = answers(verify, FakeClock())
    await cache.answer(VerifyMachineToken("api_key", "same"))
    await cache.answer(VerifyMachineToken("m2m_token", "same"))
    assert verify.calls == 2
