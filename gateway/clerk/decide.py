"""The decision table of `authenticateRequest` (PROTOCOL.md §3), top to bottom in Clerk's order.

`authenticate(...)` is a generator: it yields an ask (`FetchKeys`, `RefreshSession`,
`FetchHandshakePayload`, `VerifyMachineToken`) whenever it needs I/O and returns the final `AuthState`.
`acceptsToken` other than the default (machine tokens, lists, `any`) takes `_authenticate_accepting`.
`decide(...)` runs it with a callback for synchronous drivers (tests, `gateway explain`).

Given a `trace` list, the decision appends the id of every row it takes, in order (`D7`, `§3.1 handshake`,
…): what `gateway explain --trace` prints. Without one (the edge), nothing is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gateway.clerk.asks import (
    Answer,
    ApiResponse,
    Ask,
    FetchHandshakePayload,
    KeysAnswer,
    RefreshSession,
    VerifyMachineToken,
)
from gateway.clerk.claims import SessionClaims
from gateway.clerk.cookies import (
    js_number,
    js_parse_int,
    js_string_to_number,
    redirect_count_cookie,
    set_cookie_name,
    set_cookie_value,
)
from gateway.clerk.errors import BadRequestError, ClerkProtocolError, HandshakeVerificationError
from gateway.clerk.handshake import frontend_api_hostname, handshake_url
from gateway.clerk.jwk import KeySet
from gateway.clerk.machine import (
    MachineIdentity,
    MachineTokenError,
    identity_from_answer,
    is_jwt_format,
    verify_machine_jwt,
)
from gateway.clerk.options import ClerkOptions
from gateway.clerk.organizations import OrganizationTarget, organization_target
from gateway.clerk.redirects import redirect_location
from gateway.clerk.request import RequestView
from gateway.clerk.token_types import (
    AcceptsToken,
    MachineTokenType,
    has_non_session_category,
    header_token_type,
    is_accepted,
    machine_token_type,
)
from gateway.clerk.tokens import (
    TIME_REASONS,
    DecodedJwt,
    TokenVerificationError,
    check_header,
    check_signature,
    decode_jwt,
    is_js_number,
    is_non_session_token,
    try_decode,
)
from gateway.clerk.urls import InvalidUrl, append_param, edit_query, hostname_of, origin_of
from gateway.clerk.verify import (
    KeyRing,
    KeyTransportError,
    VerifiedToken,
    VerifiedTokenCache,
    resolve_key,
    verify_token,
)

Status = Literal["signed-in", "signed-out", "handshake"]
Carrier = Literal["header", "cookie"]
Flow = Generator[Ask, Answer, "AuthState"]

CROSS_ORIGIN_MESSAGE = "Cross-origin request from satellite domain requires handshake"
DEV_SKEW_RETRY_MS = 86_400_000
_DEV_ACCOUNT_PORTAL_SUFFIXES = (".lcl.dev", ".lclstage.dev", ".lclclerk.com")
_DEV_ACCOUNT_PORTAL_HOST_SUFFIXES = (".accounts.dev", ".accountsstage.dev", ".accounts.lclclerk.com")


@dataclass(frozen=True, slots=True)
class AuthState:
    """The outcome: status, Clerk's reason and message, the headers to answer with, and the identity."""

    status: Status
    reason: str = ""
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    token: str | None = None
    claims: SessionClaims | None = None
    carrier: Carrier | None = None
    machine: MachineIdentity | None = None  # signed in with a machine token (API key, M2M, OAuth)
    handshake_failure: str = field(default="", compare=False)
    """Why a handshake resolution failed (the request's own cookies then decided, row D1), came back
    empty, or needed the development clock-skew retry (§4.3): what Clerk only logs, kept for the edge's
    loop diagnosis. Not part of the state's equality."""

    @property
    def location(self) -> str | None:
        return self.header("location")

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def set_cookies(self) -> list[str]:
        return [value for key, value in self.headers if key.lower() == "set-cookie"]

    @property
    def is_signed_in(self) -> bool:
        return self.status == "signed-in"

    @property
    def token_type(self) -> str | None:
        """Clerk's `tokenType` of a signed-in state: the machine token's kind, else `session_token`."""
        if not self.is_signed_in:
            return None
        return self.machine.token_type if self.machine is not None else "session_token"


@dataclass(slots=True)
class _Context:
    """Per-request values Clerk's `authenticateContext` derives once (PROTOCOL.md §2)."""

    request: RequestView
    options: ClerkOptions
    ring: KeyRing
    now_ms: int
    cache: VerifiedTokenCache | None
    suffixed: bool
    session_cookie: str | None
    client_uat: int
    dev_browser: str | None
    refresh_cookie: str | None
    header_token: str | None
    redirect_count: float
    org_target: OrganizationTarget | None = field(default=None)
    trace: list[str] | None = field(default=None)

    def took(self, row: str, detail: str = "") -> None:
        """Record a row of the table (PROTOCOL.md §3) when tracing; `detail` is joined only then."""
        if self.trace is not None:
            self.trace.append(f"{row} {detail}" if detail else row)

    @property
    def is_production(self) -> bool:
        return self.options.is_production

    @property
    def session_token(self) -> str | None:
        return self.session_cookie or self.header_token


# ---------------------------------------------------------------------------------------------- #
# Entry points


def authenticate(
    request: RequestView,
    options: ClerkOptions,
    keys: KeySet,
    now: float,
    cache: VerifiedTokenCache | None = None,
    accepts: AcceptsToken | None = None,
    trace: list[str] | None = None,
) -> Flow:
    """Clerk's `authenticateRequest` for one request as of `now` (epoch seconds); `accepts` overrides
    `options.accepts_token` (PROTOCOL.md §10); `trace`: see the module."""
    context = _build_context(request, options, keys, now, cache)
    context.trace = trace
    accepts = options.accepts_token if accepts is None else accepts
    if accepts != "session_token":
        context.took("§10 acceptsToken")
        return (yield from _authenticate_accepting(context, accepts))
    if context.header_token is not None:
        context.took("B header token")
        return (yield from _authenticate_header(context))
    context.took("D cookies")
    return (yield from _authenticate_cookies(context))


def decide(
    request: RequestView,
    options: ClerkOptions,
    keys: KeySet,
    now: float,
    answer: Callable[[Ask], Answer],
    cache: VerifiedTokenCache | None = None,
    accepts: AcceptsToken | None = None,
    trace: list[str] | None = None,
) -> AuthState:
    """Drive `authenticate` synchronously, answering each ask with `answer`."""
    flow = authenticate(request, options, keys, now, cache, accepts, trace)
    reply: Answer | None = None
    try:
        ask = next(flow)
        while True:
            reply = answer(ask)
            ask = flow.send(reply)
    except StopIteration as finished:
        result: AuthState = finished.value
        return result


# ---------------------------------------------------------------------------------------------- #
# Context (PROTOCOL.md §2)


def _build_context(
    request: RequestView, options: ClerkOptions, keys: KeySet, now: float, cache: VerifiedTokenCache | None
) -> _Context:
    cookies = request.cookies
    now_ms = int(now * 1000)
    suffix = options.cookie_suffix
    suffixed = _uses_suffixed_cookies(request, options, now_ms, cache)

    def pick(name: str) -> str | None:
        value = cookies.get(f"{name}_{suffix}" if suffixed else name)
        return value or None

    query_db_jwt = request.query_param("__clerk_db_jwt")
    return _Context(
        request=request,
        options=options,
        ring=KeyRing(keys),
        now_ms=now_ms,
        cache=cache,
        suffixed=suffixed,
        session_cookie=pick("__session"),
        client_uat=js_parse_int(pick("__client_uat")),
        dev_browser=query_db_jwt or pick("__clerk_db_jwt"),
        refresh_cookie=cookies.get(f"__refresh_{suffix}") or None,
        header_token=_authorization_token(request.header("authorization")),
        redirect_count=js_number(cookies.get("__clerk_redirect_count")),
        org_target=organization_target(request.path, options.organization_sync),
    )


def _authorization_token(value: str | None) -> str | None:
    """`Bearer <t>` or a bare token; any other scheme means no header token (PROTOCOL.md §2.4)."""
    if not value:
        return None
    pieces = value.split(" ")
    scheme = pieces[0]
    token = pieces[1] if len(pieces) > 1 else ""
    if not token:
        return scheme or None
    return token if scheme == "Bearer" else None


def _decode_known(token: str | None, cache: VerifiedTokenCache | None) -> DecodedJwt | None:
    """Decode without verifying, reusing the verified-token cache's decoding when the token is known."""
    if token and cache is not None:
        entry = cache.get(token)
        if entry is not None:
            return entry.decoded
    return try_decode(token)


def _uses_suffixed_cookies(
    request: RequestView, options: ClerkOptions, now_ms: int, cache: VerifiedTokenCache | None
) -> bool:
    """PROTOCOL.md §2.2, rules 1-8 in order."""
    cookies = request.cookies
    suffix = options.cookie_suffix
    plain_session = cookies.get("__session") or None
    suffixed_session = cookies.get(f"__session_{suffix}") or None
    plain_uat = cookies.get("__client_uat") or None
    suffixed_uat = cookies.get(f"__client_uat_{suffix}") or None
    plain_decoded = _decode_known(plain_session, cache)
    if plain_session is not None:
        issuer = plain_decoded.payload.get("iss") if plain_decoded is not None else None
        if not issuer:
            return False
        if not isinstance(issuer, str) or _strip_scheme(issuer) != options.original_frontend_api:
            return True
    if suffixed_uat is None and suffixed_session is None:
        return False
    suffixed_decoded = _decode_known(suffixed_session, cache)
    if suffixed_uat != "0" and plain_uat != "0" and _iat(plain_decoded) > _iat(suffixed_decoded):
        return False
    if suffixed_uat == "0" and plain_uat != "0":
        return False
    if not options.is_production and suffixed_uat != "0" and plain_uat == "0" and suffixed_decoded is not None:
        exp = suffixed_decoded.payload.get("exp")
        if isinstance(exp, int | float) and is_js_number(exp) and exp <= now_ms // 1000:
            return False
    return not (suffixed_uat is None and suffixed_session is not None)


_SCHEMES = re.compile(r"https?://", re.IGNORECASE)


def _strip_scheme(issuer: str) -> str:
    r"""`iss.replace(/https?:\/\//gi, '')`."""
    return _SCHEMES.sub("", issuer)


def _iat(decoded: DecodedJwt | None) -> float:
    if decoded is None:
        return 0
    value = decoded.payload.get("iat")
    return float(value) if isinstance(value, int | float) and is_js_number(value) else 0.0


# ---------------------------------------------------------------------------------------------- #
# States


def _signed_in(
    verified: VerifiedToken,
    headers: tuple[tuple[str, str], ...] = (),
    carrier: Carrier | None = None,
) -> AuthState:
    return AuthState("signed-in", headers=headers, token=verified.decoded.raw, claims=verified.claims, carrier=carrier)


def signed_out(reason: str, message: str = "") -> AuthState:
    """A signed-out state for a reason the edge knows and Clerk's decision cannot (`session-revoked`)."""
    return _signed_out(reason, message)


def _signed_out(
    reason: str, message: str = "", headers: tuple[tuple[str, str], ...] = (), token: str | None = None
) -> AuthState:
    return AuthState(
        "signed-out", reason, message, (*headers, *_status_headers("signed-out", reason, message)), token=token
    )


def _status_headers(status: str, reason: str, message: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = [("x-clerk-auth-status", status)]
    if reason:
        headers.append(("x-clerk-auth-reason", reason))
    if message:
        headers.append(("x-clerk-auth-message", message))
    return tuple(headers)


def _maybe_handshake(context: _Context, reason: str, message: str = "", location: str | None = None) -> AuthState:
    """PROTOCOL.md §3.1: a handshake for navigations, signed-out for everything else or in a loop."""
    request = context.request
    if not request.is_handshake_eligible:
        context.took("§3.1 not a navigation: signed-out")
        return _signed_out(reason, message)
    if location is None:
        location = _handshake_location(context, reason)
    if context.redirect_count == 3:
        context.took("§3.1 loop guard (redirect count 3): signed-out")
        return _signed_out(reason, message)
    context.took("§3.1 handshake")
    headers = (
        ("location", location),
        ("cache-control", "no-store"),
        ("set-cookie", redirect_count_cookie(context.redirect_count + 1)),
    )
    return AuthState(
        "handshake",
        reason,
        message,
        (*headers, *_status_headers("handshake", reason, message)),
        token=context.session_token,
    )


def _handshake_location(context: _Context, reason: str) -> str:
    target = context.org_target
    return handshake_url(
        options=context.options,
        clerk_url=context.request.clerk_url,
        request_origin=context.request.clerk_origin,
        reason=reason,
        suffixed_cookies=context.suffixed,
        session_token=context.session_token,
        dev_browser_token=context.dev_browser,
        organization_id=target.handshake_value if target is not None else None,
    )


# ---------------------------------------------------------------------------------------------- #
# Header path (rows B1-B3)


def _authenticate_header(context: _Context) -> Flow:
    token = context.header_token
    assert token is not None
    try:
        decoded = decode_jwt(token)
    except TokenVerificationError as error:
        context.took("B3 undecodable")
        return (yield from _handle_token_error(context, error, "header"))
    if is_non_session_token(decoded):
        context.took("B1 not a session token")
        return _signed_out("token-type-mismatch")
    try:
        verified = yield from verify_token(token, context.options, context.ring, context.now_ms, context.cache, decoded)
    except (TokenVerificationError, KeyTransportError) as error:
        context.took("B3 verification failed")
        return (yield from _handle_token_error(context, error, "header"))
    context.took("B2 verified")
    # Row B2 does not parse claims: a token with malformed organization claims stays signed-in here
    # with `claims` None (Clerk's later `toAuth()` throws); the edge treats a missing identity as signed out.
    return _signed_in(verified, carrier="header")


# ---------------------------------------------------------------------------------------------- #
# Other `acceptsToken` values: machine tokens, lists, `any` (PROTOCOL.md §10)


def _authenticate_accepting(context: _Context, accepts: AcceptsToken) -> Flow:
    """`authenticateRequest` when `acceptsToken` is not the default: a list's kinds first (row A1), then
    the header token (`any` and lists take machine and session tokens, a machine kind only machine
    tokens), else the cookies (a machine kind alone: `No token in header`, row C1)."""
    token = context.header_token
    if isinstance(accepts, tuple) and not is_accepted(header_token_type(token), accepts):  # A1
        return _signed_out("token-type-mismatch")
    if token is not None:
        decoded = try_decode(token)
        token_type = machine_token_type(token, decoded)
        if token_type is None and (accepts == "any" or isinstance(accepts, tuple)):
            return (yield from _authenticate_any_session(context, token, decoded))
        if token_type is None or not is_accepted(token_type, accepts):
            return _signed_out("token-type-mismatch")
        return (yield from _verify_machine(context, token_type, token))
    if not isinstance(accepts, tuple) and accepts != "any":  # C1: machine tokens come in the header only
        return _signed_out("No token in header")
    return (yield from _authenticate_cookies(context))


def _authenticate_any_session(context: _Context, token: str, decoded: DecodedJwt | None) -> Flow:
    """A header token that is no machine token, on `any` or a list: a session token, unless its JOSE
    `cat` says otherwise (then `token-type-mismatch`)."""
    if decoded is not None and has_non_session_category(decoded):
        return _signed_out("token-type-mismatch")
    try:
        verified = yield from verify_token(token, context.options, context.ring, context.now_ms, context.cache, decoded)
    except (TokenVerificationError, KeyTransportError) as error:
        return (yield from _handle_token_error(context, error, "header"))
    return _signed_in(verified, carrier="header")


def _verify_machine(context: _Context, token_type: MachineTokenType, token: str) -> Flow:
    """`verifyMachineAuthToken`: a JWT-format token with the instance's keys, an opaque one by asking the
    Backend API. Machine tokens never cause a handshake."""
    options = context.options
    try:
        if is_jwt_format(token):
            identity = yield from _widen_machine(verify_machine_jwt(token, options, context.ring, context.now_ms))
        else:
            reply = yield VerifyMachineToken(token_type, token)
            assert isinstance(reply, ApiResponse)
            identity = identity_from_answer(token_type, reply, options.audience)
    except MachineTokenError as error:
        return _signed_out(error.reason, error.full_message())
    return AuthState("signed-in", token=token, carrier="header", machine=identity)


def _widen_machine(flow: Generator[Any, Any, MachineIdentity]) -> Generator[Ask, Answer, MachineIdentity]:
    return (yield from flow)


# ---------------------------------------------------------------------------------------------- #
# Cookie path (rows D1-D17)


def _authenticate_cookies(context: _Context) -> Flow:
    """Row D1 (a handshake coming back), then the request's own cookies."""
    request = context.request
    handshake_nonce = request.query_param("__clerk_handshake_nonce") or request.cookies.get("__clerk_handshake_nonce")
    handshake_token = request.query_param("__clerk_handshake") or request.cookies.get("__clerk_handshake")
    if handshake_nonce or handshake_token:  # D1
        context.took("D1 handshake resolution")
        try:
            return (yield from _resolve_handshake(context, handshake_nonce or None, handshake_token or None))
        except HandshakeVerificationError:
            raise
        except ClerkProtocolError as error:  # a failed resolution falls through to the request's own cookies
            cause = error.__cause__
            failure = cause.reason if isinstance(cause, TokenVerificationError) else error.reason
            context.took("D1 failed, the request's own cookies:", failure)
            state = yield from _authenticate_own_cookies(context)
            return replace(state, handshake_failure=failure)
    return (yield from _authenticate_own_cookies(context))


def _authenticate_own_cookies(context: _Context) -> Flow:
    """Rows D2-D17: the request's own cookies."""
    request = context.request
    options = context.options

    has_session = context.session_cookie is not None
    synced = request.query_param("__clerk_synced")
    needs_sync = synced == "false"
    sync_completed = synced == "true"
    has_cookies = has_session or context.client_uat != 0
    eligible_sync = options.is_satellite and request.is_document_get
    skip_sync = not options.satellite_auto_sync and not has_cookies and not needs_sync

    if eligible_sync and not sync_completed:  # D3 / D4
        row = "D3" if options.is_production else "D4"
        if skip_sync:
            context.took(row, "satellite, no cookies, no auto-sync")
            return _signed_out("session-token-and-uat-missing")
        if not has_cookies or needs_sync:
            context.took(row, "satellite needs syncing")
            if options.is_production:
                return _maybe_handshake(context, "satellite-needs-syncing")
            return _maybe_handshake(context, "satellite-needs-syncing", location=_satellite_sync_url(context))

    if not context.is_production and not options.is_satellite:  # D5
        redirect_back = request.query_param("__clerk_redirect_url")
        if redirect_back:
            context.took("D5 primary answers a sync")
            return _maybe_handshake(
                context, "primary-responds-to-syncing", location=_primary_sync_answer(context, redirect_back)
            )

    if not context.is_production:
        if request.has_query_param("__clerk_db_jwt"):  # D6
            context.took("D6 dev-browser token in the query")
            return _maybe_handshake(context, "dev-browser-sync")
        if not context.dev_browser:  # D7
            context.took("D7 no dev-browser token")
            return _maybe_handshake(context, "dev-browser-missing")

    token = context.session_cookie
    if context.client_uat == 0 and token is None:  # D8
        context.took("D8 no session, no client_uat")
        return _signed_out("session-token-and-uat-missing")
    if context.client_uat == 0:  # D9
        context.took("D9 session without client_uat")
        return _maybe_handshake(context, "session-token-but-no-client-uat")
    if token is None:  # D10
        context.took("D10 client_uat without session")
        return _maybe_handshake(context, "client-uat-but-no-session-token")

    try:  # D11
        decoded = _decode_known(token, context.cache) or decode_jwt(token)
    except TokenVerificationError as error:
        context.took("D11 not a JWT")
        return (yield from _handle_token_error(context, error, "cookie"))
    if is_non_session_token(decoded):  # D12
        context.took("D12 not a session token")
        return _signed_out("token-type-mismatch")
    if _issued_before_client_uat(decoded, context.client_uat):  # D13
        context.took("D13 token older than client_uat")
        return _maybe_handshake(context, "session-token-iat-before-client-uat")

    try:  # D14
        verified = yield from verify_token(token, options, context.ring, context.now_ms, context.cache, decoded)
    except (TokenVerificationError, KeyTransportError) as error:
        context.took("D14 verification failed")
        return (yield from _handle_token_error(context, error, "cookie"))

    if _is_cross_origin_navigation(context):  # D15
        context.took("D15 cross-origin navigation")
        return _maybe_handshake(context, "primary-domain-cross-origin-sync", CROSS_ORIGIN_MESSAGE)
    claims = verified.claims
    if claims is None:  # D15a
        context.took("D15a claims do not parse")
        return _signed_out("unexpected-error")
    target = context.org_target
    if (  # D16
        target is not None
        and claims.user_id is not None
        and not claims.is_pending
        and target.needs_switch(claims)
        and context.redirect_count < 3
        and request.is_handshake_eligible
    ):
        context.took("D16 organization switch")
        return _maybe_handshake(context, "active-organization-mismatch")
    context.took("D17 signed-in")
    return _signed_in(verified, carrier="cookie")  # D17


def _issued_before_client_uat(decoded: DecodedJwt, client_uat: int) -> bool:
    """`payload.iat < clientUat` with JavaScript's loose comparison (absent iat: no check)."""
    if "iat" not in decoded.payload:
        return False
    iat = _js_to_number(decoded.payload["iat"])
    return iat is not None and iat < client_uat


def _js_to_number(value: Any) -> float | None:
    """JavaScript's `ToNumber` for a JSON value; None stands for NaN (every comparison false)."""
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if is_js_number(value):
        return float(value)
    if isinstance(value, str):
        return js_string_to_number(value)
    return None


def _is_cross_origin_navigation(context: _Context) -> bool:
    """Row D15: a signed-in navigation arriving from another origin that is not Clerk's own."""
    request = context.request
    if context.options.is_satellite or not request.is_document_get or context.redirect_count != 0:
        return False
    referer = request.header("referer")
    if not referer:
        return False
    referer_origin = origin_of(referer)
    if referer_origin is None or referer_origin == request.clerk_origin:
        return False
    return not _is_known_clerk_referrer(context, referer, referer_origin)


def _is_known_clerk_referrer(context: _Context, referer: str, referer_origin: str) -> bool:
    options = context.options
    fapi_host = frontend_api_hostname(options, request_origin=context.request.clerk_origin)
    referer_host = hostname_of(referer) or ""
    if referer_host == fapi_host:
        return True
    if not options.is_production and not options.proxy_url and _is_dev_account_portal(referer_host):
        return True
    fapi = options.proxy_url or options.original_frontend_api
    if options.proxy_url and options.proxy_url.startswith("/"):
        fapi = context.request.clerk_origin + options.proxy_url
    expected = "https://" + fapi if not fapi.startswith("http") else fapi
    if "clerk.accountsstage." in expected:
        expected = expected.replace("clerk.accountsstage.", "accountsstage.", 1)
    elif "clerk.accounts." in expected:
        expected = expected.replace("clerk.accounts.", "accounts.", 1)
    elif "clerk." in expected:
        expected = expected.replace("clerk.", "accounts.", 1)
    return referer_origin == expected


def _is_dev_account_portal(host: str) -> bool:
    if host.startswith("accounts.") and host.endswith(_DEV_ACCOUNT_PORTAL_SUFFIXES):
        return True
    if host.endswith(_DEV_ACCOUNT_PORTAL_HOST_SUFFIXES):
        return (
            not host.endswith(".clerk.accounts.dev")
            and not host.endswith(".clerk.accountsstage.dev")
            and not host.endswith(".clerk.accounts.lclclerk.com")
        )
    return False


# ---------------------------------------------------------------------------------------------- #
# Satellite sync URLs (rows D4, D5)


def _satellite_sync_url(context: _Context) -> str:
    """Row D4: the primary's sign-in URL with `__clerk_redirect_url` back to this exact URL."""
    sign_in_url = context.options.sign_in_url or ""
    if sign_in_url.startswith("/"):
        sign_in_url = context.request.clerk_origin + sign_in_url
    try:
        return append_param(sign_in_url, "__clerk_redirect_url", context.request.clerk_url)
    except InvalidUrl as error:
        raise BadRequestError(f"The sign-in URL is not an absolute URL: {error}") from error


def _primary_sync_answer(context: _Context, redirect_back: str) -> str:
    """Row D5: send the browser back with our dev-browser token and `__clerk_synced=true`."""
    allowed = context.options.allowed_redirect_origins
    url = redirect_back
    if allowed is not None:
        # Absolute only, as Clerk's `new URL(redirectUrl)`; what we send is the URL as parsed.
        followed = redirect_location(redirect_back, context.request.clerk_origin, allowed, relative=False)
        if followed is None:
            asked = origin_of(redirect_back) or "that address"
            raise BadRequestError(
                f"__clerk_redirect_url ({asked}) is not an origin of this application, so the satellite's sync "
                f"cannot complete: list {asked} in this primary's GATEWAY_ALLOWED_REDIRECT_ORIGINS."
            )
        url = followed
    try:
        if context.dev_browser:
            url = append_param(url, "__clerk_db_jwt", context.dev_browser)
        return edit_query(url, edit=(("__clerk_synced", "true"),))
    except InvalidUrl as error:
        raise BadRequestError(f"__clerk_redirect_url is not an absolute URL: {error}") from error


# ---------------------------------------------------------------------------------------------- #
# Token errors and refresh (PROTOCOL.md §3.3, §6)


def _handle_token_error(context: _Context, error: ClerkProtocolError, carrier: Carrier) -> Flow:
    if not isinstance(error, TokenVerificationError):
        context.took("§3.3 not a verification error: unexpected-error")
        return _signed_out("unexpected-error")
    context.took("§3.3", error.reason)
    request = context.request
    refresh_error: str | None = None
    if error.reason == "token-expired":
        if request.method != "GET" and not context.options.refresh_any_method:
            refresh_error = "non-eligible-non-get"
        elif context.refresh_cookie is None:
            refresh_error = "non-eligible-no-refresh-cookie"
        else:
            context.took("§6 refresh")
            outcome = yield from _refresh(context)
            if isinstance(outcome, AuthState):
                context.took("§6 refreshed: signed-in")
                return outcome
            context.took("§6 refresh failed:", outcome)
            refresh_error = outcome
    message = error.full_message(carrier)
    if error.reason in TIME_REASONS:
        reason = {
            "token-expired": f"session-token-expired-refresh-{refresh_error}",
            "token-not-active-yet": "session-token-nbf",
            "token-iat-in-the-future": "session-token-iat-in-the-future",
        }[error.reason]
        return _maybe_handshake(context, reason, message)
    return _signed_out(error.reason, message)


def _refresh(context: _Context) -> Generator[Ask, Answer, AuthState | str]:
    """Exchange the expired token for a fresh one; returns the signed-in state or the refresh error."""
    options = context.options
    if not options.secret_key:
        return "missing-api-client"
    expired_token = context.session_token
    if not expired_token:
        return "missing-session-token"
    if not context.refresh_cookie:
        return "missing-refresh-token"
    decoded = try_decode(expired_token)
    if decoded is None:
        return "expired-session-token-decode-failed"
    session_id = decoded.payload.get("sid")
    if not session_id:
        return "expired-session-token-missing-sid-claim"
    request = context.request
    reply = yield RefreshSession(
        session_id=str(session_id),
        expired_token=expired_token,
        refresh_token=context.refresh_cookie,
        request_origin=request.clerk_origin,
        request_headers={name: [value] for name, value in request.headers.items()},
        suffixed_cookies=context.suffixed,
    )
    assert isinstance(reply, ApiResponse)
    failure = _refresh_failure(reply)
    if failure is not None:
        return failure
    cookies = [c for c in reply.body["cookies"] if isinstance(c, str)]
    new_token = _last_session_value(cookies)
    if not new_token:
        return "unexpected-sdk-error"
    try:
        verified = yield from _verify_asking(context, new_token)
    except (TokenVerificationError, KeyTransportError):
        return "invalid-session-token"
    headers = tuple(("set-cookie", cookie) for cookie in cookies)
    return AuthState("signed-in", headers=headers, token=new_token, claims=verified.claims, carrier="cookie")


def _refresh_failure(reply: ApiResponse) -> str | None:
    if reply.status is None:
        return "fetch-error"
    if not 200 <= reply.status < 300:
        errors = reply.body.get("errors") if isinstance(reply.body, dict) else None
        if isinstance(errors, list) and errors:
            first = errors[0]
            code = first.get("code") if isinstance(first, dict) else None
            if code == "unexpected_error":
                return "fetch-error"
            if isinstance(code, str) and code:
                return code
        return "unexpected-bapi-error"
    cookies = reply.body.get("cookies") if isinstance(reply.body, dict) else None
    if not isinstance(cookies, list) or not cookies:
        return "unexpected-sdk-error"
    return None


def _last_session_value(directives: list[str]) -> str | None:
    token: str | None = None
    for directive in directives:
        if set_cookie_name(directive).startswith("__session"):
            token = set_cookie_value(directive)
    return token


def _verify_asking(context: _Context, token: str, skew_ms: int | None = None) -> Generator[Ask, Answer, VerifiedToken]:
    flow = verify_token(token, context.options, context.ring, context.now_ms, context.cache, clock_skew_ms=skew_ms)
    return (yield from _widen(flow))


def _widen(flow: Generator[Any, Any, VerifiedToken]) -> Generator[Ask, Answer, VerifiedToken]:
    return (yield from flow)


# ---------------------------------------------------------------------------------------------- #
# Handshake resolution (row D1, PROTOCOL.md §4.3)


def _resolve_handshake(context: _Context, nonce: str | None, token: str | None) -> Flow:
    options = context.options
    headers: list[tuple[str, str]] = [
        ("access-control-allow-origin", "null"),
        ("access-control-allow-credentials", "true"),
    ]
    directives: list[str]
    failure = ""
    if nonce:
        reply = yield FetchHandshakePayload(nonce)
        directives = _payload_directives(reply)
        if not directives:
            failure = "handshake-nonce-failed"  # Clerk logs it: the Backend API gave nothing for the nonce
    else:
        assert token is not None
        directives = yield from _verify_handshake_token(context, token)
    headers.extend(("set-cookie", directive) for directive in directives)
    session_token = _last_session_value(directives)
    if not options.is_production:
        clean = edit_query(
            context.request.clerk_url,
            remove=("__clerk_handshake", "__clerk_help", "__clerk_db_jwt", "__clerk_handshake_nonce"),
        )
        headers.extend((("location", clean), ("cache-control", "no-store")))
    if not session_token:
        context.took("§4.3 no session token: signed-out")
        return replace(_signed_out("session-token-missing", headers=tuple(headers)), handshake_failure=failure)
    try:
        verified = yield from _verify_asking(context, session_token)
    except TokenVerificationError as error:
        if options.is_production or error.reason not in TIME_REASONS:
            raise ClerkProtocolError(f"Handshake session token failed: {error.message}") from error
        failure = error.reason  # Clerk logs "Clock skew detected" and retries with a day of tolerance
        context.took("§4.3 clock skew, retried:", failure)
        try:
            verified = yield from _verify_asking(context, session_token, skew_ms=DEV_SKEW_RETRY_MS)
        except TokenVerificationError as retry_error:
            raise ClerkProtocolError(f"Handshake session token failed: {retry_error.message}") from retry_error
    except KeyTransportError as error:
        raise ClerkProtocolError(f"Handshake session token failed: {error.message}") from error
    context.took("§4.3 signed-in")
    return AuthState(
        "signed-in",
        headers=tuple(headers),
        token=session_token,
        claims=verified.claims,
        carrier="cookie",
        handshake_failure=failure,
    )


def _payload_directives(reply: Answer) -> list[str]:
    if not isinstance(reply, ApiResponse) or reply.status is None or not 200 <= reply.status < 300:
        return []
    body = reply.body
    directives = body.get("directives") if isinstance(body, dict) else None
    if not isinstance(directives, list):
        return []
    return [item for item in directives if isinstance(item, str)]


def _verify_handshake_token(context: _Context, token: str) -> Generator[Ask, Answer, list[str]]:
    """Decode, key, `typ`, `alg`, `cat`, signature; no time checks. Fatal in development."""
    try:
        decoded = decode_jwt(token)
        key = yield from _widen_key(resolve_key(decoded, context.options, context.ring))
        algorithm = check_header(decoded)
        if "cat" in decoded.header and decoded.header["cat"] not in ("cl_B7d4PD111AAA", "cl_I7d4PD111III"):
            raise TokenVerificationError("token-invalid", "Invalid handshake token category.")
        check_signature(decoded, key, algorithm)
    except TokenVerificationError as error:
        if context.is_production:
            raise
        if error.reason == "token-invalid-signature":
            raise HandshakeVerificationError(
                "Clerk: Handshake token verification failed due to an invalid signature. If you have switched "
                "Clerk keys locally, clear your cookies and try again."
            ) from error
        raise HandshakeVerificationError(
            f"Clerk: Handshake token verification failed: {error.full_message(None)}."
        ) from error
    except KeyTransportError:
        raise
    directives = decoded.payload.get("handshake")
    if not isinstance(directives, list):
        return []
    return [item for item in directives if isinstance(item, str)]


def _widen_key(flow: Generator[Any, KeysAnswer, Any]) -> Generator[Ask, Answer, Any]:
    return (yield from flow)
