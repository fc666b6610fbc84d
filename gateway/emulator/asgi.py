"""ASGI wrappers around the FAPI app for what must happen before routing.

clerk-js tunnels PATCH/DELETE through `POST ...?_method=DELETE`, and calls FAPI cross-origin with
credentials, so the method override and CORS are applied before Litestar picks a route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from litestar.types import ASGIApp

OVERRIDABLE = {"PATCH", "PUT", "DELETE", "GET"}


class BrowserFacing:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS" and origin:
            await self._preflight(origin, headers, send)
            return
        if scope["method"] == "POST":
            override = _method_override(scope.get("query_string", b""))
            if override:
                scope = {**scope, "method": override}
        if not origin:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra: list[Any] = [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-credentials", b"true"),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _preflight(origin: str, headers: dict[str, str], send: Any) -> None:
        requested = headers.get("access-control-request-headers", "content-type")
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
                    (b"access-control-allow-headers", requested.encode("latin-1")),
                    (b"access-control-max-age", b"600"),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _method_override(query_string: bytes) -> str | None:
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == "_method" and value.upper() in OVERRIDABLE:
            return value.upper()
    return None
