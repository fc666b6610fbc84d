"""The gate every proxied request passes: limits, the Clerk decision, the route policy, then the app.

A raw ASGI callable that the app's dispatcher sends every non-`/__gateway/` request to. It translates
between ASGI and the core and holds no protocol logic: every cookie and token rule lives in `gateway.clerk`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import unquote

from gateway.asgi_types import Receive, Scope, Send
from gateway.clerk.decide import AuthState
from gateway.clerk.errors import BadRequestError, ClerkProtocolError
from gateway.clerk.redirects import sign_in_url
from gateway.clerk.request import RequestView, is_plain_path
from gateway.edge import answers
from gateway.edge.record import RequestRecord, record_of, stamp, stamping
from gateway.edge.runtime import EdgeRuntime
from gateway.edge.session_memo import MemoKey, SessionMemo, query_allows_memo

logger = logging.getLogger("gateway")

_STATE_HEADERS_NOT_FORWARDED = frozenset({"location", "cache-control"})


class Gate:
    def __init__(self, runtime: EdgeRuntime) -> None:
        self.runtime = runtime
        self.memo: SessionMemo | None = SessionMemo(  # None: every request decided afresh (tests compare)
            runtime.settings.gateway.token_cache_size, by_path=runtime.settings.clerk.organization_sync is not None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        scope["raw_path"] = raw_path  # what `admit` and the proxy read, whatever becomes of `path`
        path = raw_path.split(b"?", 1)[0].decode("latin-1")
        scope["path"] = unquote(path) if "%" in path else path  # the real path, even behind a rewriting mount
        record = record_of(scope)
        if runtime.frontend_api is not None and runtime.frontend_api.matches(path):
            record.route_class = "frontend_api"
            if record.request_id is not None:  # the Frontend API proxy builds its own answers
                send = stamping(send, record, record.request_id)
            await runtime.frontend_api.handle(scope, receive, send)
            return
        if scope["type"] == "websocket":
            record.route_class = "websocket"
            await self._websocket(scope, receive, send, path)
            return
        outcome = await self.admit(scope, path)
        if isinstance(outcome, Refusal):
            record.decision, record.reason = record.decision or "refused", record.reason or outcome.code
            await outcome.send(send, record)
            return
        state = outcome
        assert runtime.proxy is not None
        answer_headers = (
            answers.encode_headers(
                (name, value) for name, value in state.headers if name not in _STATE_HEADERS_NOT_FORWARDED
            )
            if state.headers
            else []
        )
        response_headers = stamp(record, answer_headers, 0)
        proxied = await runtime.proxy.forward(
            scope,
            receive,
            send,
            add_request_headers=runtime.identity.headers_for(state),
            remove_request_headers=runtime.identity.strip,
            add_response_headers=response_headers,
        )
        record.status = proxied.status
        record.upstream_seconds = proxied.upstream_seconds
        record.upstream_error = proxied.error
        failure = proxied.failure
        if failure is not None:  # the app failed before answering: nothing was sent yet
            record.status = failure.status
            html_page = answers.wants_html(decode_headers(scope["headers"]))
            status, message = failure.status, failure.public_message
            await answers.error(send, status, failure.code, message, html_page=html_page, headers=response_headers)

    async def admit(self, scope: Scope, path: str) -> Refusal | AuthState:
        """Decide whether the request goes on to the app; a `Refusal` is the answer to send otherwise."""
        runtime = self.runtime
        settings = runtime.settings.gateway
        query: bytes = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        if len(raw_path) + len(query) + 1 > settings.max_url_length:
            return Refusal(414, "uri_too_long", "The request URL is too long.")
        refusal, picked, repeated = _read_head(scope["headers"], settings.max_header_bytes, settings.max_cookies)
        if refusal is not None:
            return refusal
        memo_key = None
        if self.memo is not None and not repeated and query_allows_memo(query) and is_plain_path(path):
            memo_key = self._memo_key(scope, path, picked)
            if memo_key is not None:
                state = self._remembered(scope, path, memo_key, picked)
                if state is not None:
                    return state
        return await self._decide(scope, raw_path, query, memo_key)

    def _memo_key(self, scope: Scope, path: str, picked: list[bytes | None]) -> MemoKey | None:
        """Every input of the decision (see `session_memo`); None when the request is not worth keying."""
        host = picked[_HOST]
        cookie, authorization = picked[_COOKIE], picked[_AUTHORIZATION]
        if not host:  # the origin would come from the server's address, which the key does not hold
            return None
        if cookie is None and authorization is None:
            return None  # no token at all: never signed in, nothing to remember
        if cookie is not None and b"__clerk_handshake" in cookie:
            return None  # a handshake to resolve (row D1): its outcome depends on more than the key says
        referer, accept = picked[_REFERER], picked[_ACCEPT]
        size = len(cookie or b"") + len(authorization or b"") + len(referer or b"") + len(accept or b"")
        if size > _MEMO_KEY_LIMIT:
            return None  # bounded memory: padded headers are decided afresh
        client = scope.get("client")
        trusted = client is not None and self.runtime.forwarded.is_trusted(str(client[0]))
        dest = picked[_SEC_FETCH_DEST]
        assert self.memo is not None
        return (
            scope.get("method", "GET"),
            scope.get("scheme"),
            host,
            cookie,
            authorization,
            dest,
            accept,
            referer if dest == b"document" else None,  # row D15 reads it for document requests
            trusted,
            picked[_FORWARDED_HOST] if trusted else None,
            picked[_FORWARDED_PROTO] if trusted else None,
            path if self.memo.by_path else None,
        )

    def _remembered(self, scope: Scope, path: str, key: MemoKey, picked: list[bytes | None]) -> AuthState | None:
        """The memoised signed-in outcome, if it still holds and the route lets it through as it is."""
        runtime = self.runtime
        assert self.memo is not None and runtime.authenticator is not None
        state = self.memo.get(key)
        if state is None:
            return None
        if not runtime.authenticator.still_signed_in(state):
            self.memo.forget(key)
            return None
        claims = state.claims
        dest, accept = picked[_SEC_FETCH_DEST], picked[_ACCEPT]
        fetch = {
            "sec-fetch-dest": dest.decode("latin-1") if dest is not None else "",
            "accept": accept.decode("latin-1") if accept is not None else "",
        }
        if runtime.policy.decide(path, fetch, claims).verdict != "allow":
            return None  # refusals are rare: the whole decision builds them
        _note(record_of(scope), state)
        return state

    async def _decide(
        self, scope: Scope, raw_path: bytes, query: bytes, memo_key: MemoKey | None
    ) -> Refusal | AuthState:
        """The whole decision: the core's, then the route policy's."""
        runtime = self.runtime
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
        if memo_key is not None and self.memo is not None:
            self.memo.remember(memo_key, state)
        signed_in = state.status == "signed-in"
        _note(record_of(scope), state)
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
        failure = await runtime.proxy.forward_websocket(
            scope,
            receive,
            send,
            add_request_headers=runtime.identity.headers_for(state),
            remove_request_headers=runtime.identity.strip,
        )
        if failure is not None:  # the app could not be reached or refused the handshake: nothing was sent yet
            html_page = answers.wants_html(decode_headers(scope["headers"]))
            await answers.refuse_websocket(
                scope, send, failure.status, failure.code, failure.public_message, html_page=html_page
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

    async def send(self, send: Send, record: RequestRecord) -> None:
        headers = stamp(record, list(self.headers), self.status)
        if self.location is not None:
            await answers.redirect(send, self.location, headers, self.status)
            return
        await answers.error(
            send, self.status, self.code, self.message, html_page=self.html_page, headers=headers, extra=self.extra
        )


def _note(record: RequestRecord, state: AuthState) -> None:
    """What the access log and the metrics say of the decision."""
    record.decision = state.status
    record.reason = state.reason
    signed_in = state.status == "signed-in"
    record.user_id = state.claims.user_id if signed_in and state.claims is not None else None


_MEMO_KEY_LIMIT = 8 * 1024  # bytes of Cookie + Authorization + Referer + Accept a memo key may hold

# The headers the decision reads, picked out in the same pass (indexes into `_read_head`'s list).
_HOST, _COOKIE, _AUTHORIZATION, _SEC_FETCH_DEST, _ACCEPT, _REFERER, _FORWARDED_HOST, _FORWARDED_PROTO = range(8)
_PICKED = {
    b"host": _HOST,
    b"cookie": _COOKIE,
    b"authorization": _AUTHORIZATION,
    b"sec-fetch-dest": _SEC_FETCH_DEST,
    b"accept": _ACCEPT,
    b"referer": _REFERER,
    b"x-forwarded-host": _FORWARDED_HOST,
    b"x-forwarded-proto": _FORWARDED_PROTO,
}


def _read_head(
    raw: Iterable[tuple[bytes, bytes]], max_bytes: int, max_cookies: int
) -> tuple[Refusal | None, list[bytes | None], bool]:
    """Limits (431), request framing (400) and the headers the decision reads, in one pass:
    (a refusal or None, the picked values by index, whether the picks are unreliable: a picked header came
    more than once, or some name is not lower-case).

    A request whose body length is ambiguous (both `Content-Length` and `Transfer-Encoding`, two
    different lengths, a coding other than `chunked`) is a smuggling shape: whatever the server in
    front did with it, the app must not see it (RFC 9112 §6.3).
    """
    size = cookies = 0
    length: bytes | None = None
    chunked = conflicting = repeated = False
    picked: list[bytes | None] = [None] * 8
    for name, value in raw:
        size += len(name) + len(value) + 4
        if not name.islower():
            repeated = True  # not ASGI's lower case: only the whole decision's merging reads it right
        index = _PICKED.get(name)
        if index is not None:
            if picked[index] is not None:
                repeated = True
            picked[index] = value
            if index == _COOKIE:
                cookies += value.count(b";") + 1
        elif name == b"content-length":
            value = value.strip()
            conflicting = conflicting or chunked or not value.isdigit() or (length is not None and length != value)
            length = value
        elif name == b"transfer-encoding":
            conflicting = conflicting or chunked or length is not None or value.strip().lower() != b"chunked"
            chunked = True
    if size > max_bytes:
        return Refusal(431, "headers_too_large", "The request headers are too large."), picked, repeated
    if cookies > max_cookies:
        return Refusal(431, "too_many_cookies", "The request carries too many cookies."), picked, repeated
    if conflicting:
        return (  # and close: the bytes after this request cannot be trusted to start the next one
            Refusal(
                400, "ambiguous_framing", "The request's body length is ambiguous.", headers=[(b"connection", b"close")]
            ),
            picked,
            repeated,
        )
    return None, picked, repeated


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
