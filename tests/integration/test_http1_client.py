"""Http1UpstreamClient against real loopback servers: raw asyncio servers (every byte under the test's
control) for framing, keep-alive, pool, timeout and failure cases, and TLS with a self-signed certificate.

Servers listen before the test sends anything (`start_server` has returned): no readiness waits.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.upstream.client import (
    UpstreamBodyError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.upstream.http1 import READ_HIGH_WATER, Http1UpstreamClient
from tests.support.upstream import unused_port

MiB = 1024 * 1024
READ_SIZE = 256 * 1024  # the most asyncio reads from a socket at once


# ---------------------------------------------------------------------------------- a raw HTTP server


@dataclass
class Request:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    raw_body: bytes = b""  # the body as framed on the wire (chunk sizes included)
    reader: asyncio.StreamReader | None = field(default=None, repr=False)  # to wait for the client to leave

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


Respond = Callable[[Request, asyncio.StreamWriter, int], Awaitable[bool]]


@dataclass
class RawServer:
    """Calls `respond(request, writer, index on its connection)` per request; it writes whatever bytes it
    likes and returns whether to keep the connection open. Counts connections."""

    respond: Respond
    read_bodies: bool = True
    accepted: int = 0
    open: int = 0
    most_open: int = 0
    closed: int = 0
    requests: list[Request] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    server: asyncio.Server | None = None
    ssl_context: ssl.SSLContext | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.transport.abort()  # pending reads end: the connection handlers return
        if self.tasks:
            _, stuck = await asyncio.wait(self.tasks, timeout=5)
            for task in stuck:
                task.cancel()

    async def wait_for(self, condition: Callable[[RawServer], bool]) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: condition(self))

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        await self._notify()
        try:
            index = 0
            while True:
                request = await read_request(reader, self.read_bodies)
                if request is None:
                    break
                request.reader = reader
                self.requests.append(request)
                await self._notify()
                keep = await self.respond(request, writer, index)
                index += 1
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.open -= 1
            self.closed += 1
            await self._notify()


async def read_request(reader: asyncio.StreamReader, read_body: bool = True) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, *lines = head[:-4].split(b"\r\n")
    method, target, _ = line.split(b" ")
    headers = [(name.lower(), value.strip()) for name, _, value in (raw.partition(b":") for raw in lines)]
    request = Request(method, target, headers)
    if not read_body:
        return request
    length = request.header(b"content-length")
    if length is not None:
        request.body = request.raw_body = await reader.readexactly(int(length))
    elif request.header(b"transfer-encoding") == b"chunked":
        raw, body = [], []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            data = await reader.readexactly(size + 2)
            raw += (size_line, data)
            body.append(data[:-2])
            if size == 0:
                break
        request.raw_body, request.body = b"".join(raw), b"".join(body)
    return request


def answer(
    status: int = 200, body: bytes = b"", headers: Sequence[tuple[bytes, bytes]] = (), length: bool = True
) -> bytes:
    lines = [b"HTTP/1.1 %d X" % status, *(name + b": " + value for name, value in headers)]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def canned(data: bytes, keep: bool = True) -> Respond:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(data)
        return keep

    return respond


async def never_answer(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
    assert request.reader is not None
    await request.reader.read()  # until the client closes the connection
    return False


# ---------------------------------------------------------------------------------------- fixtures


ServerFactory = Callable[..., Awaitable[RawServer]]
ClientFactory = Callable[..., Awaitable[Http1UpstreamClient]]


@pytest.fixture
def serve(stack: AsyncExitStack) -> ServerFactory:
    async def start(respond: Respond, **options: Any) -> RawServer:
        server = RawServer(respond, **options)
        await server.start()
        stack.push_async_callback(server.stop)
        return server

    return start


@pytest.fixture
def new_client(stack: AsyncExitStack) -> ClientFactory:
    async def start(**options: Any) -> Http1UpstreamClient:
        settings: dict[str, Any] = {"connect_timeout": 2.0, "read_timeout": 5.0, **options}
        client = Http1UpstreamClient(**settings)
        await client.start()
        stack.push_async_callback(client.aclose)
        return client

    return start


@dataclass
class Fetched:
    status: int
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]
    complete_after: list[bool]  # `complete` after each chunk

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


async def fetch(
    client: Http1UpstreamClient,
    url: str,
    method: str = "GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: AsyncIterator[bytes] | None = None,
) -> Fetched:
    async with client.request(method, url, [(b"host", b"app.example"), *headers], body) as response:
        chunks, complete_after = [], []
        async for chunk in response.iter_body():
            chunks.append(chunk)
            complete_after.append(response.complete)
        assert response.complete
        return Fetched(response.status, list(response.headers), chunks, complete_after)


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def pooled(client: Http1UpstreamClient) -> int:
    return sum(len(origin.idle) for origin in client._origins.values())


# -------------------------------------------------------------------------------- keep-alive, pool


async def test_sequential_requests_reuse_one_connection(serve: ServerFactory, new_client: ClientFactory) -> None:
    server = await serve(canned(answer(body=b"hello")))
    client = await new_client()
    for _ in range(5):
        fetched = await fetch(client, server.url + "/x")
        assert (fetched.status, fetched.body) == (200, b"hello")
    assert server.accepted == 1
    assert pooled(client) == 1


async def test_concurrent_requests_never_open_more_than_the_limit(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    gate = asyncio.Event()

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        await gate.wait()
        writer.write(answer(body=request.target))
        return True

    server = await serve(respond)
    client = await new_client(limit=3)
    tasks = [asyncio.create_task(fetch(client, f"{server.url}/{n}")) for n in range(10)]
    await server.wait_for(lambda s: len(s.requests) == 3)
    assert server.accepted == 3 and client._count == 3
    gate.set()
    results = await asyncio.gather(*tasks)
    assert [fetched.body for fetched in results] == [f"/{n}".encode() for n in range(10)]
    assert (server.accepted, server.most_open, client._count) == (3, 3, 3)


async def test_a_cancelled_waiter_does_not_take_a_slot(serve: ServerFactory, new_client: ClientFactory) -> None:
    gate = asyncio.Event()

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        await gate.wait()
        writer.write(answer(body=b"ok"))
        return True

    server = await serve(respond)
    client = await new_client(limit=1)
    first = asyncio.create_task(fetch(client, server.url + "/1"))
    await server.wait_for(lambda s: len(s.requests) == 1)
    waiting = asyncio.create_task(fetch(client, server.url + "/2"))
    last = asyncio.create_task(fetch(client, server.url + "/3"))
    await asyncio.sleep(0)
    waiting.cancel()
    gate.set()
    assert (await first).body == b"ok" and (await last).body == b"ok"
    assert waiting.cancelled()
    assert (server.accepted, client._count) == (1, 1)


async def test_at_the_limit_an_idle_connection_to_another_origin_makes_room(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    first = await serve(canned(answer(body=b"first")))
    second = await serve(canned(answer(body=b"second")))
    client = await new_client(limit=1)
    assert (await fetch(client, first.url + "/")).body == b"first"
    assert (await fetch(client, second.url + "/")).body == b"second"
    await first.wait_for(lambda s: s.closed == 1)
    assert (first.accepted, second.accepted, client._count) == (1, 1, 1)


@pytest.mark.parametrize(
    ("case", "response", "keep_server_open"),
    [
        ("connection: close", answer(body=b"bye", headers=[(b"Connection", b"close")]), True),
        ("HTTP/1.0 without keep-alive", b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye", True),
        ("body until the connection closes", b"HTTP/1.1 200 OK\r\n\r\nbye", False),
    ],
)
async def test_connections_the_app_does_not_keep_alive_are_not_reused(
    serve: ServerFactory, new_client: ClientFactory, case: str, response: bytes, keep_server_open: bool
) -> None:
    server = await serve(canned(response, keep=keep_server_open))
    client = await new_client()
    for _ in range(3):
        fetched = await fetch(client, server.url + "/")
        assert (fetched.status, fetched.body) == (200, b"bye"), case
    assert server.accepted == 3
    assert pooled(client) == 0


async def test_an_idle_connection_the_app_closes_leaves_the_pool(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(answer(body=b"ok"))
        return False  # keep-alive promised, then closed (an app's idle timeout)

    server = await serve(respond)
    client = await new_client()
    await fetch(client, server.url + "/")
    await server.wait_for(lambda s: s.closed == 1)
    for _ in range(100):  # the FIN reaches the client's loop within a few iterations
        if client._count == 0:
            break
        await asyncio.sleep(0)
    assert (pooled(client), client._count) == (0, 0)
    assert (await fetch(client, server.url + "/")).body == b"ok"
    assert server.accepted == 2


async def test_idle_connections_older_than_the_keepalive_timeout_are_closed(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    server = await serve(canned(answer(body=b"ok")))
    client = await new_client(keepalive_timeout=0.0)
    await fetch(client, server.url + "/")
    await fetch(client, server.url + "/")
    assert server.accepted == 2
    await server.wait_for(lambda s: s.closed == 1)


async def test_a_stale_pooled_connection_is_retried_once_for_a_request_without_body(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        if index == 1:
            return False  # the app closed the idle connection just as the request came: no answer
        writer.write(answer(body=b"ok"))
        return True

    server = await serve(respond)
    client = await new_client()
    assert (await fetch(client, server.url + "/1")).body == b"ok"
    assert (await fetch(client, server.url + "/2")).body == b"ok"
    assert server.accepted == 2
    assert [request.target for request in server.requests] == [b"/1", b"/2", b"/2"]


async def test_a_request_with_a_body_on_a_stale_connection_is_not_retried(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        if index == 1:
            return False
        writer.write(answer(body=b"ok"))
        return True

    server = await serve(respond)
    client = await new_client()
    await fetch(client, server.url + "/1")
    with pytest.raises(UpstreamError):
        await fetch(client, server.url + "/2", "POST", [(b"content-length", b"5")], pieces(b"hello"))
    assert server.accepted == 1


def closes_the_second_request_unanswered(counts: dict[tuple[bytes, bytes], int]) -> Respond:
    """Counts the requests that reach it, by method and target; answers each, except the second one on a
    connection: read, counted, then the connection is closed (the app's keep-alive ended as it came)."""

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        key = (request.method, request.target)
        counts[key] = counts.get(key, 0) + 1
        if index == 1:
            return False
        writer.write(answer(body=b"ok"))
        return True

    return respond


@pytest.mark.parametrize(
    ("method", "performed", "answered"),
    [
        ("GET", 2, b"ok"),  # idempotent: sent again on a new connection
        ("HEAD", 2, b""),
        ("OPTIONS", 2, b"ok"),
        ("DELETE", 2, b"ok"),
        ("PUT", 2, b"ok"),
        ("POST", 1, None),  # may have been performed: never twice (RFC 9110 §9.2.2), a 502
        ("PATCH", 1, None),
    ],
)
async def test_a_request_on_a_stale_connection_is_retried_only_when_it_is_idempotent(
    serve: ServerFactory, new_client: ClientFactory, method: str, performed: int, answered: bytes | None
) -> None:
    counts: dict[tuple[bytes, bytes], int] = {}
    server = await serve(closes_the_second_request_unanswered(counts))
    client = await new_client()
    assert (await fetch(client, server.url + "/first")).body == b"ok"
    if answered is None:
        with pytest.raises(UpstreamProtocolError, match="closed the connection before answering") as failed:
            await fetch(client, server.url + "/again", method)
        assert failed.value.status == 502
        assert server.accepted == 1
    else:
        assert (await fetch(client, server.url + "/again", method)).body == answered
        assert server.accepted == 2
    assert counts[method.encode(), b"/again"] == performed
    assert (await fetch(client, server.url + "/after")).body == b"ok"  # the client goes on


async def test_a_pooled_connection_found_closed_at_checkout_is_not_used_for_any_method(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(answer(body=b"ok"))
        return False  # keep-alive promised, then closed before the next request

    server = await serve(respond)
    client = await new_client()
    await fetch(client, server.url + "/1")
    await server.wait_for(lambda s: s.closed == 1)
    for _ in range(100):  # the FIN reaches the client's loop within a few iterations
        if client._count == 0:
            break
        await asyncio.sleep(0)
    fetched = await fetch(client, server.url + "/2", "POST")  # never written to the closed connection
    assert (fetched.status, fetched.body) == (200, b"ok")
    assert [request.method for request in server.requests] == [b"GET", b"POST"]


async def test_a_new_connection_closed_before_answering_is_not_retried(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        return False

    server = await serve(respond)
    client = await new_client()
    with pytest.raises(UpstreamProtocolError, match="closed the connection before answering"):
        await fetch(client, server.url + "/")
    assert server.accepted == 1


# ------------------------------------------------------------------------------------ response framing


@pytest.mark.parametrize(
    ("case", "response", "body"),
    [
        ("content-length", answer(body=b"hello world"), b"hello world"),
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
        ),
        (
            "chunked with trailers",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n",
            b"hi",
        ),
        ("empty, content-length 0", answer(), b""),
        ("204", b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        ("304", b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', b""),
        ("103 early hints first", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + answer(body=b"ok"), b"ok"),
        ("100 continue first", b"HTTP/1.1 100 Continue\r\n\r\n" + answer(body=b"ok"), b"ok"),
    ],
)
async def test_framed_answers_arrive_whole_in_one_chunk_and_the_connection_is_reused(
    serve: ServerFactory, new_client: ClientFactory, case: str, response: bytes, body: bytes
) -> None:
    server = await serve(canned(response))
    client = await new_client()
    for _ in range(2):
        fetched = await fetch(client, server.url + "/")
        assert fetched.body == body, case
        assert fetched.chunks == ([body] if body else []), case  # one chunk, or none for an empty body
        assert all(fetched.complete_after), case
        assert not any(name.lower() == b"link" for name, _ in fetched.headers), case
    assert server.accepted == 1, case


async def test_interim_answers_are_skipped_for_the_final_status_and_headers(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    server = await serve(canned(early + early + answer(201, b"made", [(b"X-Final", b"yes")])))
    client = await new_client()
    fetched = await fetch(client, server.url + "/")
    assert (fetched.status, fetched.body) == (201, b"made")
    assert fetched.headers == [(b"X-Final", b"yes"), (b"Content-Length", b"4")]


async def test_head_answers_end_with_their_headers(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        if request.method == b"HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else:
            writer.write(answer(body=b"x" * 1000))
        return True

    server = await serve(respond)
    client = await new_client()
    head = await fetch(client, server.url + "/", "HEAD")
    assert (head.status, head.chunks, dict(head.headers)[b"Content-Length"]) == (200, [], b"1000")
    assert len((await fetch(client, server.url + "/")).body) == 1000
    assert server.accepted == 2  # a HEAD answer announcing a body is not reused: the app might send it late
    head = await fetch(client, server.url + "/empty", "HEAD")
    assert (head.status, head.chunks) == (200, [])


async def test_a_head_answer_followed_by_a_body_is_not_reused(serve: ServerFactory, new_client: ClientFactory) -> None:
    server = await serve(canned(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
    client = await new_client()
    head = await fetch(client, server.url + "/", "HEAD")
    assert (head.status, head.chunks) == (200, [])
    assert pooled(client) == 0


async def test_bytes_after_a_complete_answer_make_the_connection_unusable(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    server = await serve(canned(answer(body=b"ok") + b"HTTP/1.1 200 OK\r\n"))
    client = await new_client()
    assert (await fetch(client, server.url + "/")).body == b"ok"
    assert (await fetch(client, server.url + "/")).body == b"ok"
    assert server.accepted == 2


PAST_FRAMING = {
    # case: (method of the first request, its answer as framed, the bytes past that framing, its body)
    "a body on a HEAD answer": ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello", b""),
    "a body on a 204": ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", b"hello", b""),
    "a body on a 304": ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", b"hello", b""),
    "10 bytes for content-length 5": ("GET", answer(body=b"hello"), b"world", b"hello"),
    "garbage after the last chunk": (
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"garbage",
        b"hello",
    ),
}


@pytest.mark.parametrize("late", [False, True], ids=["at once", "late"])
@pytest.mark.parametrize("case", sorted(PAST_FRAMING))
async def test_bytes_past_an_answers_framing_never_reach_the_next_request(
    serve: ServerFactory, new_client: ClientFactory, case: str, late: bool
) -> None:
    """At once: in the same write as the answer. Late: only once the next request came on that connection
    (the worst timing: they come before its answer)."""
    method, framed, past, body = PAST_FRAMING[case]
    left_over: dict[asyncio.StreamWriter, bytes] = {}

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        if request.target == b"/first":
            writer.write(framed if late else framed + past)
            if late:
                left_over[writer] = past
        else:
            writer.write(left_over.pop(writer, b"") + answer(body=b"next"))
        return True

    server = await serve(respond)
    client = await new_client()
    first = await asyncio.wait_for(fetch(client, server.url + "/first", method), 5)
    assert first.body == body, case
    after = await asyncio.wait_for(fetch(client, server.url + "/next"), 5)
    assert (after.status, after.body) == (200, b"next"), case
    assert server.accepted == 2, case  # the next request went to a fresh connection
    assert (await fetch(client, server.url + "/again")).body == b"next"
    assert server.accepted == 2, case  # ... which is reused


async def test_repeated_set_cookie_headers_are_kept_in_order_with_their_spelling(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    cookies = [(b"Set-Cookie", b"a=1; Path=/"), (b"X-Other", b"x"), (b"set-cookie", b"b=2"), (b"SET-COOKIE", b"c=3")]
    server = await serve(canned(answer(body=b"", headers=cookies)))
    client = await new_client()
    fetched = await fetch(client, server.url + "/")
    assert fetched.headers == [*cookies, (b"Content-Length", b"0")]


async def test_a_body_until_close_is_complete_when_the_connection_ends(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        for piece in (b"one ", b"two ", b"three"):
            await writer.drain()
            writer.write(piece)
        return False

    server = await serve(respond)
    client = await new_client()
    fetched = await fetch(client, server.url + "/")
    assert fetched.body == b"one two three"  # and `complete` at the end (`fetch` checks), once the EOF came


# ------------------------------------------------------------------------------------ request bodies


async def test_upload_bytes_reach_the_app_exactly_with_content_length_or_chunked(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(answer(body=hashlib.sha256(request.body).hexdigest().encode()))
        return True

    server = await serve(respond)
    client = await new_client()
    parts = [b"x" * 100_000, b"", b"y" * 3, bytes(range(256)) * 300]
    whole = b"".join(parts)
    digest = hashlib.sha256(whole).hexdigest().encode()
    length = [(b"content-length", str(len(whole)).encode())]
    assert (await fetch(client, server.url + "/cl", "PUT", length, pieces(*parts))).body == digest
    assert (await fetch(client, server.url + "/chunked", "POST", [], pieces(*parts))).body == digest
    with_length, chunked = server.requests
    assert with_length.header(b"transfer-encoding") is None and with_length.raw_body == whole
    assert chunked.header(b"transfer-encoding") == b"chunked" and chunked.header(b"content-length") is None
    assert chunked.raw_body == b"186a0\r\n" + parts[0] + b"\r\n3\r\nyyy\r\n12c00\r\n" + parts[3] + b"\r\n0\r\n\r\n"
    assert server.accepted == 1


async def test_the_request_head_is_sent_as_given(serve: ServerFactory, new_client: ClientFactory) -> None:
    seen: list[bytes] = []

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        seen.append(request.target)
        writer.write(answer())
        return True

    server = await serve(respond)
    client = await new_client()
    headers = [(b"x-a", b"1"), (b"x-a", b"2"), (b"cookie", b"k=v")]
    await fetch(client, server.url + "/a%2Fb/%E2%82%AC?x=%20&y", headers=headers)
    await fetch(client, server.url + "?q=1")
    (first, second) = server.requests
    assert seen == [b"/a%2Fb/%E2%82%AC?x=%20&y", b"/?q=1"]
    assert first.headers == [(b"host", b"app.example"), *headers]
    assert second.headers == [(b"host", b"app.example")]


async def test_cr_or_lf_in_a_header_is_refused(new_client: ClientFactory) -> None:
    client = await new_client()
    with pytest.raises(ValueError, match="CR or LF in the value"):
        client.request("GET", "http://127.0.0.1:1/", [(b"x-user", b"a\r\nx-admin: 1")], None)


async def test_an_early_answer_stops_the_upload_and_the_connection_is_not_reused(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    done = asyncio.Event()

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(answer(413, b"too big"))
        await writer.drain()
        await done.wait()  # never reads the body, never closes
        return False

    server = await serve(respond, read_bodies=False)
    client = await new_client()
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += MiB
            yield b"u" * MiB

    fetched = await fetch(client, server.url + "/upload", "POST", [], endless())
    assert (fetched.status, fetched.body) == (413, b"too big")
    assert pooled(client) == 0 and client._count == 0
    assert sent < 64 * MiB  # write back-pressure held the rest back
    done.set()


async def test_a_failing_request_body_fails_the_request_with_its_own_error(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    class ClientGone(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        yield b"first piece"
        raise ClientGone("the client went away mid-upload")

    server = await serve(never_answer, read_bodies=False)
    client = await new_client()
    with pytest.raises(ClientGone):
        await fetch(client, server.url + "/", "POST", [(b"content-length", b"100")], body())
    assert (pooled(client), client._count) == (0, 0)
    await server.wait_for(lambda s: s.closed == 1)


async def test_a_duplex_app_can_answer_while_the_body_streams(new_client: ClientFactory) -> None:
    """An app that echoes each request chunk as it arrives (the response starts before the body ends)."""

    echoed = asyncio.Queue[bytes]()

    async def duplex(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = (await reader.readexactly(size + 2))[:-2]
            writer.write(b"%x\r\n%s\r\n" % (size, data))
            await echoed.put(data)
            if size == 0:
                break
        writer.close()

    listener = await asyncio.start_server(duplex, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = await new_client()
    turn = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for piece in (b"ping", b"pong"):
            yield piece
            assert await echoed.get() == piece  # the app echoed it before we send the next piece
        turn.set()

    try:
        async with client.request("POST", f"http://127.0.0.1:{port}/", [(b"host", b"x")], body()) as response:
            chunks = [chunk async for chunk in response.iter_body()]
    finally:
        listener.close()
    assert b"".join(chunks) == b"pingpong" and turn.is_set()


# ------------------------------------------------------------------------------------------- failures


async def test_a_refused_connection_is_unreachable(new_client: ClientFactory) -> None:
    client = await new_client()
    with pytest.raises(UpstreamUnreachable, match=r"cannot connect to 127\.0\.0\.1"):
        await fetch(client, f"http://127.0.0.1:{unused_port()}/")
    assert client._count == 0


async def test_an_unresolvable_host_is_unreachable(new_client: ClientFactory) -> None:
    client = await new_client()
    with pytest.raises(UpstreamUnreachable):
        await fetch(client, "http://no-such-host.invalid/")


async def test_no_answer_within_the_read_timeout_is_a_timeout(serve: ServerFactory, new_client: ClientFactory) -> None:
    server = await serve(never_answer)
    client = await new_client(read_timeout=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimeout, match=r"within 0\.2 s"):
        await fetch(client, server.url + "/")
    assert 0.19 < asyncio.get_running_loop().time() - started < 2
    assert client._count == 0


async def test_a_body_that_stalls_is_a_body_error_after_the_bytes_that_came(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        return await never_answer(request, writer, index)

    server = await serve(respond)
    client = await new_client(read_timeout=0.2)
    received = []
    with pytest.raises(UpstreamBodyError, match="mid-body"):
        async with client.request("GET", server.url + "/", [(b"host", b"x")], None) as response:
            async for chunk in response.iter_body():
                received.append(chunk)
    assert received == [b"abc"]


@pytest.mark.parametrize(
    ("case", "response", "error"),
    [
        ("content-length cut short", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", UpstreamBodyError),
        (
            "chunked cut short",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly this\r\n",
            UpstreamBodyError,
        ),
        ("bad chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", UpstreamBodyError),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", UpstreamProtocolError),
        ("bad status line", b"HTTP/1.1 abc OK\r\n\r\n", UpstreamProtocolError),
        ("half a head", b"HTTP/1.1 200 OK\r\nContent-Le", UpstreamProtocolError),
        (
            "unasked 101",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            UpstreamProtocolError,
        ),
        ("header over 64 KiB", b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70_000 + b"\r\n\r\n", UpstreamProtocolError),
        ("257 headers", b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 257 + b"\r\n", UpstreamProtocolError),
        ("endless head", b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 200_000, UpstreamProtocolError),
    ],
)
async def test_broken_answers_are_errors(
    serve: ServerFactory, new_client: ClientFactory, case: str, response: bytes, error: type[UpstreamError]
) -> None:
    server = await serve(canned(response, keep=False))
    client = await new_client()
    with pytest.raises(error) as raised:
        await fetch(client, server.url + "/")
    assert type(raised.value) is error, case
    message = str(raised.value)
    assert "\n" not in message and len(message) <= 200, case
    assert client._count == 0, case


async def test_large_headers_below_the_limit_pass(serve: ServerFactory, new_client: ClientFactory) -> None:
    server = await serve(canned(answer(body=b"ok", headers=[(b"X-Big", b"x" * 60_000)])))
    client = await new_client()
    fetched = await fetch(client, server.url + "/")
    assert len(dict(fetched.headers)[b"X-Big"]) == 60_000


# --------------------------------------------------------------------------- streaming, back-pressure


async def test_a_slow_reader_keeps_the_buffered_download_bounded(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    size = 64 * MiB
    block = bytes(range(256)) * 256

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
        return True

    server = await serve(respond)
    client = await new_client(read_timeout=0.3)
    received = 0
    digest = hashlib.sha256()
    most_buffered = 0
    async with client.request("GET", server.url + "/big", [(b"host", b"x")], None) as response:
        connection = client._connections.copy().pop()
        # nothing consumed yet: the client stops reading once its buffer is full ...
        async with asyncio.timeout(10):
            while not connection.reading_paused:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.5)  # ... and a consumer slower than read_timeout is not the app timing out
        async for chunk in response.iter_body():
            most_buffered = max(most_buffered, connection.buffered + len(chunk))
            received += len(chunk)
            digest.update(chunk)
            assert len(chunk) <= READ_SIZE
            await asyncio.sleep(0)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(block * (size // len(block))).hexdigest()
    assert most_buffered <= READ_HIGH_WATER + READ_SIZE
    assert pooled(client) == 1 and server.accepted == 1


async def test_leaving_before_the_body_is_read_closes_the_connection(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        if request.target == b"/small":
            writer.write(answer(body=b"small"))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (16 * MiB))
        for _ in range(256):
            writer.write(b"z" * 65536)
            await writer.drain()
        return True

    server = await serve(respond)
    client = await new_client()
    async with client.request("GET", server.url + "/", [(b"host", b"x")], None) as response:
        async for _ in response.iter_body():
            break
    assert (pooled(client), client._count) == (0, 0)
    await server.wait_for(lambda s: s.closed == 1)
    assert (await fetch(client, server.url + "/small")).body == b"small"
    assert server.accepted == 2


async def test_leaving_with_body_bytes_unread_closes_the_connection_even_if_they_all_came(
    serve: ServerFactory, new_client: ClientFactory
) -> None:
    piece = b"p" * 60_000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"ea60\r\n" + piece + b"\r\n") * 2
    server = await serve(canned(chunked + b"0\r\n\r\n"))
    client = await new_client()
    async with client.request("GET", server.url + "/", [(b"host", b"x")], None) as response:
        async for chunk in response.iter_body():
            assert chunk == piece and not response.complete
            break
    assert (pooled(client), client._count) == (0, 0)
    await fetch(client, server.url + "/")
    assert server.accepted == 2


@pytest.mark.parametrize("while_", ["waiting for the answer", "reading the body"])
async def test_cancellation_closes_the_connection(serve: ServerFactory, new_client: ClientFactory, while_: str) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        if while_ == "reading the body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        return await never_answer(request, writer, index)

    server = await serve(respond)
    client = await new_client()
    started = asyncio.Event()

    async def request() -> None:
        async with client.request("GET", server.url + "/", [(b"host", b"x")], None) as response:
            async for _ in response.iter_body():
                started.set()
            raise AssertionError("the body never ends")

    task = asyncio.create_task(request())
    await server.wait_for(lambda s: len(s.requests) == 1)
    if while_ == "reading the body":
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (pooled(client), client._count) == (0, 0)
    await server.wait_for(lambda s: s.closed == 1)


async def test_aclose_closes_idle_and_busy_connections(serve: ServerFactory, new_client: ClientFactory) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        if request.target == b"/slow":
            return await never_answer(request, writer, index)
        writer.write(answer(body=b"ok"))
        return True

    server = await serve(respond)
    client = await new_client()
    busy = asyncio.create_task(fetch(client, server.url + "/slow"))
    await server.wait_for(lambda s: len(s.requests) == 1)
    await fetch(client, server.url + "/fast")
    assert (server.accepted, pooled(client)) == (2, 1)
    await client.aclose()
    with pytest.raises(UpstreamProtocolError):
        await busy
    await server.wait_for(lambda s: s.closed == 2)
    with pytest.raises(UpstreamUnreachable, match="closed"):
        await fetch(client, server.url + "/fast")


# --------------------------------------------------------------------------------------------- TLS


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_an_https_upstream_works_and_keeps_its_connection(
    serve: ServerFactory, new_client: ClientFactory, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def respond(request: Request, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(answer(body=b"secret " + request.body))
        return True

    server = await serve(respond, ssl_context=server_context)
    assert server.url.startswith("https://")
    trusting = ssl.create_default_context(cafile=str(cert))
    client = await new_client(ssl_context=trusting)
    for path in ("/a", "/b"):
        fetched = await fetch(client, server.url + path, "POST", [], pieces(b"hand", b"shake"))
        assert fetched.body == b"secret handshake"
    localhost = server.url.replace("127.0.0.1", "localhost")
    assert (await fetch(client, localhost + "/c")).body == b"secret "
    assert server.accepted == 2  # one per origin

    untrusting = await new_client()
    with pytest.raises(UpstreamUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        await fetch(untrusting, server.url + "/")
