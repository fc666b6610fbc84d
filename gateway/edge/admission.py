"""The one admission pipeline every entrance uses: proxied requests, forward-auth, WebSocket upgrades
and the Frontend API proxy.

    limits → canonical path → Host allow-list → the app (`gateway.edge.app_choice`) → the request view
    → the Clerk decision → the app's route policy → one outcome (`gateway.edge.outcomes`)

An entrance turns what it received into an `Incoming` (the request as the app will receive it: for
forward-auth, the original request a trusted proxy describes) and renders the outcome in its own
format; it adds no rule of its own. `screen` runs the steps before the decision (the Frontend API
proxy needs no more); `admit` runs them all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.clerk.decide import AuthState
from gateway.clerk.decision_inputs import decision_key
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.redirects import sign_in_url
from gateway.clerk.request import RequestView
from gateway.clerk_api.authenticator import Authenticator
from gateway.edge.app_choice import AppChooser
from gateway.edge.apps import App
from gateway.edge.instance import ClerkInstance
from gateway.edge.loops import Loop, log_loop
from gateway.edge.machine_rules import route_accepts
from gateway.edge.navigation import is_navigation
from gateway.edge.outcomes import Deny, Outcome, outcome_for
from gateway.edge.paths import AmbiguousPath, CanonicalPath, canonical_path
from gateway.edge.session_memo import SessionMemo
from gateway.forwarded import FORWARDING_HEADER_PREFIX, FORWARDING_HEADERS, ForwardedPolicy
from gateway.revocation import REVOKED, DenyList, is_revoked
from gateway.settings import Settings

logger = logging.getLogger("gateway")

_CLOSE = (b"connection", b"close")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as an entrance received it. `headers` are the raw header pairs (lower-case names);
    `trusted_peer`: the socket peer is a trusted proxy, so its forwarding headers are believed."""

    method: str
    raw_path: bytes
    query: bytes
    headers: Sequence[tuple[bytes, bytes]]
    scheme: str
    server_host: str
    trusted_peer: bool

    @classmethod
    def from_scope(cls, scope: dict[str, Any], forwarded: ForwardedPolicy, *, method: str | None = None) -> Incoming:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        client = scope.get("client")
        return cls(
            method=method or str(scope.get("method", "GET")),
            raw_path=raw_path.split(b"?", 1)[0],
            query=scope.get("query_string", b""),
            headers=scope["headers"],
            scheme="https" if scope.get("scheme") in ("https", "wss") else "http",
            server_host=server_host(scope),
            trusted_peer=client is not None and forwarded.is_trusted(str(client[0])),
        )


@dataclass(frozen=True, slots=True)
class Screened:
    """What the steps before the decision made of a request: its canonical path, the believed headers
    (merged under lower-case names), the public host, whether it is a navigation, the app it is for
    (None: no app takes it) and the path that app receives (`path` itself unless it strips a prefix)."""

    incoming: Incoming
    path: CanonicalPath
    headers: dict[str, str]
    host: str
    navigation: bool
    app: App | None
    app_path: CanonicalPath

    def view(self) -> RequestView:
        """What Clerk's decision reads: Clerk computes its URL from the raw path and query, as sent."""
        incoming = self.incoming
        target = incoming.raw_path.decode("latin-1")
        if incoming.query:
            target += "?" + incoming.query.decode("latin-1")
        host = self.headers.get("host") or incoming.server_host
        return RequestView.from_merged(incoming.method, f"{incoming.scheme}://{host}{target}", self.headers)


class Admission:
    """The pipeline, built once per worker from the settings and the runtime's collaborators."""

    def __init__(
        self,
        settings: Settings,
        authenticator: Authenticator,
        apps: AppChooser[App],
        forwarded: ForwardedPolicy,
        *,
        keys_available: Callable[[], bool],
        deny_list: DenyList | None = None,
    ) -> None:
        gateway = settings.gateway
        self.settings = settings
        self.authenticator = authenticator
        self.apps = apps
        self.forwarded = forwarded
        self.deny_list = deny_list if deny_list is not None else DenyList()
        """Sessions and users Clerk revoked (webhooks): their signed-in states become `session-revoked`."""
        self._max_url = gateway.max_url_length
        self._max_header_bytes = gateway.max_header_bytes
        self._max_cookies = gateway.max_cookies
        self._hosts = HostAllowList(gateway.allowed_hosts)
        self.instance = ClerkInstance(
            settings.clerk, authenticator, explain_loops=gateway.explain_loops, keys_available=keys_available
        )
        """The `[clerk]` instance: every app's that names none of its own."""
        self.memo: SessionMemo | None = SessionMemo(gateway.token_cache_size)
        """None: every request decided afresh (the memo's equivalence tests compare both)."""

    # ------------------------------------------------------------------------------ before the decision

    def screen(self, incoming: Incoming) -> Screened | Deny:
        """Limits, the canonical path and the `Host` allow-list (and a `Host` that names one host)."""
        if len(incoming.raw_path) + len(incoming.query) + 1 > self._max_url:
            return Deny(414, "uri_too_long", "The request URL is too long.")
        refusal, headers = self._read_head(incoming)
        if refusal is not None:
            return refusal
        navigation = is_navigation(headers)
        try:
            path = canonical_path(incoming.raw_path)
        except AmbiguousPath as error:
            return Deny(400, error.code, error.message, navigation)
        host = _public_host(headers, incoming.server_host)
        if not self._hosts.allows(host):
            return Deny(421, "host_not_allowed", "This host is not served here.", navigation)
        host_header = headers.get("host")  # two `Host` lines are merged into a list, which is not a host
        if (host_header and not is_host(host_header)) or (host != incoming.server_host and not is_host(host)):
            return Deny(400, "bad_host", "The request's host is not a host name.", navigation)
        chosen = self.apps.choose(host, _public_scheme(headers, incoming.scheme), path)
        if chosen is None:
            return Screened(incoming, path, headers, host, navigation, None, path)
        return Screened(incoming, path, headers, host, navigation, chosen.app, chosen.path)

    def view_of(self, scope: dict[str, Any]) -> RequestView | Deny:
        """For the gateway's own endpoints: the request screened as any other, then Clerk's view of it."""
        screened = self.screen(Incoming.from_scope(scope, self.forwarded))
        if isinstance(screened, Deny):
            return screened
        try:
            return screened.view()
        except ClerkProtocolError as error:  # as the gate answers it: a 400, never a 500
            return Deny(400, error.reason, error.message, screened.navigation)

    def _read_head(self, incoming: Incoming) -> tuple[Deny | None, dict[str, str]]:
        """Limits (431), request framing (400) and the believed headers, merged, in one pass.

        A request whose body length is ambiguous (both `Content-Length` and `Transfer-Encoding`, two
        different lengths, a coding other than `chunked`) is a smuggling shape: whatever the server in
        front did with it, the app must not see it (RFC 9112 §6.3). Forwarding headers from a peer that
        is not a trusted proxy are not believed (PROTOCOL.md §2.4), so they are left out.
        """
        size = cookies = 0
        length: bytes | None = None
        chunked = conflicting = False
        trusted = incoming.trusted_peer
        merged: dict[str, str] = {}
        for raw_name, raw_value in incoming.headers:
            size += len(raw_name) + len(raw_value) + 4
            if not raw_name.islower():  # ASGI servers lower-case names; anything else is read the same way
                raw_name = raw_name.lower()
            if raw_name == b"content-length":
                value = raw_value.strip()
                conflicting = conflicting or chunked or not value.isdigit() or (length is not None and length != value)
                length = value
            elif raw_name == b"transfer-encoding":
                conflicting = conflicting or chunked or length is not None or raw_value.strip().lower() != b"chunked"
                chunked = True
            elif not trusted and (raw_name.startswith(FORWARDING_HEADER_PREFIX) or raw_name in FORWARDING_HEADERS):
                continue
            elif raw_name == b"cookie":
                cookies += raw_value.count(b";") + 1
            name = raw_name.decode("latin-1")
            value_text = raw_value.decode("latin-1")
            previous = merged.get(name)
            merged[name] = (
                value_text if previous is None else previous + ("; " if name == "cookie" else ", ") + value_text
            )
        if size > self._max_header_bytes:
            return Deny(431, "headers_too_large", "The request headers are too large."), merged
        if cookies > self._max_cookies:
            return Deny(431, "too_many_cookies", "The request carries too many cookies."), merged
        if conflicting:  # and close: the bytes after this request cannot be trusted to start the next one
            return Deny(400, "ambiguous_framing", "The request's body length is ambiguous.", headers=[_CLOSE]), merged
        return None, merged

    # --------------------------------------------------------------------------------- the whole pipeline

    async def admit(self, incoming: Incoming) -> tuple[Screened | None, Outcome]:
        """Every step; the screened request (None when refused before the decision) and the outcome."""
        screened = self.screen(incoming)
        if isinstance(screened, Deny):
            return None, screened
        return screened, await self.decide(screened)

    async def decide(self, screened: Screened) -> Outcome:
        """The Clerk decision (or a remembered one), the app's route policy, the outcome table."""
        incoming, headers, app = screened.incoming, screened.headers, screened.app
        if app is None:
            return Deny(404, "no_app", "No app is served at this address.", screened.navigation)
        instance = app.instance or self.instance
        accepts = route_accepts(app.policy.rules_for(screened.app_path.readings, incoming.method)[0])
        if accepts is None:
            accepts = app.accepts_token
        key = None
        if self.memo is not None:
            key = decision_key(
                incoming.method,
                incoming.scheme,
                incoming.server_host,
                headers,
                screened.path.judged,
                incoming.query.decode("latin-1"),
                by_path=instance.by_path,
                accepts=accepts,
            )
            if key is not None:
                key = app.memo_prefix + key
                remembered = self._remembered(key, screened, instance)
                if remembered is not None:
                    return remembered
        view: RequestView | None = None
        try:
            view = screened.view()
            state = await instance.authenticator.authenticate(view, accepts=accepts)
        except ClerkProtocolError as error:
            if view is not None:
                logger.warning("authentication failed: %s", error.message)
            return Deny(400, error.reason, error.message, screened.navigation)
        if self.deny_list.active and is_revoked(self.deny_list, state):  # after the verified-token cache too
            state = REVOKED
        if key is not None and self.memo is not None:
            self.memo.remember(key, state)
        return self._outcome(screened, view, state, instance)

    def _remembered(self, key: bytes, screened: Screened, instance: ClerkInstance) -> Outcome | None:
        """The memoised signed-in outcome, if it still holds and the route lets it through as it is.

        Only the decision's state is remembered (its key covers the method, so another method is
        another entry); the policy runs again on this request's method and headers each time, so a
        rule by method, a CORS preflight or a claims condition is never answered from another request."""
        assert self.memo is not None
        state = self.memo.get(key)
        if state is None:
            return None
        if not instance.authenticator.still_signed_in(state) or (
            self.deny_list.active and is_revoked(self.deny_list, state)
        ):
            self.memo.forget(key)
            return None
        outcome = self._outcome(screened, None, state, instance)
        return outcome if outcome.row == "allowed" else None  # refusals are rare: the whole decision builds them

    def _outcome(
        self, screened: Screened, view: RequestView | None, state: AuthState, instance: ClerkInstance
    ) -> Outcome:
        incoming = screened.incoming
        decision = None
        location = state.location if state.headers else None
        if location is None or state.status == "signed-out":  # signed-out with a Location: a resolution
            signed_in = state.status == "signed-in"
            claims = state.claims if signed_in else None
            machine = state.machine if signed_in else None
            assert screened.app is not None
            decision = screened.app.policy.decide(
                screened.app_path.readings, screened.headers, claims, incoming.method, machine=machine
            )

        def sign_in_location() -> str:
            known = view if view is not None else screened.view()
            clerk = instance.options
            pending = state.status == "signed-in" and state.claims is not None and state.claims.is_pending
            dev_browser = known.dev_browser_token(clerk.cookie_suffix)
            back = location or known.clerk_url  # a resolution's clean URL, without the handshake's parameters
            return sign_in_url(clerk, back, known.clerk_origin, dev_browser, pending=pending)

        def loop_check(state: AuthState, kind: str) -> tuple[Loop | None, tuple[bytes, bytes]]:
            known = view if view is not None else screened.view()
            secure = known.clerk_url.startswith("https:")
            loop, cookie = instance.loops.check(known, state, kind, instance.authenticator.clock(), secure=secure)
            if loop is not None:
                log_loop(loop, state.reason, screened.path.judged)
            return loop, cookie

        return outcome_for(
            state,
            decision,
            navigation=screened.navigation,
            redirectable=incoming.method in ("GET", "HEAD") and screened.navigation,
            keys_available=instance.keys_available(),
            carries_token=(view if view is not None else screened.view()).carries_session_token
            if decision is not None and decision.verdict == "sign-in"
            else False,
            sign_in_location=sign_in_location,
            loop_check=loop_check if screened.navigation and incoming.method in ("GET", "HEAD") else None,
            explain_loops=instance.explain_loops,
            return_path=screened.path.judged,
        )


class HostAllowList:
    """`Host` values served (`host` or `host:port`, `*.example.com` for sub-domains); empty: any."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self._exact = frozenset(host.lower() for host in allowed if not host.startswith("*."))
        self._suffixes = tuple(host.lower()[1:] for host in allowed if host.startswith("*."))
        self.open = not allowed

    def allows(self, host: str) -> bool:
        """`host` is served: allowed by name, and one `host[:port]` (never a suffix match of something else)."""
        if self.open:
            return True
        if not is_host(host):
            return False
        host = host.lower()
        if host in self._exact:
            return True
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
        return any(name.endswith(suffix) for suffix in self._suffixes)


# `host[:port]` (RFC 9110 §7.2): a registered name or an IP literal in brackets, a port of digits. Anything
# else (userinfo, `/`, `?`, `#`, a list from a repeated `Host`, spaces) is not a host, whatever an
# allow-list suffix it ends with: apps and the gateway would each read another host out of it.
_HOST = re.compile(r"(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")


def is_host(value: str) -> bool:
    """A `Host` (or `X-Forwarded-Host` item) that names one host and port, nothing else."""
    match = _HOST.fullmatch(value)
    return match is not None and (match.group(1) is None or int(match.group(1)) <= 65535)


def _public_scheme(headers: dict[str, str], scheme: str) -> str:
    """The scheme the client used (a believed `X-Forwarded-Proto`), for the host's default port."""
    forwarded = headers.get("x-forwarded-proto")
    if forwarded:
        first = forwarded.split(",", 1)[0].strip().lower()
        if first in ("http", "https"):
            return first
    return scheme


def _public_host(headers: dict[str, str], server: str) -> str:
    forwarded = headers.get("x-forwarded-host")
    if forwarded:
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return first
    return headers.get("host") or server


def server_host(scope: dict[str, Any]) -> str:
    server = scope.get("server")
    if not server:
        return "localhost"
    host, port = server[0], server[1]
    return f"{host}:{port}" if port not in (80, 443, None) else str(host)
