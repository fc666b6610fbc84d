"""Small error answers sent straight over ASGI: JSON for API clients, a short HTML page for browsers.

Never a stack trace: the message is one sentence chosen by the caller; the cause goes to the log.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from gateway.asgi_types import Send

Headers = list[tuple[bytes, bytes]]

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    508: "Redirect Loop Stopped",
}


_PAGE_STYLE = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1d2330}"


HTML = b"text/html; charset=utf-8"


def html_page(title: str, body_html: str) -> bytes:
    """The gateway's one page skeleton: `title` is text (escaped here), `body_html` is markup."""
    heading = html.escape(title)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{heading}</title>'
        f"<style>{_PAGE_STYLE}</style></head><body><h1>{heading}</h1>{body_html}</body></html>\n"
    ).encode()


def error_body(
    status: int,
    code: str,
    message: str,
    *,
    as_html: bool,
    extra: Mapping[str, Any] | None = None,
    details: Any = None,
) -> tuple[bytes, bytes]:
    """(content type, body) of an error answer: a short page for people, JSON for programs. `details`
    (an `outcomes.PageDetails`) adds to the page: who is signed in, a sign-in link, a fix."""
    if as_html and details is not None:
        return HTML, html_page(f"{status} {REASONS.get(status, 'Error')}", _page_body(message, details))
    return _rendered(status, code, message, as_html, tuple(extra.items()) if extra else ())


def _page_body(message: str, details: Any) -> str:
    parts = [f'<p id="message">{html.escape(message)}</p>']
    if details.fix:
        parts.append(f'<p id="fix"><b>Fix:</b> {html.escape(details.fix)}</p>')
    if details.signed_in_as:
        back = html.escape(details.return_path or "/", quote=True)
        parts.append(
            f'<p id="signed-in-as">Signed in as <b>{html.escape(details.signed_in_as)}</b>.</p>'
            '<form method="post" action="/__gateway/sign-out">'
            f'<input type="hidden" name="redirect_url" value="{back}">'
            '<button type="submit" id="switch-account">Sign out and sign in as someone else</button></form>'
        )
    if details.sign_in_url:
        parts.append(f'<p><a id="sign-in" href="{html.escape(details.sign_in_url, quote=True)}">Sign in</a></p>')
    parts.append('<p><a href="/">Back to the start page</a></p>')
    return "".join(parts)


@lru_cache(maxsize=512)
def _rendered(
    status: int, code: str, message: str, as_html: bool, extra: tuple[tuple[str, Any], ...]
) -> tuple[bytes, bytes]:
    """The same few answers over and over (401s, 403s, 502s): rendered once each."""
    if as_html:
        body = f'<p>{html.escape(message)}</p><p><a href="/">Back to the start page</a></p>'
        return HTML, html_page(f"{status} {REASONS.get(status, 'Error')}", body)
    return b"application/json", json.dumps({"error": code, "message": message, **dict(extra)}).encode()


async def send_bytes(
    send: Send, status: int, content_type: bytes, body: bytes, extra_headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    headers: Headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
