"""Small raw-ASGI answers the edge sends itself: redirects, JSON errors, short HTML pages.

Kept off Litestar's response machinery because they sit on the hot path (401s and 307s must be at
least as fast as a proxied signed-in GET).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.edge.asgi_types import Send

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
    base = [*(headers or []), NO_STORE]
    if html_page:
        title = html.escape(_TITLES.get(status, "Error"))
        body = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{status} {title}</title></head>"
            f"<body><h1>{status} {title}</h1><p>{html.escape(message)}</p></body></html>"
        ).encode()
        await send_answer(send, status, [(b"content-type", b"text/html; charset=utf-8"), *base], body)
        return
    payload = {"error": code, "message": message, **(extra or {})}
    body = json.dumps(payload).encode()
    await send_answer(send, status, [(b"content-type", b"application/json"), *base], body)


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
