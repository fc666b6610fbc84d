"""The gate every proxied request passes: limits, the Clerk decision, the route policy, then the app.

A raw ASGI callable that the app's dispatcher sends every non-`/__gateway/` request to. It translates
between ASGI and the core and holds no protocol logic: every cookie and token rule lives in `gateway.clerk`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import unquote

from gateway.clerk.decide import AuthState
from gateway.clerk.errors import BadRequestError, ClerkProtocolError
from gateway.clerk.redirects import sign_in_url
from gateway.clerk.request import RequestView
from gateway.edge import answers
from gateway.edge.asgi_types import Receive, Scope, Send
from gateway.edge.record import record_of
from gateway.edge.runtime import EdgeRuntime

logger = logging.getLogger("gateway")

_STATE_HEADERS_NOT_FORWARDED = frozenset({"location", "cache-control"})


class Gate:
    def __init__(self, runtime: EdgeRuntime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = raw_path.split(b"?", 1)[0].decode("latin-1")
        scope["path"] = unquote(path)  # the real path, even behind a router mount that rewrites it
        if runtime.frontend_api is not None and runtime.frontend_api.matches(path):
            record_of(scope).route_class = "frontend_api"
            await runtime.frontend_api.handle(scope, receive, send)
            return
        if scope["type"] == "websocket":
            record_of(scope).route_class = "websocket"
            await self._websocket(scope, receive, send, path)
            return
        outcome = await self.admit(scope, path)
        if isinstance(outcome, Refusal):
            record = record_of(scope)
            record.decision, record.reason = record.decision or "refused", record.reason or outcome.code
            await outcome.send(send)
            return
        state = outcome
        assert runtime.proxy is not None
        proxied = await runtime.proxy.forward(
            scope,
            receive,
            send,
            add_request_headers=runtime.identity.headers_for(state),
            remove_request_headers=runtime.identity.strip,
            add_response_headers=answers.encode_headers(
                (name, value) for name, value in state.headers if name not in _STATE_HEADERS_NOT_FORWARDED
            )
            if state.headers
            else [],
        )
        record = record_of(scope)
        record.upstream_seconds = proxied.upstream_seconds
        record.upstream_error = proxied.error

    async def admit(self, scope: Scope, path: str) -> Refusal | AuthState:
        """Decide whether the request goes on to the app; a `Refusal` is the answer to send otherwise."""
        runtime = self.runtime
        settings = runtime.settings.gateway
        raw_headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
        query: bytes = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        if len(raw_path) + len(query) + 1 > settings.max_url_length:
            return Refusal(414, "uri_too_long", "The request URL is too long.")
        refusal = _header_refusal(raw_headers, settings.max_header_bytes, settings.max_cookies)
        if refusal is not None:
            return refusal
        headers = decode_headers(runtime.forwarded.believed_headers(scope))
        host = headers.get("host") or server_host(scope)
        if runtime.allowed_hosts and host.lower() not in runtime.allowed_hosts:
            return Refusal(421, "host_not_allowed", "This host is not served here.", answers.wants_html(headers))
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        target = raw_path.split(b"?", 1)[0].decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        method = str(scope.get("method", "GET"))
        try:
            view = RequestView.from_merged(method, f"{scheme}://{host}{target}", headers)
            assert runtime.authenticator is not None
            state = await runtime.authenticator.authenticate(view)
        except BadRequestError as error:
            return Refusal(400, error.reason, error.message, answers.wants_html(headers))
        except ClerkProtocolError as error:
            logger.warning("authentication failed: %s", error.message)
            return Refusal(400, error.reason, error.message, answers.wants_html(headers))
        signed_in = state.status == "signed-in"
        record = record_of(scope)
        record.decision = state.status
        record.reason = state.reason
        record.user_id = state.claims.user_id if signed_in and state.claims is not None else None
        location = state.location if state.headers else None
        if location is not None:
            return Refusal(
                307,
                "",
                "",
                location=location,
                headers=answers.encode_headers((name, value) for name, value in state.headers if name != "location"),
            )
        decision = runtime.policy.decide(view.path, view.headers, state.claims if signed_in else None)
        if decision.verdict == "allow":
            return state
        html_page = answers.wants_html(headers)
        state_headers = answers.encode_headers(state.headers)
        if decision.verdict == "forbidden":
            return Refusal(
                403,
                "forbidden",
                "You are signed in but not allowed to open this page.",
                decision.is_api is False and html_page,
                headers=state_headers,
            )
        if not runtime.keys_available and _carries_token(view):
            return Refusal(
                503,
                "keys_unavailable",
                "Sessions cannot be verified right now; try again shortly.",
                html_page,
                headers=[(b"retry-after", b"5")],
            )
        if decision.is_api:
            return Refusal(
                401,
                "unauthenticated",
                "Sign in to use this API.",
                headers=state_headers,
                extra={"reason": state.reason},
            )
        target = sign_in_url(
            runtime.settings.clerk, view.clerk_url, view.clerk_origin, dev_browser_token(view, runtime)
        )
        return Refusal(307, "", "", location=target, headers=[(b"cache-control", b"no-store"), *state_headers])

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """WebSockets are authenticated at the upgrade, then relayed to the app."""
        runtime = self.runtime
        outcome = await self.admit({**scope, "method": "GET"}, path)
        if isinstance(outcome, Refusal):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008 if outcome.status in (401, 403, 307) else 1011})
            return
        state = outcome
        assert runtime.proxy is not None
        await runtime.proxy.forward_websocket(
            scope,
            receive,
            send,
            add_request_headers=runtime.identity.headers_for(state),
            remove_request_headers=runtime.identity.strip,
        )


class Refusal:
    """An answer the gateway gives itself instead of proxying."""

    __slots__ = ("code", "extra", "headers", "html_page", "location", "message", "status")

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        html_page: bool = False,
        *,
        location: str | None = None,
        headers: answers.Headers | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.html_page = html_page
        self.location = location
        self.headers = headers or []
        self.extra = extra

    async def send(self, send: Send) -> None:
        if self.location is not None:
            await answers.redirect(send, self.location, self.headers, self.status)
            return
        await answers.error(
            send, self.status, self.code, self.message, html_page=self.html_page, headers=self.headers, extra=self.extra
        )


def _header_refusal(raw: Iterable[tuple[bytes, bytes]], max_bytes: int, max_cookies: int) -> Refusal | None:
    """Limits (431) and request framing (400) in one pass over the headers.

    A request whose body length is ambiguous (both `Content-Length` and `Transfer-Encoding`, two
    different lengths, a coding other than `chunked`) is a smuggling shape: whatever the server in
    front did with it, the app must not see it (RFC 9112 §6.3).
    """
    size = cookies = 0
    length: bytes | None = None
    chunked = conflicting = False
    for name, value in raw:
        size += len(name) + len(value) + 4
        if name == b"cookie":
            cookies += value.count(b";") + 1
        elif name == b"content-length":
            value = value.strip()
            conflicting = conflicting or chunked or not value.isdigit() or (length is not None and length != value)
            length = value
        elif name == b"transfer-encoding":
            conflicting = conflicting or chunked or length is not None or value.strip().lower() != b"chunked"
            chunked = True
    if size > max_bytes:
        return Refusal(431, "headers_too_large", "The request headers are too large.")
    if cookies > max_cookies:
        return Refusal(431, "too_many_cookies", "The request carries too many cookies.")
    if conflicting:
        return Refusal(  # and close: the bytes after this request cannot be trusted to start the next one
            400, "ambiguous_framing", "The request's body length is ambiguous.", headers=[(b"connection", b"close")]
        )
    return None


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in headers:
            headers[name] += ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    return headers


def server_host(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return "localhost"
    host, port = server[0], server[1]
    return f"{host}:{port}" if port not in (80, 443, None) else str(host)


def _carries_token(view: RequestView) -> bool:
    return bool(view.header("authorization")) or any(name.startswith("__session") for name in view.cookies)


def dev_browser_token(view: RequestView, runtime: EdgeRuntime) -> str | None:
    suffix = runtime.settings.clerk.cookie_suffix
    return view.cookies.get(f"__clerk_db_jwt_{suffix}") or view.cookies.get("__clerk_db_jwt") or None
