"""`/__gateway/sign-out`: end the session, clear Clerk's cookies, go back to the app.

A cross-site page must not be able to sign people out, so a POST is accepted when either

* its `Origin` (or, without one, its `Referer`) is this app or an allowed origin, or
* it carries a `csrf` token from our own confirmation page (`GET /__gateway/sign-out`).

The token is an itsdangerous `URLSafeTimedSerializer` value: signed with a key derived from the
Clerk secret key (HKDF, so no new setting), salted with its purpose, valid for ten minutes, and
bound to the Clerk session id, or, signed out, to a random value kept in our own cookie
(`__gateway_sign_out`, this path only). itsdangerous signs the gateway's own state only, never
Clerk's tokens. Where the sign-out sends the browser comes from `redirect_location` (the one gate for
client-chosen redirects); anything it refuses goes to `/`.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import secrets
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from litestar import Request, route
from litestar.response.base import ASGIResponse

from gateway.clerk.cookies import signed_out_cookies
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.redirects import is_allowed_source, redirect_location
from gateway.clerk.request import RequestView
from gateway.edge.http_errors import HTML, html_page
from gateway.edge.loops import COOKIE as LOOP_COOKIE
from gateway.edge.loops import clear_cookie
from gateway.edge.outcomes import Deny
from gateway.edge.runtime import EdgeRuntime
from gateway.revocation import Revocation

logger = logging.getLogger("gateway")

PATH = "/__gateway/sign-out"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 600  # seconds: the confirmation page is meant to be used right away
CSRF_SALT = "session-gateway sign-out csrf"
HKDF_INFO = b"session-gateway sign-out csrf"
BROWSER_COOKIE = "__gateway_sign_out"
SECURE_BROWSER_COOKIE = "__Host-gateway_sign_out"
"""Over https the browser's value lives in a `__Host-` cookie (Secure, `Path=/`, no `Domain`): a sibling
sub-domain cannot set it, so it cannot fix the value a signed-out browser's token is bound to."""
PAGE_HEADERS = [
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
]


@route(PATH, http_method=["GET", "POST"], include_in_schema=False)
async def sign_out(request: Request[Any, Any, Any]) -> ASGIResponse:
    """GET: a page asking to confirm, whose form POSTs back with a token. POST: sign out."""
    runtime: EdgeRuntime = request.app.state.runtime
    view = _view(runtime, request)
    if isinstance(view, Deny):
        return _json(view.status, {"error": view.code, "message": view.message}, [])
    session_id, user_id = await _session_of(runtime, view)
    if request.method == "GET":
        return _confirmation_page(runtime, view, session_id, request.query_params.get("redirect_url"))
    allowed = runtime.settings.gateway.allowed_redirect_origins
    body = await request.body()
    form = dict(parse_qsl(body.decode("utf-8", errors="replace")))
    source = view.header("origin") or view.header("referer") or ""
    if not is_allowed_source(source, view.clerk_origin, allowed) and not _token_is_valid(
        runtime, form.get(CSRF_FIELD, ""), _bindings(session_id, _browser_value(view))
    ):
        return _json(403, {"error": "origin_not_allowed", "message": "Sign-out must come from this site."}, [])
    requested = form.get("redirect_url") or request.query_params.get("redirect_url")
    target = (redirect_location(requested, view.clerk_origin, allowed) if requested else None) or "/"
    authenticator = runtime.authenticator
    if session_id and authenticator.backend:
        await authenticator.backend.revoke_session(session_id)
    if session_id:  # refused here at once (every replica), not only once Clerk's webhook or the token's expiry comes
        await _revoke_here(runtime, session_id)
    if user_id and runtime.identity_lookups is not None:  # the next sign-in sees the user as they are now
        runtime.identity_lookups.forget_user(user_id)
    secure = view.clerk_url.startswith("https")
    suffix = runtime.settings.clerk.cookie_suffix
    cookies = signed_out_cookies(suffix, secure)
    if f"__client_uat_{suffix}" not in view.cookies:
        # Writing the suffixed family would make Clerk read that family from now on (PROTOCOL.md §2.2,
        # rule 8), where this browser has no dev-browser token: one more handshake on the next visit.
        cookies = [cookie for cookie in cookies if not cookie.startswith(f"__client_uat_{suffix}=")]
    if _browser_cookie_name(secure) in view.cookies:
        cookies.append(_browser_cookie("", secure, 0))
    if LOOP_COOKIE in view.cookies:  # a sign-in redirect right after signing out is no loop
        cookies.append(clear_cookie(secure)[1].decode("ascii"))
    return _json(303, None, [("location", target), *(("set-cookie", cookie) for cookie in cookies)])


# ---------------------------------------------------------------------------------------------- #
# The CSRF token


def csrf_serializer(secret_key: str | None, clock: Any = None) -> URLSafeTimedSerializer:
    """The token's serializer; `clock` (seconds, like `time.time`) decides "now" for signing and ages."""
    return _serializer(_signing_key(secret_key), clock)


def issue_token(runtime: EdgeRuntime, binding: str) -> str:
    token: str = csrf_serializer(runtime.settings.clerk.secret_key, runtime.clock).dumps(binding)
    return token


def _token_is_valid(runtime: EdgeRuntime, token: str, bindings: set[str]) -> bool:
    if not token or not bindings:
        return False
    try:
        bound = csrf_serializer(runtime.settings.clerk.secret_key, runtime.clock).loads(token, max_age=CSRF_MAX_AGE)
    except BadData:
        return False
    return isinstance(bound, str) and bound in bindings


def _bindings(session_id: str | None, browser_value: str | None) -> set[str]:
    """What a token presented by this browser may be bound to: its session, its own random value."""
    found = set()
    if session_id:
        found.add(f"session:{session_id}")
    if browser_value:
        found.add(f"browser:{browser_value}")
    return found


_PROCESS_KEY = secrets.token_bytes(32)
_BROWSER_VALUE = re.compile(r"[A-Za-z0-9_-]{32,64}")


@lru_cache(maxsize=8)
def _signing_key(secret_key: str | None) -> bytes:
    """HKDF-SHA256 of the Clerk secret key; without one (networkless mode), a key of this process only."""
    if not secret_key:
        return _PROCESS_KEY
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key.encode())


@lru_cache(maxsize=8)
def _serializer(key: bytes, clock: Any) -> URLSafeTimedSerializer:
    signer: type[TimestampSigner] = TimestampSigner
    if clock is not None:

        class ClockedSigner(TimestampSigner):
            # Where itsdangerous reads "now": when signing and when checking `max_age`.
            def get_timestamp(self) -> int:
                return int(clock())

        signer = ClockedSigner
    return URLSafeTimedSerializer(key, salt=CSRF_SALT, signer=signer, signer_kwargs={"digest_method": hashlib.sha256})


# ---------------------------------------------------------------------------------------------- #
# The confirmation page


def _confirmation_page(
    runtime: EdgeRuntime, view: RequestView, session_id: str | None, redirect_url: str | None
) -> ASGIResponse:
    secure = view.clerk_url.startswith("https")
    headers = [*PAGE_HEADERS]
    browser_value = _browser_value(view)
    if session_id:
        binding = f"session:{session_id}"
    else:
        if not browser_value:
            browser_value = secrets.token_urlsafe(24)
        headers.append(("set-cookie", _browser_cookie(browser_value, secure, CSRF_MAX_AGE)))
        binding = f"browser:{browser_value}"
    fields = [(CSRF_FIELD, issue_token(runtime, binding))]
    if redirect_url:
        fields.append(("redirect_url", redirect_url))  # checked again when the form comes back
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value, quote=True)}">' for name, value in fields
    )
    body = (
        "<p>Sign out of this site?</p>"
        f'<form method="post" action="{PATH}">{hidden}<button type="submit" id="sign-out">Sign out</button></form>'
        '<p><a href="/">Back to the start page</a></p>'
    )
    page = html_page("Sign out", body)
    return ASGIResponse(
        body=page, status_code=200, media_type=HTML.decode(), headers=[*headers, ("cache-control", "no-store")]
    )


def _browser_cookie_name(secure: bool) -> str:
    return SECURE_BROWSER_COOKIE if secure else BROWSER_COOKIE


def _browser_value(view: RequestView) -> str | None:
    value = view.cookies.get(_browser_cookie_name(view.clerk_url.startswith("https")))
    return value if value and _BROWSER_VALUE.fullmatch(value) else None


def _browser_cookie(value: str, secure: bool, max_age: int) -> str:
    if secure:  # the `__Host-` prefix asks for exactly this: Secure, Path=/, no Domain
        return f"{SECURE_BROWSER_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax; Secure"
    return f"{BROWSER_COOKIE}={value}; Max-Age={max_age}; Path={PATH}; HttpOnly; SameSite=Lax"


# ---------------------------------------------------------------------------------------------- #
# Request plumbing


def _view(runtime: EdgeRuntime, request: Request[Any, Any, Any]) -> RequestView | Deny:
    scope: Any = request.scope
    return runtime.admission.view_of(scope)


async def _revoke_here(runtime: EdgeRuntime, session_id: str) -> None:
    """The signed-out session into the deny list, through the feed; a feed that fails never fails sign-out."""
    now = runtime.clock()
    revocations = runtime.revocations
    try:
        await revocations.feed.publish(Revocation("session", session_id, now, now + revocations.retention))
    except Exception:
        logger.exception("sign-out: session %s could not be put on the deny list", session_id)


async def _session_of(runtime: EdgeRuntime, view: RequestView) -> tuple[str | None, str | None]:
    """The signed-in session's id and its user's id (none when signed out)."""
    authenticator = runtime.authenticator
    try:
        state = await authenticator.authenticate(view)
    except ClerkProtocolError:
        return None, None
    if state.is_signed_in and state.claims is not None:
        return state.claims.session_id, state.claims.user_id
    return None, None


def _json(status: int, body: Any, headers: list[tuple[str, str]]) -> ASGIResponse:
    """A response that may carry several `Set-Cookie` headers."""
    return ASGIResponse(
        body=b"" if body is None else json.dumps(body).encode(),
        status_code=status,
        media_type="application/json" if body is not None else "text/plain",
        headers=[*headers, ("cache-control", "no-store")],
    )
