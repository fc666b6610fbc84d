"""A sample upstream app for tests (and a tiny ASGI server helper), over real loopback HTTP.

`EchoUpstream` is an aiohttp.web app that tells the test what it received and can misbehave on
request. It runs in the test's own event loop (`async with running_upstream() as upstream`), or in a
background thread with its own loop for synchronous tests (`with upstream_in_thread() as upstream`).
It listens before `start()` returns: no readiness polling.

Endpoints (anything else is the echo):
* `*  /<anything>`            JSON `{method, path, query, headers: [[name, value], ...], body_bytes, body_sha256}`;
                              `path`/`query` are the raw bytes of the request line (as text), header names
                              keep the case they had on the wire
* `GET /_/cookies`            three `Set-Cookie` headers
* `GET /_/redirect?to=URL&status=302`   a redirect to `to`
* `GET /_/stream?bytes=N&chunked=1`     N bytes (`Content-Length` unless `chunked=1`)
* `POST /_/upload`            `{bytes, sha256}` of the body, read in chunks
* `GET /_/slow?seconds=S`     answers after S seconds (or at shutdown)
* `GET /_/reset`              promises 1 MiB, sends 64 KiB, then resets the connection
* `GET /_/status/{code}`      an empty answer with that status (e.g. 204, 304)
* `GET /_/big-header?bytes=N` a response header `X-Big` of N bytes
* `GET /_/gzip`               a gzip-encoded body (`Content-Encoding: gzip`) of `hello` * 100
* `GET /_/ws`                 WebSocket echo (subprotocols `chat`, `superchat`); the text `close:<code>`
                              makes the server close with that code; close codes received from the
                              client are recorded in `websocket_close_codes`
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiohttp import WSMsgType, web

CHUNK = 64 * 1024
_PATTERN = bytes(range(256)) * (CHUNK // 256)


@dataclass
class EchoUpstream:
    url: str = ""
    websocket_close_codes: list[int] = field(default_factory=list)
    websocket_closed: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=0)
        app.router.add_get("/_/cookies", self._cookies)
        app.router.add_get("/_/redirect", self._redirect)
        app.router.add_get("/_/stream", self._stream)
        app.router.add_post("/_/upload", self._upload)
        app.router.add_get("/_/slow", self._slow)
        app.router.add_get("/_/reset", self._reset)
        app.router.add_route("*", "/_/status/{code}", self._status)
        app.router.add_get("/_/big-header", self._big_header)
        app.router.add_get("/_/gzip", self._gzip)
        app.router.add_get("/_/ws", self._websocket)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------------------------ handlers

    async def _echo(self, request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        path, _, query = request.raw_path.partition("?")
        document: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "query": query,
            "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in request.raw_headers],
            "body_bytes": size,
            "body_sha256": digest.hexdigest(),
        }
        return web.json_response(document)

    async def _cookies(self, request: web.Request) -> web.Response:
        response = web.Response(text="cookies")
        for cookie in ("a=1; Path=/", "b=2; Path=/; HttpOnly", "c=3; Path=/; Secure; SameSite=Lax"):
            response.headers.add("Set-Cookie", cookie)
        return response

    async def _redirect(self, request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query.get("to", "/")})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        total = int(request.query.get("bytes", "0"))
        response = web.StreamResponse()
        if request.query.get("chunked") == "1":
            response.enable_chunked_encoding()
        else:
            response.content_length = total
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        remaining = 0 if request.method == "HEAD" else total
        while remaining > 0:
            piece = _PATTERN if remaining >= CHUNK else _PATTERN[:remaining]
            await response.write(piece)
            remaining -= len(piece)
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"bytes": size, "sha256": digest.hexdigest()})

    async def _slow(self, request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), float(request.query.get("seconds", "5")))
        return web.Response(text="finally")

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1024 * 1024
        await response.prepare(request)
        await response.write(_PATTERN)
        transport = request.transport
        assert transport is not None
        transport.abort()
        raise asyncio.CancelledError  # the connection is gone: nothing left to finish

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def _big_header(self, request: web.Request) -> web.Response:
        return web.Response(text="big", headers={"X-Big": "x" * int(request.query.get("bytes", "32768"))})

    async def _gzip(self, request: web.Request) -> web.Response:
        body = gzip.compress(b"hello" * 100)
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket_ = web.WebSocketResponse(protocols=("chat", "superchat"))
        await socket_.prepare(request)
        async for message in socket_:
            if message.type == WSMsgType.TEXT:
                if message.data == "headers?":  # what the upgrade request carried, as the HTTP echo says it
                    await socket_.send_json(
                        [[name.decode("latin-1"), value.decode("latin-1")] for name, value in request.raw_headers]
                    )
                    continue
                if message.data.startswith("close:"):
                    await socket_.close(code=int(message.data.split(":", 1)[1]), message=b"asked to")
                    break
                await socket_.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await socket_.send_bytes(message.data)
        if socket_.close_code is not None:
            self.websocket_close_codes.append(socket_.close_code)
        self.websocket_closed.set()
        return socket_


@contextlib.asynccontextmanager
async def running_upstream() -> AsyncIterator[EchoUpstream]:
    upstream = EchoUpstream()
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


@contextlib.contextmanager
def upstream_in_thread() -> Iterator[EchoUpstream]:
    """The echo app on its own event loop in a daemon thread (for synchronous tests)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    upstream: EchoUpstream | None = None

    async def create() -> EchoUpstream:
        created = EchoUpstream()
        await created.start()
        return created

    def run() -> None:
        nonlocal upstream
        asyncio.set_event_loop(loop)
        upstream = loop.run_until_complete(create())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="echo-upstream", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("the echo upstream did not start")
    assert upstream is not None
    try:
        yield upstream
    finally:
        asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def unused_port() -> int:
    """A port nothing listens on (bound, then closed): connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def serving_asgi(app: Any, **options: Any) -> AsyncIterator[str]:
    """Serve a raw ASGI app with uvicorn in this event loop on a free port; yields its base URL.

    The socket listens before uvicorn starts, so a request may be sent immediately (it waits in the
    backlog): no readiness polling. `Server` and `Date` headers are off so tests see only the app's,
    and uvicorn's own `X-Forwarded-*` handling is off.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    port = listener.getsockname()[1]
    settings: dict[str, Any] = {
        "lifespan": "off",
        "log_level": "warning",
        "server_header": False,
        "date_header": False,
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and rewrite `client`/`scheme`
        # itself; the gateway decides that (gateway/forwarded.py).
        "proxy_headers": False,
        "timeout_graceful_shutdown": 2,
        **options,
    }
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        listener.close()
