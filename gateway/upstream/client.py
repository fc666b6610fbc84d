"""What `UpstreamProxy` needs from an HTTP client (`UpstreamClient`, a `Protocol`) and the errors a client
reports, in a module of their own so that clients (`http1.py`, aiohttp's in `websocket.py`) and the proxy
import them without importing each other."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

# ------------------------------------------------------------------------------------------------ errors


class UpstreamError(Exception):
    """The app could not be reached or did not answer properly; `status` is what the client gets."""

    status = 502
    code = "bad_gateway"
    public_message = "The application is not reachable."


class UpstreamUnreachable(UpstreamError):
    """Connection refused, DNS failure, connect timeout."""


class UpstreamTimeout(UpstreamError):
    """No response headers within the read timeout."""

    status = 504
    code = "gateway_timeout"
    public_message = "The application did not answer in time."


class UpstreamProtocolError(UpstreamError):
    """The app closed the connection before answering, or sent something that is not HTTP."""

    public_message = "The application sent an invalid response."


class UpstreamBodyError(UpstreamError):
    """The response body broke off (reset, timeout between chunks) after the response had started."""


class UpstreamHandshakeRefused(UpstreamError):
    """The app answered a WebSocket upgrade with an HTTP status instead of `101`; the client is refused
    with the app's status when it is a 4xx or 5xx (e.g. the app's own 403), else with 502."""

    public_message = "The application refused the WebSocket connection."

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.upstream_status = status
        if 400 <= status < 600:
            self.status = status


class ClientDisconnected(Exception):
    """The client went away while the request body was being read (raised by the body the proxy hands a
    client, through the client's `request`)."""


def describe_error(error: BaseException) -> str:
    """One short line for logs and outcomes (some libraries quote whole bad responses in their messages)."""
    text = " ".join((str(error) or type(error).__name__).split())
    return text if len(text) <= 200 else text[:197] + "..."


# ------------------------------------------------------------------------------------- client interface


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        """Raw response headers, repeated names (Set-Cookie) kept, in order."""
        ...

    @property
    def complete(self) -> bool:
        """The whole body has been received and handed out: the last chunk can end the ASGI response."""
        ...

    def iter_body(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; raises `UpstreamBodyError` if the body breaks off."""
        ...


@dataclass(frozen=True, slots=True)
class WebSocketMessage:
    kind: Literal["text", "binary", "close"]
    data: str | bytes = b""
    code: int = 1000
    reason: str = ""


class UpstreamWebSocket(Protocol):
    @property
    def subprotocol(self) -> str | None: ...

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    async def send(self, message: WebSocketMessage) -> None: ...

    async def receive(self) -> WebSocketMessage: ...


class UpstreamClient(Protocol):
    """What `UpstreamProxy` needs from an HTTP client; errors are reported as `UpstreamError`s."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def request(
        self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]], body: AsyncIterable[bytes] | None
    ) -> AbstractAsyncContextManager[UpstreamResponse]:
        """Send the request (`url` already percent-encoded, used verbatim); the response's headers are read."""
        ...

    def websocket(
        self, url: str, headers: Sequence[tuple[bytes, bytes]], subprotocols: Sequence[str]
    ) -> AbstractAsyncContextManager[UpstreamWebSocket]: ...
