"""Small raw-ASGI answers the edge sends itself: redirects, JSON errors, short HTML pages.

Kept off Litestar's response machinery because they sit on the hot path (401s and 307s must be at
least as fast as a proxied signed-in GET).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.asgi_types import Scope, Send
from gateway.edge.http_errors import error_body

Headers = list[tuple[bytes, bytes]]

NO_STORE = (b"cache-control", b"no-store")


def encode_headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    return [(name.lower().encode("latin-1"), value.encode("utf-8")) for name, value in pairs]


async def send_answer(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def redirect(send: Send, location: str, headers: Headers, status: int = 307) -> None:
    await send_answer(send, status, [(b"location", location.encode("utf-8")), *headers])


def wants_html(headers: Mapping[str, str]) -> bool:
    return "text/html" in headers.get("accept", "") or headers.get("sec-fetch-dest") in ("document", "iframe")


async def error(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    html_page: bool = False,
    headers: Headers | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """A precise error answer: JSON for programs, a short page for people; never a traceback."""
    content_type, body = error_body(status, code, message, as_html=html_page, extra=extra)
    await send_answer(send, status, [(b"content-type", content_type), *(headers or []), NO_STORE], body)


async def refuse_websocket(
    scope: Scope, send: Send, status: int, code: str, message: str, *, html_page: bool = False
) -> None:
    """Refuse a WebSocket handshake (its `websocket.connect` received) with an HTTP answer where the
    server supports it (the `websocket.http.response` extension), else with a close (1011)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        with contextlib.suppress(OSError, RuntimeError):  # already closed
            await send({"type": "websocket.close", "code": 1011, "reason": "upstream unavailable"})
        return
    content_type, body = error_body(status, code, message, as_html=html_page)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
