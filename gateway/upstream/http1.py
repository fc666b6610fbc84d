"""A thin HTTP/1.1 client for the proxy's hot path: asyncio Protocols, `httptools` (llhttp) and a LIFO
keep-alive pool.

Why not aiohttp's client: a raw ASGI proxy (granian, 1 core, 64 connections, small answers) did 6,800
req/s over aiohttp's `ClientSession`, 26,500 over a bare Protocol + httptools prototype and 22,500 over
this client; most of aiohttp's cost is generality this proxy never uses (cookie jars, redirects, tracing,
multidict headers, timeouts re-armed per read). WebSockets still go through aiohttp
(`AiohttpUpstreamClient`, made by this client for the first WebSocket).

How it behaves:
* one request at a time per connection; a new `HttpResponseParser` per request; the request head is one
  `transport.write`, sent as given (names, values, path and query bytes untouched); the only header ever
  added is `transfer-encoding: chunked` for a body without `content-length`; a header value or target
  holding CR or LF is refused (`ValueError`: it could smuggle headers or a second request);
* the request body is sent by a task of its own while the response is read (an app may answer early, or
  echo as it reads), with write back-pressure; once the response is complete the body is not sent further;
* the response body is buffered in the protocol and handed out by `iter_body` (buffered chunks coalesced
  up to 64 KiB); reading pauses above 256 KiB buffered and resumes at 64 KiB;
* 1xx interim answers (100, 103) are skipped; `HEAD` answers end with their headers (llhttp cannot be told
  the method: bytes that follow make the connection unusable); an answer with neither `content-length`
  nor chunked ends when the connection closes (never reused); a framed body cut short is an error, and
  so is a response head over `max_header_size` bytes or `MAX_HEADERS` fields;
* bytes past an answer's framing (a body on a `HEAD`, `204` or `304` answer, more than `content-length`,
  garbage after the last chunk) never reach the next request: the answer stands and the connection is
  closed. An answer that has no body by rule but announces one (`HEAD`, `204`, `304` with a non-zero
  `content-length` or chunked) is never reused, as the app may send that body after the answer was
  handed out; bytes that still come late on a reused connection (the first bytes of its answer are no
  status line) make the request count as never answered there: retried once, like a stale connection;
* a connection goes back to the pool only after a complete exchange: message complete, keep-alive (as
  llhttp says inside `on_message_complete`: afterwards it has reset), request body fully sent, response
  body fully handed out, no stray bytes, no error; anything else closes it (early exit, cancellation);
* pool: LIFO idle connections per origin, `limit` connections in all, FIFO waiters at the limit (where an
  idle connection to another origin is closed to make room), idle connections older than
  `keepalive_timeout` dropped when met, connections the app closed while idle removed;
* a reused connection that dies before any byte of the answer (the app closed it while it was idle) is
  retried once on a new connection, only for idempotent requests without a body (GET, HEAD, OPTIONS,
  TRACE, PUT, DELETE: RFC 9110 §9.2.2): the request may have reached the app, and a POST or PATCH must
  not be performed twice (it fails: 502). A pooled connection found closed before the request is written
  (at checkout) is never used, whatever the method: the request goes to another one;
* timeouts: `connect_timeout` (TCP and TLS); `read_timeout` of silence, measured from the last byte
  received or body chunk sent, by one timer per connection that re-arms for the remainder when it fires
  (nothing is re-armed per chunk), and that does not count while reading is paused for the consumer.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from urllib.parse import urlsplit

import httptools

from gateway.upstream.client import (
    UpstreamBodyError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
    UpstreamWebSocket,
    describe_error,
)
from gateway.upstream.websocket import AiohttpUpstreamClient

BODY_CHUNK = 64 * 1024  # `iter_body` joins buffered chunks up to this size
READ_HIGH_WATER = 256 * 1024  # buffered response bytes above which reading pauses
READ_LOW_WATER = 64 * 1024  # ... and at or below which it resumes
MAX_HEADERS = 256

_PARSE_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)

# Methods a request of which may be sent again after a connection failed (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class _Stop(Exception):
    """Raised in a parser callback to stop parsing (the reason is in `_Connection.error`)."""


class _Origin:
    """Where to connect for one `scheme://host:port`, and its idle connections (newest last)."""

    __slots__ = ("host", "idle", "label", "port", "server_hostname", "ssl")

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.server_hostname = host if ssl_context is not None else None
        self.label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.idle: deque[_Connection] = deque()


class _Connection(asyncio.Protocol):
    """One upstream connection and the state of the exchange in progress on it (the parser's callbacks)."""

    __slots__ = (
        "body_sent",
        "buffered",
        "chunks",
        "client",
        "clock",
        "closed",
        "counted",
        "drain_waiter",
        "error",
        "extra",
        "head_bytes",
        "head_only",
        "headers",
        "headers_done",
        "idle_since",
        "in_pool",
        "interim",
        "keep_alive",
        "last_activity",
        "loop",
        "message_done",
        "origin",
        "parser",
        "reading_paused",
        "received",
        "retryable",
        "reused",
        "status",
        "timer",
        "transport",
        "waiter",
        "write_paused",
    )

    def __init__(self, client: Http1UpstreamClient, origin: _Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.origin = origin
        self.loop = loop
        self.clock = client._clock
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.parser: httptools.HttpResponseParser | None = None  # None: no exchange in progress
        self.chunks: deque[bytes] = deque()
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.buffered = 0
        self.head_bytes = 0
        self.headers_done = False
        self.message_done = False
        self.keep_alive = False
        self.head_only = False
        self.interim = False
        self.extra = False
        self.body_sent = True
        self.received = False
        self.retryable = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reading_paused = False
        self.write_paused = False
        self.closed = False
        self.counted = True  # holds one of the client's `limit` slots
        self.in_pool = False
        self.reused = False
        self.last_activity = 0.0
        self.idle_since = 0.0

    # ---------------------------------------------------------------------------------- exchanges

    def begin(self, head_only: bool, has_body: bool, now: float) -> None:
        """Reset the per-exchange state for a new request (the head is written by the caller)."""
        self.parser = httptools.HttpResponseParser(self)
        self.headers = []
        self.status = 0
        self.head_bytes = 0
        self.headers_done = self.message_done = self.keep_alive = self.interim = False
        self.extra = self.received = self.retryable = False
        self.error = None
        self.head_only = head_only
        self.body_sent = not has_body
        self.last_activity = now
        if self.timer is None:
            self.timer = self.loop.call_at(now + self.client.read_timeout, self._on_timer)

    def fail(self, error: BaseException) -> None:
        """The exchange cannot go on: keep the first reason, drop the connection, wake whoever waits."""
        if self.error is None:
            self.error = error
        self.closed = True
        self.transport.abort()
        self._wake()
        self._wake_drain()

    def take(self) -> bytes:
        """The next piece of buffered body: buffered chunks joined up to `BODY_CHUNK` bytes."""
        chunks = self.chunks
        chunk = chunks.popleft()
        if chunks and len(chunk) < BODY_CHUNK:
            size = len(chunk)
            parts = [chunk]
            while chunks and size + len(chunks[0]) <= BODY_CHUNK:
                piece = chunks.popleft()
                parts.append(piece)
                size += len(piece)
            if len(parts) > 1:
                chunk = b"".join(parts)
        self.buffered -= len(chunk)
        if self.reading_paused and self.buffered <= READ_LOW_WATER:
            self.reading_paused = False
            self.last_activity = self.clock()
            self.transport.resume_reading()
        return chunk

    async def drain(self) -> None:
        """Until the transport's write buffer is below its high-water mark again."""
        while self.write_paused and not self.closed:
            self.drain_waiter = waiter = self.loop.create_future()
            await waiter
        if self.closed:
            raise ConnectionResetError("the upstream connection closed during the request body")

    def body_framed(self) -> bool:
        """Whether the response says how long its body is (else it ends when the connection closes)."""
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length":
                return True
            if lower == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
                return True
        return False

    def _head_too_large(self) -> UpstreamProtocolError:
        limit = self.client.max_header_size
        return UpstreamProtocolError(f"response head from {self.origin.label} over {limit} bytes")

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _on_timer(self) -> None:
        """Fires at most every `read_timeout`: fails a silent exchange, else re-arms for the remainder."""
        self.timer = None
        if self.parser is None or self.message_done or self.closed:
            return  # idle or finished: the next exchange arms a new timer
        now = self.clock()
        timeout = self.client.read_timeout
        if self.reading_paused:  # the consumer is slow, not the app
            self.timer = self.loop.call_at(now + timeout, self._on_timer)
            return
        deadline = self.last_activity + timeout
        if now < deadline:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            return
        if self.headers_done:
            self.fail(UpstreamBodyError(f"no data from {self.origin.label} for {timeout:g} s mid-body"))
        else:
            self.fail(UpstreamTimeout(f"no answer from {self.origin.label} within {timeout:g} s"))

    # ------------------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # an idle connection must stay silent
            self.closed = True
            self.transport.abort()
            return
        self.received = True
        self.last_activity = self.clock()
        if self.message_done:
            self.extra = True
            return
        if not self.headers_done:
            self.head_bytes += len(data)  # every byte until the head is complete: bounds the head's size
        try:
            parser.feed_data(data)
        except _PARSE_ERRORS as error:
            if self.message_done:  # garbage after a complete answer: not reusable, the answer stands
                self.extra = True  # (and whoever waits for it is woken below)
            elif self.error is not None:
                self.fail(self.error)  # raised by a callback (header limits)
                return
            else:
                if not self.headers_done and self.head_bytes == len(data) and not data.startswith(b"HTTP/"):
                    # the first bytes are no answer: left over from the previous exchange (bytes past its
                    # framing, sent late) on a reused connection; an idempotent request goes to a new one
                    self.retryable = True
                kind = UpstreamBodyError if self.headers_done else UpstreamProtocolError
                self.fail(kind(f"invalid response from {self.origin.label}: {describe_error(error)}"))
                return
        if not self.headers_done:
            if self.head_bytes > self.client.max_header_size:
                self.fail(self._head_too_large())
            return
        waiter = self.waiter  # the consumer waits for the head or more body: wake it (`_wake`, inlined)
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost tells the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.client._lost(self)
        if self.parser is None:
            return
        if not self.message_done and self.error is None:
            reason = f": {describe_error(exc)}" if exc is not None else ""
            if not self.headers_done:
                self.retryable = not self.received
                self.error = UpstreamProtocolError(
                    f"{self.origin.label} closed the connection before answering{reason}"
                )
            elif self.body_framed():
                self.error = UpstreamBodyError(f"{self.origin.label} closed the connection mid-body{reason}")
            else:  # the body was delimited by the end of the connection: it is complete
                self.message_done = True
        self._wake()
        self._wake_drain()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_activity = self.clock()
        self._wake_drain()

    # ------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        if self.message_done:
            self.extra = True  # a second answer after the complete one

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:  # else trailers (not forwarded), or a stray answer after the complete one
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.message_done:
            return
        parser = self.parser
        assert parser is not None
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                self.error = UpstreamProtocolError(f"{self.origin.label} switched protocols unasked (101)")
                raise _Stop
            self.interim = True  # 100 Continue, 103 Early Hints: wait for the final answer
            self.headers = []
            return
        headers = self.headers
        if len(headers) > MAX_HEADERS:
            self.error = UpstreamProtocolError(f"more than {MAX_HEADERS} response headers from {self.origin.label}")
            raise _Stop
        limit = self.client.max_header_size
        # `head_bytes` counts every byte received until now: only when it is over the limit, the head may be
        if self.head_bytes > limit and sum(len(name) + len(value) + 4 for name, value in headers) > limit:
            self.error = self._head_too_large()
            raise _Stop
        self.status = status
        self.headers_done = True
        if self.head_only:  # the answer to HEAD ends here, whatever content-length says
            self.keep_alive = parser.should_keep_alive()
            self.message_done = True
        if (self.head_only or status == 204 or status == 304) and self.announces_body():
            self.extra = True  # no body by rule, one announced: the app may send it anyway, late; not reused

    def announces_body(self) -> bool:
        """Whether the response head announces a body (`content-length` other than 0, or chunked)."""
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length" and value.strip() != b"0":
                return True
            if lower == b"transfer-encoding":
                return True
        return False

    def on_body(self, body: bytes) -> None:
        if self.message_done:
            self.extra = True
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.message_done:
            return
        parser = self.parser
        assert parser is not None
        self.keep_alive = parser.should_keep_alive()  # only valid in here: llhttp resets afterwards
        self.message_done = True


class _Exchange:
    """One request: the async context manager `request()` returns, and the response it yields."""

    __slots__ = (
        "_body",
        "_client",
        "_conn",
        "_declared",
        "_head",
        "_head_only",
        "_idempotent",
        "_origin",
        "_writer",
        "headers",
        "status",
    )

    def __init__(
        self,
        client: Http1UpstreamClient,
        origin: _Origin,
        head: bytes,
        head_only: bool,
        idempotent: bool,
        body: AsyncIterable[bytes] | None,
        declared: int,
    ) -> None:
        self._client = client
        self._origin = origin
        self._head = head
        self._head_only = head_only
        self._idempotent = idempotent  # may be sent again if a reused connection fails before answering
        self._body = body
        self._declared = declared  # the request body's content-length, -1: sent chunked
        self._conn: _Connection | None = None
        self._writer: asyncio.Task[None] | None = None
        self.status = 0
        self.headers: Sequence[tuple[bytes, bytes]] = ()

    # ------------------------------------------------------------------------ context manager

    async def __aenter__(self) -> _Exchange:
        client = self._client
        body = self._body
        fresh = False
        while True:
            now = client._clock()
            conn = None if fresh else client._idle(self._origin, now)
            if conn is None:
                conn = await client._new(self._origin)
                now = client._clock()
            self._conn = conn
            try:
                conn.begin(self._head_only, body is not None, now)
                conn.transport.write(self._head)
                if body is not None:
                    self._writer = writer = conn.loop.create_task(self._send_body(conn, body))
                    writer.add_done_callback(self._writer_done)
                while not conn.headers_done and conn.error is None:
                    conn.waiter = waiter = conn.loop.create_future()
                    await waiter
            except BaseException:
                self._abandon()
                raise
            if conn.headers_done:
                self.status = conn.status
                self.headers = conn.headers
                return self
            error = conn.error
            assert error is not None
            # the app closed a pooled connection just as it was reused: once more on a new one, if the
            # request may be performed twice (it may have reached the app)
            retry = not fresh and conn.reused and conn.retryable and body is None and self._idempotent
            self._abandon()
            if not retry:
                raise error
            fresh = True

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._let_go(may_reuse=exc_type is None)

    def _abandon(self) -> None:
        """Give up the connection (closed, never pooled) and stop sending the body."""
        self._let_go(may_reuse=False)

    def _let_go(self, *, may_reuse: bool) -> None:
        """Stop sending the body and hand the connection back: to the pool only after a clean, complete
        exchange, else closed."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        writer = self._writer
        if writer is not None:
            self._writer = None
            if not writer.done():
                writer.cancel()
        reusable = (
            may_reuse
            and conn.message_done
            and conn.keep_alive
            and conn.body_sent
            and not conn.chunks
            and not conn.extra
            and conn.error is None
            and not conn.closed
        )
        self._client._release(conn, reusable)

    # ------------------------------------------------------------------------------- the body out

    async def _send_body(self, conn: _Connection, body: AsyncIterable[bytes]) -> None:
        transport = conn.transport
        clock = conn.clock
        declared = self._declared
        sent = 0
        async for chunk in body:
            if conn.message_done:
                return  # the app has answered: the rest is not wanted (and the connection not reused)
            if conn.closed:
                raise ConnectionResetError("the upstream connection closed during the request body")
            if not chunk:
                continue
            sent += len(chunk)
            if declared < 0:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            elif sent > declared:
                raise UpstreamProtocolError(f"request body longer than its content-length ({declared})")
            else:
                transport.write(chunk)
            conn.last_activity = clock()
            if conn.write_paused:
                await conn.drain()
        if declared < 0:
            if conn.message_done or conn.closed:
                return  # the app answered before the last chunk: the connection is not reused
            transport.write(b"0\r\n\r\n")
        elif sent != declared:
            raise UpstreamProtocolError(f"request body shorter than its content-length ({sent} < {declared})")
        conn.body_sent = True

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        if writer.cancelled():
            return
        error = writer.exception()
        conn = self._conn
        if error is None or conn is None or conn.message_done or conn.error is not None:
            return  # done, or too late to matter (the connection is not reused: body_sent is False)
        if isinstance(error, OSError):
            kind = UpstreamBodyError if conn.headers_done else UpstreamProtocolError
            error = kind(f"sending the request body to {conn.origin.label} failed: {describe_error(error)}")
        conn.fail(error)  # e.g. ClientDisconnected from the body: raised by __aenter__ or iter_body

    # ---------------------------------------------------------------------------- the response

    @property
    def complete(self) -> bool:
        conn = self._conn
        return conn is None or (conn.message_done and not conn.chunks)

    def iter_body(self) -> AsyncIterator[bytes]:
        return self

    def __aiter__(self) -> _Exchange:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        while True:
            if conn.chunks:
                return conn.take()
            if conn.message_done:
                raise StopAsyncIteration
            error = conn.error
            if error is not None:
                if isinstance(error, UpstreamError) and not isinstance(error, UpstreamBodyError):
                    error = UpstreamBodyError(str(error))
                raise error
            conn.waiter = waiter = conn.loop.create_future()
            await waiter


class Http1UpstreamClient:
    """HTTP/1.1 to the app over pooled keep-alive connections (see the module docstring); WebSockets through
    an `AiohttpUpstreamClient` it owns, made (with its aiohttp session) for the first WebSocket."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        limit: int = 256,
        keepalive_timeout: float = 30.0,
        max_header_size: int = 64 * 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self.max_header_size = max_header_size
        self.ssl_context = ssl_context
        self._websockets: AiohttpUpstreamClient | None = None  # made for the first WebSocket
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Callable[[], float] = time.monotonic  # the loop's clock (`_use_loop`)
        self._origins: dict[str, _Origin] = {}
        self._connections: set[_Connection] = set()
        self._waiters: deque[tuple[_Origin, asyncio.Future[_Connection | None]]] = deque()
        self._count = 0  # open (or opening) connections, idle or busy: at most `limit`
        self._closed = False

    async def start(self) -> None:
        self._use_loop()
        self._closed = False

    def _use_loop(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        # asyncio's own loops tell time with time.monotonic: called directly, it saves a Python call
        self._clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time

    async def aclose(self) -> None:
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(UpstreamUnreachable("the upstream client is closing"))
        for origin in self._origins.values():
            origin.idle.clear()
        connections = list(self._connections)
        for conn in connections:
            conn.in_pool = False
            conn.fail(UpstreamProtocolError("the upstream client is closing"))
        self._connections.clear()
        if connections:
            await asyncio.sleep(0)  # the transports close their sockets in the next loop iteration
        websockets, self._websockets = self._websockets, None
        if websockets is not None:
            await websockets.aclose()

    # --------------------------------------------------------------------------------- requests

    def request(
        self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]], body: AsyncIterable[bytes] | None
    ) -> _Exchange:
        origin, target = self._split(url)
        # CR or LF in a value or the target would let it end the line and add headers of its own (names
        # come from the ASGI server or the gateway's code: tokens); `10 in bytes` is a memchr
        if 10 in target or 13 in target:
            raise ValueError("CR or LF in the request target")
        lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if 10 in value or 13 in value:
                raise ValueError(f"CR or LF in the value of request header {name!r}")
            lines += (name, b": ", value, b"\r\n")
        declared = -1
        if body is not None:
            for name, value in headers:
                if name == b"content-length":
                    declared = int(value)
                    if declared < 0:
                        raise ValueError(f"invalid request content-length {value!r}")
            if declared < 0:
                lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        head = b"".join(lines)
        return _Exchange(self, origin, head, method == "HEAD", method in IDEMPOTENT_METHODS, body, declared)

    def _split(self, url: str) -> tuple[_Origin, bytes]:
        """`scheme://host:port/path?query` → (the origin, the path and query as bytes, verbatim)."""
        end = url.find("/", 8)  # the path's slash, after `http://` or `https://` and one character at least
        if end > 0:
            origin = self._origins.get(url[:end])
            if origin is not None:  # a known origin (no `?` in it): the usual case
                return origin, url[end:].encode()
        start = url.find("://") + 3
        query = url.find("?", start)
        if end < 0 or 0 <= query < end:
            end = query if query >= 0 else len(url)
        origin = self._origins.get(url[:end])
        if origin is None:
            origin = self._origins[url[:end]] = self._new_origin(url[:end])
        target = url[end:] or "/"
        if target[0] == "?":
            target = "/" + target
        return origin, target.encode("utf-8")

    def _new_origin(self, prefix: str) -> _Origin:
        parts = urlsplit(prefix)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an absolute http(s) URL: {prefix!r}")
        context = None
        if parts.scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
        return _Origin(parts.hostname, parts.port or (443 if context else 80), context)

    # --------------------------------------------------------------------------------- the pool

    def _idle(self, origin: _Origin, now: float) -> _Connection | None:
        """The most recently used idle connection, if one is fresh; stale ones are closed on the way."""
        idle = origin.idle
        if not idle:
            return None
        expired = now - self.keepalive_timeout
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            if conn.idle_since > expired and not conn.closed and not conn.transport.is_closing():
                if idle and idle[0].idle_since <= expired:
                    self._discard(idle.popleft())  # the oldest one has waited too long
                conn.reused = True
                return conn
            self._discard(conn)
        return None

    async def _new(self, origin: _Origin) -> _Connection:
        """A new connection (waiting for a free slot at the limit) or one a finishing request hands over."""
        if self._closed:
            raise UpstreamUnreachable("the upstream client is closed")
        if self._loop is None:
            self._use_loop()
        loop = self._loop
        assert loop is not None
        while True:
            if self._count < self.limit:
                self._count += 1
                return await self._connect(origin)
            if self._evict_idle():
                continue  # its slot went to an earlier waiter, or is free for us
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self._waiters.append((origin, waiter))
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    handed = waiter.result()  # given a slot or a connection just as we were cancelled
                    if handed is None:
                        self._count -= 1
                        self._slot_freed()
                    else:
                        self._release(handed, True)
                raise
            if handed is None:  # a slot reserved for us
                return await self._connect(origin)
            if not handed.closed:
                handed.reused = True
                return handed

    async def _connect(self, origin: _Origin) -> _Connection:
        """Open a connection in a slot already counted (released again if the connect fails)."""
        loop = self._loop
        assert loop is not None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, origin, loop),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.server_hostname,
                )
        except BaseException as error:
            self._count -= 1
            self._slot_freed()
            if isinstance(error, TimeoutError):
                raise UpstreamUnreachable(
                    f"connect timeout: {origin.label} not connected within {self.connect_timeout:g} s"
                ) from None
            if isinstance(error, OSError):
                raise UpstreamUnreachable(f"cannot connect to {origin.label}: {describe_error(error)}") from error
            raise
        if self._closed:
            conn.counted = False
            self._count -= 1
            conn.transport.abort()
            raise UpstreamUnreachable("the upstream client is closed")
        self._connections.add(conn)
        return conn

    def _release(self, conn: _Connection, reusable: bool) -> None:
        """After an exchange: back to the pool (or straight to a waiter), else closed and its slot freed."""
        conn.parser = None  # no exchange in progress
        conn.waiter = None
        if conn.chunks:
            conn.chunks.clear()
            conn.buffered = 0
        if reusable and not self._closed:
            waiters = self._waiters
            while waiters:
                origin, waiter = waiters.popleft()
                if waiter.done():
                    continue  # cancelled
                if origin is conn.origin:
                    waiter.set_result(conn)
                else:  # the first waiter wants another origin: it gets this connection's slot
                    conn.counted = False
                    conn.closed = True
                    conn.transport.close()
                    waiter.set_result(None)
                return
            conn.idle_since = conn.last_activity
            conn.in_pool = True
            conn.origin.idle.append(conn)
            return
        conn.closed = True
        if conn.message_done and conn.error is None:
            conn.transport.close()
        else:
            conn.transport.abort()
        if conn.counted:
            conn.counted = False
            self._count -= 1
            self._slot_freed()

    def _evict_idle(self) -> bool:
        """At the limit, close the oldest idle connection of some origin (another one, unless this request
        is a retry): idle connections must not starve requests to other origins."""
        for origin in self._origins.values():
            if origin.idle:
                self._discard(origin.idle.popleft())
                return True
        return False

    def _discard(self, conn: _Connection) -> None:
        """Close an idle connection."""
        conn.in_pool = False
        conn.closed = True
        conn.transport.close()
        if conn.counted:
            conn.counted = False
            self._count -= 1
            self._slot_freed()

    def _lost(self, conn: _Connection) -> None:
        """`connection_lost`: the slot is free again; an idle connection leaves the pool."""
        self._connections.discard(conn)
        if conn.in_pool:
            conn.in_pool = False
            conn.origin.idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self._count -= 1
            self._slot_freed()

    def _slot_freed(self) -> None:
        """A slot is free: the first live waiter gets it (so `_count < limit` means nobody waits)."""
        waiters = self._waiters
        while waiters:
            _, waiter = waiters.popleft()
            if not waiter.done():
                self._count += 1
                waiter.set_result(None)
                return

    # -------------------------------------------------------------------------------- WebSocket

    @asynccontextmanager
    async def websocket(
        self, url: str, headers: Sequence[tuple[bytes, bytes]], subprotocols: Sequence[str]
    ) -> AsyncIterator[UpstreamWebSocket]:
        websockets = self._websockets
        if websockets is None:
            websockets = self._websockets = AiohttpUpstreamClient(
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                limit=self.limit,
                keepalive_timeout=self.keepalive_timeout,
                max_header_size=self.max_header_size,
            )
        await websockets.start()  # idempotent
        async with websockets.websocket(url, headers, subprotocols) as socket:
            yield socket
