"""The bounded load test: 20,000 requests over 200 connections against `gateway serve` on loopback.

10% of the requests are hostile (forged, tampered, expired-looking or garbage tokens, spoofed identity
headers); the rest carry one of 200 users' valid session tokens. The echo app answers with the user id
it was given, so each response is matched against its own request's token. The gateway runs in its
own process (granian, one worker), so its RSS is its own: measured after a warm-up and at the end.

    .venv/bin/pytest -q -p no:cacheprovider -m slow tests/load -s

Environment knobs: LOAD_REQUESTS (20000), LOAD_CONNECTIONS (200), LOAD_SERVER (granian).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from tests.support.faults import mint_token, serve_environment
from tests.support.upstream import unused_port, upstream_in_thread

REQUESTS = int(os.environ.get("LOAD_REQUESTS", "20000"))
CONNECTIONS = int(os.environ.get("LOAD_CONNECTIONS", "200"))
SERVER = os.environ.get("LOAD_SERVER", "granian")
USERS = 200
HOSTILE_SHARE = 0.10
HOST = "app.test:8000"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def tree_rss_kib(pid: int) -> int:
    """RSS of the server process and its children (granian runs the app in a worker process)."""
    total = rss_kib(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else ():
        total += tree_rss_kib(int(child))
    return total


def hostile_headers(rng: random.Random, tokens: list[str]) -> dict[str, str]:
    token, other = rng.sample(tokens, 2)
    header, payload, signature = token.split(".")
    kind = rng.randrange(8)
    forged = [
        f"{header}.{payload}.",  # stripped signature
        f"{header}.{payload}.{signature[::-1]}",  # scrambled signature
        f"{header}.{other.split('.')[1]}.{signature}",  # someone else's claims, this signature
        "e30.e30.",  # {}.{}
        "garbage",
        "a" * rng.randrange(1, 4000),
        f"{header}.{payload}",
        f"{token}.extra",
    ][kind]
    headers = {"authorization": f"Bearer {forged}", "accept": "application/json"}
    if rng.random() < 0.5:
        headers["x-clerk-user-id"] = "user_0"
        headers["x_clerk_auth_status"] = "signed-in"
    return headers


@pytest.mark.slow
def test_bounded_load_has_no_5xx_no_identity_mix_ups_and_flat_memory(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(
        "".join(
            f'[[users]]\nid = "user_{i}"\nemail = "user{i}@example.com"\npassword = "password-{i}"\n\n'
            for i in range(USERS)
        )
    )
    with EmulatorServer(seed=seed, token_lifetime=3600) as clerk, upstream_in_thread() as echo:
        tokens = [mint_token(clerk, f"user_{i}") for i in range(USERS)]
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        environment = serve_environment(clerk, echo.url, port, GATEWAY_API_PATHS="/api/*")
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--server", SERVER],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(500):
                try:
                    if httpx.get(f"{base}/__gateway/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
            else:
                raise AssertionError("the gateway did not become ready")
            figures = asyncio.run(_load(base, tokens, process.pid))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    print(
        f"\nload: {figures['sent']} requests over {CONNECTIONS} connections in {figures['seconds']:.1f} s "
        f"({figures['sent'] / figures['seconds']:.0f} req/s); hostile {figures['hostile']}; "
        f"5xx {figures['errors']}; transport errors {figures['transport_errors']}; mix-ups {figures['mix_ups']}; "
        f"hostile let in {figures['let_in']}; RSS {figures['rss_before'] / 1024:.1f} MiB after warm-up, "
        f"{figures['rss_after'] / 1024:.1f} MiB at the end"
    )
    assert figures["sent"] == REQUESTS
    assert figures["errors"] == 0 and figures["transport_errors"] == 0
    assert figures["mix_ups"] == 0 and figures["let_in"] == 0
    assert figures["rss_after"] - figures["rss_before"] < 32 * 1024, figures  # KiB: flat, not a leak


async def _load(base: str, tokens: list[str], pid: int) -> dict[str, float]:
    rng = random.Random(20261124)
    counts = {"sent": 0, "hostile": 0, "errors": 0, "transport_errors": 0, "mix_ups": 0, "let_in": 0}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(index: int) -> None:
            hostile = rng.random() < HOSTILE_SHARE
            user = index % len(tokens)
            headers = (
                hostile_headers(rng, tokens)
                if hostile
                else {"authorization": f"Bearer {tokens[user]}", "accept": "application/json"}
            )
            headers["host"] = HOST
            counts["sent"] += 1
            counts["hostile"] += hostile
            try:
                async with session.get(f"{base}/api/whoami/{index}", headers=headers) as response:
                    body = await response.json(content_type=None)
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, ValueError):
                counts["transport_errors"] += 1
                return
            if status >= 500:
                counts["errors"] += 1
                return
            seen = {name.lower().replace("_", "-"): value for name, value in body.get("headers", [])}
            if hostile:
                if status == 200 and (seen.get("x-clerk-auth-status") == "signed-in" or "x-clerk-user-id" in seen):
                    counts["let_in"] += 1
                    print("let in:", headers["authorization"][:120])
            elif (
                status != 200 or seen.get("x-clerk-user-id") != f"user_{user}" or body["path"] != f"/api/whoami/{index}"
            ):
                counts["mix_ups"] += 1

        async def run(indices: range) -> None:
            queue = iter(indices)

            async def worker() -> None:
                for index in queue:
                    await one(index)

            await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))

        warm_up = min(2000, REQUESTS // 10)
        started = time.perf_counter()
        await run(range(warm_up))
        rss_before = tree_rss_kib(pid)
        await run(range(warm_up, REQUESTS))
        seconds = time.perf_counter() - started
        rss_after = tree_rss_kib(pid)
    return {**counts, "seconds": seconds, "rss_before": rss_before, "rss_after": rss_after}
