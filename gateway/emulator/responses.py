"""Raw ASGI responses: Litestar's `Response` folds repeated headers, and handshakes need several
`Set-Cookie` headers on one redirect."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from litestar.response.base import ASGIResponse


def json_reply(
    body: Any, status: int = 200, *, cookies: Iterable[str] = (), headers: Iterable[tuple[str, str]] = ()
) -> ASGIResponse:
    return ASGIResponse(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
        headers=[*headers, *(("set-cookie", cookie) for cookie in cookies)],
    )


def redirect(location: str, *, status: int = 307, cookies: Iterable[str] = ()) -> ASGIResponse:
    return ASGIResponse(
        body=b"",
        status_code=status,
        headers=[("location", location), ("cache-control", "no-store"), *(("set-cookie", c) for c in cookies)],
    )


def html_reply(text: str, status: int = 200, *, cookies: Iterable[str] = ()) -> ASGIResponse:
    return ASGIResponse(
        body=text.encode(),
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=[("cache-control", "no-store"), *(("set-cookie", c) for c in cookies)],
    )
