"""SingleFlight: one call per key at a time, shared by every waiter, briefly reused afterwards."""

from __future__ import annotations

import asyncio

import pytest

from gateway.clerk_api.single_flight import SingleFlight


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedCall:
    """A call that blocks until released and counts how often it really ran."""

    def __init__(self, result: object = "result") -> None:
        self.started = 0
        self.release = asyncio.Event()
        self.result = result

    async def __call__(self) -> object:
        self.started += 1
        await self.release.wait()
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


async def test_concurrent_callers_of_one_key_share_one_call() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    call = GatedCall()
    waiters = [asyncio.create_task(flight.run("k", call)) for _ in range(20)]
    await asyncio.sleep(0)
    call.release.set()
    assert await asyncio.gather(*waiters) == ["result"] * 20
    assert call.started == 1
    assert flight.calls_started == 1
    assert not flight.is_running("k")


async def test_different_keys_run_separately() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    first, second = GatedCall("a"), GatedCall("b")
    first.release.set()
    second.release.set()
    assert list(await asyncio.gather(flight.run("a", first), flight.run("b", second))) == ["a", "b"]
    assert (first.started, second.started) == (1, 1)


async def test_cancelling_one_waiter_does_not_cancel_the_shared_call() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    call = GatedCall()
    impatient = asyncio.create_task(flight.run("k", call))
    patient = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    call.release.set()
    assert await patient == "result"
    assert call.started == 1


async def test_the_call_finishes_even_if_every_waiter_gave_up() -> None:
    flight: SingleFlight[str, object] = SingleFlight(result_ttl=5)
    call = GatedCall()
    waiter = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0)
    waiter.cancel()
    call.release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)
    assert await flight.run("k", call) == "result"
    assert call.started == 1


async def test_an_exception_reaches_every_waiter_and_is_not_cached() -> None:
    flight: SingleFlight[str, object] = SingleFlight(result_ttl=5)
    failing = GatedCall(RuntimeError("boom"))
    waiters = [asyncio.create_task(flight.run("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    failing.release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    succeeding = GatedCall("fine")
    succeeding.release.set()
    assert await flight.run("k", succeeding) == "fine"


async def test_a_finished_result_is_reused_until_its_ttl_passes() -> None:
    clock = FakeClock()
    flight: SingleFlight[str, object] = SingleFlight(result_ttl=3, clock=clock)
    call = GatedCall()
    call.release.set()
    await flight.run("k", call)
    clock.now += 2.9
    await flight.run("k", call)
    assert call.started == 1
    clock.now += 0.2
    await flight.run("k", call)
    assert call.started == 2


async def test_cache_if_keeps_only_the_results_it_accepts() -> None:
    flight: SingleFlight[str, object] = SingleFlight(result_ttl=3, cache_if=lambda result: result != "transient")
    call = GatedCall("transient")
    call.release.set()
    await flight.run("k", call)
    await flight.run("k", call)
    assert call.started == 2


async def test_a_none_result_is_cached_like_any_other() -> None:
    flight: SingleFlight[str, object] = SingleFlight(result_ttl=3)
    call = GatedCall(None)
    call.release.set()
    assert await flight.run("k", call) is None
    assert await flight.run("k", call) is None
    assert call.started == 1


async def test_aclose_cancels_running_calls() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    call = GatedCall()
    waiter = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0)
    await flight.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not flight.is_running("k")
