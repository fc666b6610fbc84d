"""The one writer of the answers the gateway makes itself: redirects, JSON errors, short HTML pages.

`send_outcome` renders an admission outcome for HTTP entrances, `refuse_websocket` for upgrades;
forward-auth renders the same outcomes in its proxies' format (`endpoints.py`).

Kept off Litestar's response machinery because they sit on the hot path (401s and 307s must be at
least as fast as a proxied signed-in GET).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from gateway.asgi_types import Receive, Scope, Send
from gateway.edge.http_errors import error_body
from gateway.edge.outcomes import Deny, Outcome, Proceed, Redirect

Headers = list[tuple[bytes, bytes]]

NO_STORE = (b"cache-control", b"no-store")


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


async def error(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    html_page: bool = False,
    headers: Headers | None = None,
    extra: Mapping[str, Any] | None = None,
    json_body: bytes | None = None,
    details: Any = None,
) -> None:
    """A precise error answer: JSON for programs (`json_body` verbatim when given), a short page for
    people; never a traceback."""
    if json_body is not None and not html_page:
        content_type, body = b"application/json", json_body
    else:
        content_type, body = error_body(status, code, message, as_html=html_page, extra=extra, details=details)
    await send_answer(send, status, [(b"content-type", content_type), *(headers or []), NO_STORE], body)


def status_of(outcome: Outcome) -> int:
    return 200 if isinstance(outcome, Proceed) else outcome.status


async def send_outcome(send: Send, outcome: Redirect | Deny | Proceed, headers: Headers) -> None:
    """A redirect or a refusal (with `headers`, e.g. the request id, added); never called to proceed."""
    if isinstance(outcome, Redirect):
        await redirect(send, outcome.location, [*outcome.headers, *headers], outcome.status)
        return
    assert isinstance(outcome, Deny), "a request that proceeds is proxied, not answered"
    await error(
        send,
        outcome.status,
        outcome.code,
        outcome.message,
        html_page=outcome.page,
        headers=[*outcome.headers, *headers],
        extra=outcome.extra,
        json_body=outcome.body,
        details=outcome.details,
    )


async def refuse_websocket(
    scope: Scope, receive: Receive, send: Send, outcome: Outcome, *, connected: bool = False
) -> None:
    """Refuse an upgrade (`connected`: its `websocket.connect` was received already): with the HTTP answer
    itself where the server can send one (ASGI's `websocket.http.response`), else by closing with 1008
    (policy) or 1011 (the gateway or the app failed)."""
    if not connected and (await receive())["type"] != "websocket.connect":
        return
    status = status_of(outcome)
    if "websocket.http.response" in scope.get("extensions", {}):
        headers: Headers = list(outcome.headers) if not isinstance(outcome, Proceed) else []
        if isinstance(outcome, Redirect):
            headers.append((b"location", outcome.location.encode("utf-8")))
            body = b""
            content_type = b"text/plain"
        else:
            assert isinstance(outcome, Deny)
            if outcome.body is not None:
                content_type, body = b"application/json", outcome.body
            else:
                content_type, body = error_body(outcome.status, outcome.code, outcome.message, as_html=False)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [*headers, (b"content-type", content_type), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        return
    with contextlib.suppress(OSError, RuntimeError):  # already closed
        await send({"type": "websocket.close", "code": 1011 if status >= 500 else 1008})
