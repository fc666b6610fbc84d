"""Requests/s of candidate upstream clients at a fixed concurrency, against the echo upstream.

    .venv/bin/python -m bench.upstream_clients [--concurrency 64] [--seconds 5]

The upstream (tests/support/upstream.py) runs in its own process so client and server do not share a
core's GIL; each client (the gateway's own `Http1UpstreamClient`, aiohttp's, httpx's) sends small
`GET /_/status/204` requests from `concurrency` tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from gateway.upstream.http1 import Http1UpstreamClient


def _serve(port_out: multiprocessing.connection.Connection) -> None:
    from tests.support.upstream import EchoUpstream

    async def main() -> None:
        upstream = EchoUpstream()
        await upstream.start()
        port_out.send(upstream.url)
        await asyncio.Event().wait()

    asyncio.run(main())


async def _measure(send_one: Callable[[], Awaitable[None]], concurrency: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await send_one()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def run(url: str, concurrency: int, seconds: float) -> None:
    target = url + "/_/status/204"
    client = Http1UpstreamClient(connect_timeout=5.0, read_timeout=30.0, limit=256)
    await client.start()
    head = [(b"host", target.split("/")[2].encode())]
    try:

        async def http1_one() -> None:
            async with client.request("GET", target, head, None) as response:
                async for _ in response.iter_body():
                    pass

        print(f"Http1UpstreamClient:   {await _measure(http1_one, concurrency, seconds):8.0f} req/s")
    finally:
        await client.aclose()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def aiohttp_one() -> None:
            async with session.get(target) as response:
                await response.read()

        print(f"aiohttp ClientSession: {await _measure(aiohttp_one, concurrency, seconds):8.0f} req/s")
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits) as client:

        async def httpx_one() -> None:
            await client.get(target)

        print(f"httpx AsyncClient:     {await _measure(httpx_one, concurrency, seconds):8.0f} req/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    receiver, sender = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(sender,), daemon=True)
    server.start()
    try:
        url = receiver.recv()
        asyncio.run(run(url, arguments.concurrency, arguments.seconds))
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
