"""aiohttp's client behind `UpstreamClient`: used for WebSockets (`Http1UpstreamClient` owns one, made
for the first WebSocket); it can also carry plain HTTP (`request`), as it did before `http1.py`, which a
raw ASGI proxy runs at 22,500 req/s where aiohttp's `ClientSession` did 6,800 (granian, 1 core, 64
connections, small answers)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from gateway.upstream.client import (
    UpstreamBodyError,
    UpstreamHandshakeRefused,
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
    UpstreamWebSocket,
    WebSocketMessage,
)
from gateway.upstream.client import describe_error as _describe

RESPONSE_CHUNK = 64 * 1024
WEBSOCKET_MAX_MESSAGE = 16 * 1024 * 1024


def _text(value: bytes) -> str:
    """aiohttp writes header strings as UTF-8: decoding as UTF-8 keeps the bytes exact when they are UTF-8."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class _AiohttpResponse:
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        return self._response.raw_headers

    @property
    def complete(self) -> bool:
        return self._response.content.at_eof()

    async def iter_body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(RESPONSE_CHUNK):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UpstreamBodyError(_describe(error)) from error


class _AiohttpWebSocket:
    __slots__ = ("_socket",)

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket

    @property
    def subprotocol(self) -> str | None:
        return self._socket.protocol

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        response = self._socket._response  # the handshake response: cookies the app sets on upgrade
        return response.raw_headers

    async def send(self, message: WebSocketMessage) -> None:
        try:
            await self._send(message)
        except aiohttp.ClientError as error:
            raise UpstreamBodyError(_describe(error)) from error

    async def _send(self, message: WebSocketMessage) -> None:
        if message.kind == "text":
            await self._socket.send_str(str(message.data))
        elif message.kind == "binary":
            await self._socket.send_bytes(message.data if isinstance(message.data, bytes) else message.data.encode())
        else:
            await self._socket.close(code=message.code, message=message.reason.encode())

    async def receive(self) -> WebSocketMessage:
        try:
            message = await self._socket.receive()
        except aiohttp.ClientError as error:
            raise UpstreamBodyError(_describe(error)) from error
        if message.type == aiohttp.WSMsgType.TEXT:
            return WebSocketMessage("text", message.data)
        if message.type == aiohttp.WSMsgType.BINARY:
            return WebSocketMessage("binary", message.data)
        if message.type == aiohttp.WSMsgType.CLOSE:
            return WebSocketMessage("close", code=int(message.data or 1000), reason=str(message.extra or ""))
        code = self._socket.close_code
        if message.type == aiohttp.WSMsgType.ERROR or code is None:
            return WebSocketMessage("close", code=1011, reason="upstream error")
        return WebSocketMessage("close", code=code)


class AiohttpUpstreamClient:
    """One `aiohttp.ClientSession` per process: pooled keep-alive connections, no cookie jar,
    bytes passed through undecoded, no redirects followed, no headers invented."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        limit: int = 256,
        ttl_dns_cache: int = 300,
        keepalive_timeout: float = 30.0,
        max_header_size: int = 64 * 1024,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limit = limit
        self.ttl_dns_cache = ttl_dns_cache
        self.keepalive_timeout = keepalive_timeout
        self.max_header_size = max_header_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self.limit, ttl_dns_cache=self.ttl_dns_cache, keepalive_timeout=self.keepalive_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            # sock_read starts once the request body is sent: "no answer within read_timeout", then
            # "no byte for read_timeout" between body chunks, like nginx's proxy_read_timeout.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            max_line_size=self.max_header_size,
            max_field_size=self.max_header_size,
            max_headers=256,
            read_bufsize=RESPONSE_CHUNK,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _started(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AiohttpUpstreamClient.start() was not called (app lifespan)")
        return self._session

    @asynccontextmanager
    async def request(
        self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]], body: AsyncIterable[bytes] | None
    ) -> AsyncIterator[UpstreamResponse]:
        session = self._started()
        try:
            response = await session.request(
                method,
                URL(url, encoded=True),
                headers=[(_text(name), _text(value)) for name, value in headers],
                data=body,
                allow_redirects=False,
                compress=None,
            )
        except BaseException as error:
            raise _translate(error) from error
        try:
            yield _AiohttpResponse(response)
        finally:
            response.release()

    @asynccontextmanager
    async def websocket(
        self, url: str, headers: Sequence[tuple[bytes, bytes]], subprotocols: Sequence[str]
    ) -> AsyncIterator[UpstreamWebSocket]:
        session = self._started()
        try:
            socket = await session.ws_connect(
                URL(url, encoded=True),
                headers=[(_text(name), _text(value)) for name, value in headers],
                protocols=tuple(subprotocols),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.connect_timeout),
                autoclose=True,
                autoping=True,
                max_msg_size=WEBSOCKET_MAX_MESSAGE,
            )
        except aiohttp.WSServerHandshakeError as error:
            raise UpstreamHandshakeRefused(error.status, error.message) from error
        except BaseException as error:
            raise _translate(error) from error
        try:
            yield _AiohttpWebSocket(socket)
        finally:
            await socket.close()


def _translate(error: BaseException) -> BaseException:
    """aiohttp's exceptions → ours (other exceptions, e.g. cancellation, unchanged)."""
    message = _describe(error)
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return UpstreamUnreachable(f"connect timeout: {message}")
    if isinstance(error, aiohttp.ServerTimeoutError | TimeoutError):
        return UpstreamTimeout(message)
    if isinstance(error, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(message)
    if isinstance(error, aiohttp.ClientError):
        return UpstreamProtocolError(message)
    return error
