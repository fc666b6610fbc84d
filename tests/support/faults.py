"""Servers that fail on purpose, a gateway on its own thread, raw-socket requests and minted tokens.

* `FaultyProxy`: an HTTP reverse proxy (aiohttp) in front of a real server (the emulator's BAPI or FAPI)
  that, for chosen path prefixes, resets the connection, answers 503, answers garbage or hangs.
* `garbage_server()`: a TCP server that answers every connection with bytes that are not HTTP.
* `gateway_in_thread(settings)`: a gateway (full lifespan) served by uvicorn on its own event loop, for
  synchronous tests (hypothesis) and for load generators that run in the test's loop.
* `raw_request(url, data)`: send literal bytes, read the answer until the server closes or goes quiet.
* `mint_token(clerk, user_id)`: a session token for a new session of a seeded user, as Clerk would sign it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

from gateway.edge.app import create_app
from gateway.emulator.server import EmulatorServer
from gateway.emulator.tokens import mint_session_token
from gateway.settings import Settings
from tests.support.upstream import serving_asgi

Fault = Literal["pass", "reset", "error", "garbage", "hang"]


@dataclass
class FaultyProxy:
    """`faults` maps a path prefix (e.g. `/v1/jwks`) to what happens to requests under it."""

    target: str
    faults: dict[str, Fault] = field(default_factory=dict)
    url: str = ""
    hits: dict[str, int] = field(default_factory=dict)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    def fault(self, prefix: str, fault: Fault) -> None:
        self.faults[prefix] = fault

    def _fault_for(self, path: str) -> Fault:
        for prefix, fault in self.faults.items():
            if path.startswith(prefix):
                return fault
        return "pass"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._fault_for(request.path)
        self.hits[fault] = self.hits.get(fault, 0) + 1
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if fault == "error":
            return web.Response(status=503, text="<html>upstream connect error</html>", content_type="text/html")
        if fault == "garbage":
            return web.Response(status=200, body=b'{"keys": [ \x00\xff not json', content_type="application/json")
        if fault == "hang":
            await self._stopping.wait()
            return web.Response(status=503)
        assert self._session is not None
        headers = {name: value for name, value in request.headers.items() if name.lower() not in ("host",)}
        async with self._session.request(
            request.method, self.target + request.path_qs, headers=headers, data=await request.read(),
            allow_redirects=False,
        ) as answer:  # fmt: skip
            body = await answer.read()
            response = web.Response(status=answer.status, body=body)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    response.headers.add(name, value)
            return response


@contextlib.asynccontextmanager
async def faulty_proxy(target: str, faults: dict[str, Fault] | None = None) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(target, dict(faults or {}))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def garbage_server(answer: bytes = b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http\r\n\r\n") -> AsyncIterator[str]:
    """A TCP server that reads a little, writes `answer` and closes: an app that is not speaking HTTP."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read(1024)
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class ThreadedGateway:
    url: str
    app: Any

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


@contextlib.contextmanager
def gateway_in_thread(settings: Settings, clock: Any = None) -> Iterator[ThreadedGateway]:
    """A full gateway on its own event loop in a daemon thread; stopped (lifespan shutdown) on exit."""
    loop = asyncio.new_event_loop()
    app = create_app(settings, clock=clock)
    ready = threading.Event()
    stop = asyncio.Event()
    url: list[str] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        async with serving_asgi(app, lifespan="on") as served:
            url.append(served)
            ready.set()
            await stop.wait()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as error:  # reported to the test
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    if not ready.wait(timeout=20) or failure:
        raise RuntimeError(f"the gateway did not start: {failure!r}")
    try:
        yield ThreadedGateway(url[0], app)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=20)
        loop.close()


def raw_request(url: str, data: bytes, *, timeout: float = 3.0) -> bytes:
    """Send `data` as is to the server at `url`; everything it answers until it closes or is quiet."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(data)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(response: bytes) -> int:
    """The status code of the first response in `response` (0 when nothing was answered)."""
    if not response.startswith(b"HTTP/"):
        return 0
    return int(response.split(b" ", 2)[1])


def mint_token(clerk: EmulatorServer, user_id: str, *, authorized_party: str | None = None) -> str:
    """A session token for a new active session of `user_id`, signed by the emulator's current key."""
    state = clerk.state
    user = state.user(user_id)
    assert user is not None, user_id
    session = state.create_session(state.new_client(), user, "password")
    return mint_session_token(
        state, clerk.instance.keys, session, authorized_party=authorized_party, issuer=clerk.config.issuer
    )


def serve_environment(clerk: EmulatorServer, upstream_url: str, port: int, **settings: str) -> dict[str, str]:
    """The environment of a `gateway serve` subprocess in front of `upstream_url`, talking to `clerk`."""
    return {
        **os.environ,
        "CLERK_PUBLISHABLE_KEY": clerk.publishable_key,
        "CLERK_SECRET_KEY": clerk.secret_key,
        "CLERK_API_URL": clerk.api_url,
        "CLERK_FAPI_URL": clerk.fapi_url,
        "GATEWAY_UPSTREAM": upstream_url,
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_ACCESS_LOG": "false",
        **settings,
    }
