"""Streaming reverse proxy to the app, as raw ASGI (no framework objects on the hot path).

Why its own HTTP/1.1 client (`http1.py`: asyncio Protocols, `httptools`, a LIFO keep-alive pool): a raw
ASGI proxy (granian, 1 core, 64 connections, small answers from nginx) did 6,800 req/s over aiohttp's
`ClientSession`, 26,500 over a bare Protocol + httptools prototype and 22,500 over `Http1UpstreamClient`
(the prototype plus timeouts, limits, back-pressure, retries and checks); the whole gateway went from
4,600 to 8,750 req/s with it. (Before aiohttp, httpx's pool had done 387 req/s.) WebSockets still go
through aiohttp (`AiohttpUpstreamClient` in `websocket.py`, which `Http1UpstreamClient` owns). The client
hides behind `UpstreamClient` (a `Protocol`, in `client.py` with the errors), so it can be swapped without
touching `UpstreamProxy`, which only knows ASGI messages, header lists and those errors.

What is forwarded (and why):
* the raw path and query exactly as received (nothing re-encoded: the client sends them verbatim), so
  the app sees `/a%2Fb?x=%20&y` byte for byte;
* the request headers minus hop-by-hop headers (RFC 9110 §7.6.1, plus any named in `Connection`),
  minus the identity headers the gateway itself sets (spoofs, also in their `_` spelling which some
  servers fold into `-`; the `_` spellings of forwarding headers too), minus `Expect` (the ASGI
  server already answered `100 Continue`), with `Host` kept or rewritten and `X-Forwarded-For/-Proto/-Host`
  replaced (see `gateway/forwarded.py`);
* bodies streamed both ways with back-pressure (never buffered whole), compressed bytes untouched,
  redirects and cookies passed to the browser, never followed or stored;
* an answer without a body by rule is relayed with its headers and no body. A `204`'s or `304`'s
  `Content-Length` is not relayed: uvicorn (httptools) takes it for a body still to come and fails the
  response ("Response content shorter than Content-Length"), and nothing is lost (RFC 9110 §8.6 forbids
  it on a `204` and makes it optional on a `304`, whose length caches never take, RFC 9111 §3.2). The
  answer to `HEAD` keeps its `Content-Length` (the representation's length): both servers know `HEAD`.

The proxy renders no error answers of its own. A failure before the response starts (unreachable,
connect timeout, broken answer, no response headers within the read timeout) sends nothing: `forward`
returns it as `ProxyOutcome.failure` (an `UpstreamError`: its `status`, 502 or 504, `code` and
`public_message` say what to answer) and the caller answers; `forward_websocket` returns the failure of
a handshake the same way. A failure after the response started cannot change the status any more: the
client connection is closed mid-body (the ASGI call returns without completing the response, which
servers answer by closing the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote_from_bytes, urlsplit

from yarl import URL

from gateway.asgi_types import Receive, Scope, Send
from gateway.forwarded import (
    FORWARDING_HEADER_PREFIX,
    FORWARDING_HEADERS,
    UPSTREAM_FORWARDING_HEADERS,
    ForwardedPolicy,
    is_forwarding_twin,
    upstream_forwarding_headers,
)
from gateway.upstream.client import (
    ClientDisconnected,
    UpstreamBodyError,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
    UpstreamWebSocket,
    WebSocketMessage,
    describe_error,
)
from gateway.upstream.headers import HOP_BY_HOP, Headers, filter_headers, named_by
from gateway.upstream.http1 import Http1UpstreamClient

logger = logging.getLogger("gateway.proxy")

_NOT_FORWARDED = HOP_BY_HOP | UPSTREAM_FORWARDING_HEADERS | {b"host", b"expect"}
_NOT_FORWARDED_WEBSOCKET = _NOT_FORWARDED | {b"content-length"}
_NOT_RETURNED_WEBSOCKET = HOP_BY_HOP | {b"content-length", b"date", b"server"}


# ----------------------------------------------------------------------------------------- the proxy


@dataclass(frozen=True, slots=True)
class ProxyOutcome:
    """What happened, for logs and metrics. `status` is what the client got (0: nothing was sent)."""

    status: int
    upstream_seconds: float
    request_bytes: int
    response_bytes: int
    error: str | None = None
    client_disconnected: bool = False
    failure: UpstreamError | None = None
    """Set when the app failed before the response started: nothing was sent, the caller answers."""


class _RequestBody:
    """The ASGI request body as an async iterator, for the upstream client to pull from (back-pressure)."""

    __slots__ = ("bytes_read", "client_gone", "finished", "receive")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.bytes_read = 0
        self.finished = False
        self.client_gone = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self.finished:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise ClientDisconnected("client disconnected during the request body")
            chunk = message.get("body", b"")
            self.finished = not message.get("more_body", False)
            if chunk:
                self.bytes_read += len(chunk)
                yield chunk


@lru_cache(maxsize=64)
def _normalized_names(names: frozenset[bytes]) -> frozenset[bytes]:
    return frozenset(name.lower().replace(b"_", b"-") for name in names)


@lru_cache(maxsize=64)
def _dropped_from_untrusted(drop: frozenset[bytes], spoofs: frozenset[bytes]) -> frozenset[bytes]:
    """Every header name an untrusted peer's request loses, as one set (one lookup per header)."""
    return drop | FORWARDING_HEADERS | spoofs


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(
        (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding" for name, value in headers
    )


def _encoded(raw: bytes) -> str:
    """Raw path/query bytes as URL text: verbatim when ASCII (percent-escapes untouched), else the
    non-ASCII bytes percent-encoded (a URL on the wire is ASCII)."""
    if raw.isascii():
        return raw.decode("ascii")
    return quote_from_bytes(raw, safe=bytes(range(0x21, 0x7F)))


class UpstreamProxy:
    """Forward ASGI `http` and `websocket` connections to one upstream app."""

    def __init__(
        self,
        upstream: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        preserve_host: bool,
        forwarded: ForwardedPolicy,
        client: UpstreamClient | None = None,
        connection_limit: int = 256,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream must be an absolute http(s) URL, got {upstream!r}")
        self.upstream = upstream
        self.preserve_host = preserve_host
        self.forwarded = forwarded
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._websocket_origin = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"
        self._path_prefix = parts.path.rstrip("/")
        self._host_header = (URL(self._origin).host_port_subcomponent or parts.netloc).encode("ascii")
        self.client: UpstreamClient = client or Http1UpstreamClient(
            connect_timeout=connect_timeout, read_timeout=read_timeout, limit=connection_limit
        )

    async def start(self) -> None:
        """Open the connection pool (call from the app's lifespan)."""
        await self.client.start()

    async def aclose(self) -> None:
        await self.client.aclose()

    def _target(self, scope: Scope, origin: str) -> str:
        raw_path = scope.get("raw_path")
        if raw_path is None:
            raw_path = quote_from_bytes(scope["path"].encode("utf-8"), safe="/").encode("ascii")
        path = _encoded(raw_path) or "/"
        query = scope.get("query_string", b"")
        url = f"{origin}{self._path_prefix}{path}"
        return f"{url}?{_encoded(query)}" if query else url

    def _request_headers(
        self,
        scope: Scope,
        drop: frozenset[bytes],
        add_request_headers: Iterable[tuple[bytes, bytes]],
        remove_request_headers: frozenset[bytes],
    ) -> tuple[Headers, bool]:
        """(the headers for the app, whether the request has a body).

        From an untrusted peer (the usual case: the gateway faces the browsers) one pass over the
        headers does it all; a trusted proxy's forwarding headers take the general path. The one pass
        is what `believed_headers` + `filter_headers` + `client_info` + `_has_body` compute: it saves
        3.5 µs of a signed-in request's 30 (measured in-process), a tenth of the gateway's own work.
        """
        spoofs = _normalized_names(remove_request_headers)
        dropped = _dropped_from_untrusted(drop, spoofs)
        client = scope.get("client")
        raw: Headers = scope["headers"]
        host_header: bytes | None = None
        if client and self.forwarded.is_trusted(str(client[0])):
            info = self.forwarded.client_info(scope)
            headers = [
                pair
                for pair in filter_headers(self.forwarded.believed_headers(scope), drop, spoofs)
                if not is_forwarding_twin(pair[0])
            ]
            host_header = next((value for name, value in raw if name == b"host"), None)
            has_body = _has_body(raw)
        else:
            headers = []
            connection: bytes | None = None
            has_body = False
            for name, value in raw:
                lower = name.lower()
                if lower in dropped or lower.startswith(FORWARDING_HEADER_PREFIX):
                    if lower == b"host":
                        host_header = value if host_header is None else host_header
                    elif lower == b"connection":
                        connection = value if connection is None else connection + b"," + value
                    elif lower == b"transfer-encoding":
                        has_body = True
                    continue
                if b"_" in lower and (lower.replace(b"_", b"-") in spoofs or is_forwarding_twin(lower)):
                    continue
                if lower == b"content-length" and value.strip() != b"0":
                    has_body = True
                headers.append((lower, value))
            named = named_by(connection) if connection is not None else None
            if named:
                headers = [pair for pair in headers if pair[0] not in named]
            info = self.forwarded.untrusted_client(scope, host_header)
        headers.append(
            (b"host", host_header or self._host_header) if self.preserve_host else (b"host", self._host_header)
        )
        headers.extend(upstream_forwarding_headers(info))
        headers.extend(add_request_headers)
        return headers, has_body

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        add_request_headers: Iterable[tuple[bytes, bytes]] = (),
        remove_request_headers: frozenset[bytes] = frozenset(),
        add_response_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> ProxyOutcome:
        """Proxy one ASGI `http` request; never raises for upstream failures. One that happens before the
        response started sends nothing: the outcome carries it (`failure`, `status` 0) for the caller to
        answer (`failure.status`, `.code`, `.public_message`, with `add_response_headers`)."""
        started_at = time.perf_counter()
        upstream_seconds = 0.0
        headers, has_body = self._request_headers(scope, _NOT_FORWARDED, add_request_headers, remove_request_headers)
        body = _RequestBody(receive) if has_body else None
        status = 0
        response_bytes = 0
        try:
            async with self.client.request(scope["method"], self._target(scope, self._origin), headers, body) as answer:
                upstream_seconds = time.perf_counter() - started_at
                response_headers = filter_headers(answer.headers, HOP_BY_HOP)
                response_headers.extend(add_response_headers)
                status = answer.status
                if status == 304 or status == 204:
                    response_headers = [pair for pair in response_headers if pair[0] != b"content-length"]
                await send({"type": "http.response.start", "status": status, "headers": response_headers})
                response_bytes, client_gone, broke_off, ended = await self._stream_response(answer, receive, send, body)
                if client_gone:
                    return self._outcome(status, upstream_seconds, body, response_bytes, disconnected=True)
                if broke_off is not None:  # too late for an error page: the connection is closed mid-body
                    logger.warning("upstream response broke off after %d bytes: %s", response_bytes, broke_off)
                    return self._outcome(status, upstream_seconds, body, response_bytes, error=broke_off)
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamError as error:
            if body is not None and body.client_gone:
                return self._outcome(0, upstream_seconds, body, 0, disconnected=True)
            if status:  # the response started: too late for an error page
                return self._outcome(status, upstream_seconds, body, response_bytes, error=str(error))
            logger.warning("upstream %s failed: %s", type(error).__name__, error)
            upstream_seconds = time.perf_counter() - started_at
            request_bytes = body.bytes_read if body is not None else 0
            return ProxyOutcome(0, upstream_seconds, request_bytes, 0, str(error), failure=error)
        except (ClientDisconnected, OSError):
            return self._outcome(status, upstream_seconds, body, response_bytes, disconnected=True)
        return self._outcome(status, upstream_seconds, body, response_bytes)

    @staticmethod
    def _outcome(
        status: int,
        upstream_seconds: float,
        body: _RequestBody | None,
        response_bytes: int,
        *,
        error: str | None = None,
        disconnected: bool = False,
    ) -> ProxyOutcome:
        request_bytes = body.bytes_read if body is not None else 0
        return ProxyOutcome(status, upstream_seconds, request_bytes, response_bytes, error, disconnected)

    @staticmethod
    async def _stream_response(
        answer: UpstreamResponse, receive: Receive, send: Send, body: _RequestBody | None
    ) -> tuple[int, bool, str | None, bool]:
        """Relay the body; returns (bytes sent, the client went away, why the upstream body broke off,
        whether the ASGI response was ended).

        The chunk after which the upstream body is complete ends the response itself (`more_body`
        false): a small answer costs one body message, not two. ASGI servers may silently drop
        messages sent after a disconnect, so from the second chunk on (once the request body is
        fully read) a watcher waits for `http.disconnect`: a long download stops when its client
        leaves, and short answers cost no extra task.
        """
        sent = 0
        chunks = 0
        ended = False
        watcher: asyncio.Future[None] | None = None
        try:
            async for chunk in answer.iter_body():
                if watcher is not None and watcher.done():
                    return sent, True, None, False
                ended = answer.complete
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
                sent += len(chunk)
                chunks += 1
                if watcher is None and chunks >= 2 and (body is None or body.finished):
                    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        except UpstreamBodyError as error:
            return sent, False, str(error), False
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
        return sent, False, None, ended

    # ------------------------------------------------------------------------------------ WebSocket

    async def forward_websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        add_request_headers: Iterable[tuple[bytes, bytes]] = (),
        remove_request_headers: frozenset[bytes] = frozenset(),
        ended: asyncio.Event | None = None,
    ) -> UpstreamError | None:
        """Proxy one ASGI `websocket` connection: subprotocols, text/binary messages and close codes.

        `ended`: set when the connection must end (its session was revoked): both sides are closed, the
        client with 1008 (policy violation) and the reason `session-revoked`.

        When the app cannot be reached or refuses the handshake, nothing is sent to the client: the
        failure is returned for the caller to refuse the handshake with (its `status` is the app's own
        4xx/5xx for a refusal, else 502/504); None once the connection was accepted (or never asked for).
        """
        message = await receive()
        if message["type"] != "websocket.connect":
            return None
        headers = [
            (name, value)
            for name, value in self._request_headers(
                scope, _NOT_FORWARDED_WEBSOCKET, add_request_headers, remove_request_headers
            )[0]
            if not name.startswith(b"sec-websocket-")
        ]
        accepted = False
        try:
            async with self.client.websocket(
                self._target(scope, self._websocket_origin), headers, scope.get("subprotocols") or ()
            ) as upstream:
                accept_headers = [
                    (name, value)
                    for name, value in filter_headers(upstream.headers, _NOT_RETURNED_WEBSOCKET)
                    if not name.startswith(b"sec-websocket-")
                ]
                await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol, "headers": accept_headers})
                accepted = True
                await _relay_websocket(upstream, receive, send, ended)
        except UpstreamError as error:
            logger.warning("upstream WebSocket %s failed: %s", type(error).__name__, error)
            if not accepted:
                return error
            await _close_client(send, 1011, "upstream error")
        except OSError:
            pass  # the client went away
        return None


async def _wait_for_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (skips the empty request message of a body-less request)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _close_client(send: Send, code: int, reason: str = "") -> None:
    with contextlib.suppress(OSError, RuntimeError):  # already closed
        await send({"type": "websocket.close", "code": code, "reason": reason})


def _sendable_close_code(code: int | None) -> int:
    """1005/1006/1015 are reserved for "no code", "abnormal" and "TLS": they never travel in a frame."""
    if code is None or code == 1005:
        return 1000
    if code in (1006, 1015):
        return 1011
    return code


async def _relay_websocket(
    upstream: UpstreamWebSocket, receive: Receive, send: Send, ended: asyncio.Event | None = None
) -> None:
    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await upstream.send(WebSocketMessage("text", text))
                else:
                    await upstream.send(WebSocketMessage("binary", message.get("bytes") or b""))
            elif message["type"] == "websocket.disconnect":
                code = _sendable_close_code(message.get("code"))
                await upstream.send(WebSocketMessage("close", code=code, reason=message.get("reason") or ""))
                return

    async def upstream_to_client() -> None:
        while True:
            message = await upstream.receive()
            if message.kind == "text":
                await send({"type": "websocket.send", "text": message.data})
            elif message.kind == "binary":
                await send({"type": "websocket.send", "bytes": message.data})
            else:
                await _close_client(send, _sendable_close_code(message.code), message.reason)
                return

    async def until_ended(ended: asyncio.Event) -> None:
        await ended.wait()
        await _close_client(send, 1008, "session-revoked")  # the client first: the app's side may take a while
        with contextlib.suppress(UpstreamError, OSError):
            await upstream.send(WebSocketMessage("close", code=1001, reason="session ended"))

    tasks = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
    if ended is not None:
        tasks.append(asyncio.ensure_future(until_ended(ended)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if ended is not None and ended.is_set():
        return  # ended on purpose: what the closing sides raised meanwhile is no failure
    for task in done:
        error = task.exception()
        if isinstance(error, UpstreamError):
            raise error
        if isinstance(error, ConnectionError):
            raise UpstreamBodyError(describe_error(error)) from error
