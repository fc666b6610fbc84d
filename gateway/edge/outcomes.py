"""What admission ends in, and the one table that turns (decision, policy verdict) into it.

Every entrance gets one of three values: `Proceed` (to the app, with the identity the decision
found), `Redirect` (a `Location` the browser follows) or `Deny` (a status, a code and a sentence).
The proxy, WebSocket upgrades and forward-auth render the same value in their own format; none of
them decides again.

The table (`outcome_for`), first matching row wins:

| row                       | when                                                          | answer               |
|---------------------------|---------------------------------------------------------------|----------------------|
| `redirect-loop`           | a redirect below, while the browser is in a loop (`loops.py`) | 508, names the cause |
| `clerk-redirect`          | the decision answers with a `Location` (handshake, sync)      | 307 there (*)        |
| `allowed`                 | the policy allows                                             | proceed              |
| `denied`                  | a deny rule matches (whoever asks)                            | 403 `denied`         |
| `forbidden`               | signed in, the rule asks for more (role, scopes, claims)      | 403 `forbidden`      |
| `reverification-required` | signed in, the rule's reverification is too old               | 403, Clerk's body    |
| `keys-unavailable`        | sign-in needed, a session token was sent, no keys to check it | 503                  |
| `sign-in-redirect`        | sign-in needed, a GET/HEAD navigation to a page               | 307 to sign-in       |
| `unauthenticated`         | sign-in needed, anything else (API call, a form POST)         | 401 + the reason     |

`reverification-required` answers an API call with exactly the body of Clerk's `reverificationError`
(what Clerk's `useReverification` reads) and a navigation with a page that says what to do.

(*) A development handshake resolution that ends signed out, on a page that needs sign-in, goes to the
sign-in URL at once (with the resolution's cookies, and its clean URL to come back to) instead of
through the clean URL first: after a sign-out elsewhere, a satellite would otherwise sync with its
primary, be sent back and only then to sign-in.

Refusals are pages for navigations (an API path a browser opens included: a person reads it) and JSON
for everything else. The 403 page says who is signed in and offers to switch account; the 401 page of an
API path offers to sign in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from gateway.clerk.authorization import Reverification, reverification_error
from gateway.clerk.decide import AuthState
from gateway.edge.loops import Loop
from gateway.edge.policy import Decision

Headers = list[tuple[bytes, bytes]]
Row = Literal[
    "redirect-loop",
    "clerk-redirect",
    "allowed",
    "denied",
    "forbidden",
    "reverification-required",
    "keys-unavailable",
    "sign-in-redirect",
    "unauthenticated",
    "refused",
]
LoopCheck = Callable[[AuthState, str], tuple[Loop | None, tuple[bytes, bytes]]]
"""Before a redirect of kind "h" (Clerk's) or "s" (sign-in): the loop it would continue, and a cookie."""

# The decision's own headers that describe its answer, not the app's: never copied onto a proxied answer.
_ANSWER_ONLY_HEADERS = frozenset({"location", "cache-control"})


@dataclass(frozen=True, slots=True)
class Proceed:
    """Let the request through to the app; `response_headers` go on the app's answer (e.g. `Set-Cookie`).
    `pending_signed_in`: a pending session a rule lets in; the app gets its identity."""

    state: AuthState
    response_headers: Headers
    row: Row = "allowed"
    pending_signed_in: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str
    headers: Headers
    row: Row
    status: int = 307
    state: AuthState | None = None


@dataclass(frozen=True, slots=True)
class PageDetails:
    """What a refusal's page adds to its sentence (never part of the JSON answer)."""

    signed_in_as: str | None = None
    """Who is signed in (the 403 page), with a form to sign out and come back to `return_path`."""
    return_path: str | None = None
    sign_in_url: str | None = None
    """A link to sign in (the 401 page of an API path a browser opened)."""
    fix: str | None = None
    """What to change (the loop page)."""


@dataclass(frozen=True, slots=True)
class Deny:
    """An answer the gateway gives itself; `page`: render a page (a navigation), else JSON: the gateway's
    own `{"error", "message", ...extra}`, or `body` verbatim when set (Clerk's reverification error)."""

    status: int
    code: str
    message: str
    page: bool = False
    headers: Headers = field(default_factory=list)
    extra: dict[str, str] | None = None
    row: Row = "refused"
    state: AuthState | None = None
    details: PageDetails | None = None
    body: bytes | None = None


Outcome = Proceed | Redirect | Deny


@lru_cache(maxsize=64)
def reverification_error_body(requirement: Reverification) -> bytes:
    """Clerk's `reverificationError` as `JSON.stringify` writes it (no spaces)."""
    return json.dumps(reverification_error(requirement), separators=(",", ":")).encode()

LOOP_STOPPED = (
    "Signing in could not complete: the browser was being sent round in a loop, which the gateway stopped. "
    "The site's operator finds the cause in the gateway's log."
)


def encode_headers(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> Headers:
    return [(name.lower().encode("latin-1"), value.encode("utf-8")) for name, value in pairs]


def outcome_for(
    state: AuthState,
    decision: Decision | None,
    *,
    navigation: bool,
    redirectable: bool,
    keys_available: bool,
    carries_token: bool,
    sign_in_location: Callable[[], str],
    loop_check: LoopCheck | None = None,
    explain_loops: bool = False,
    return_path: str = "/",
) -> Outcome:
    """The table above. `decision` is None only when the decision redirects (the policy is not asked);
    `navigation`: a page the browser shows; `redirectable`: a GET/HEAD navigation; `loop_check`: asked
    before a navigation is redirected (None: never a loop); `explain_loops`: the loop page names the cause."""
    location = state.location if state.headers else None
    if location is not None and not (state.status == "signed-out" and _needs_sign_in(decision, redirectable)):
        redirect_headers = encode_headers([pair for pair in state.headers if pair[0] != "location"])
        if navigation and loop_check is not None:
            loop, cookie = loop_check(state, "h")
            if loop is not None:
                return _loop_page(state, loop, cookie, explain_loops)
            redirect_headers.append(cookie)
        return Redirect(location, redirect_headers, "clerk-redirect", state=state)
    assert decision is not None, "the policy is asked unless the decision redirects"
    if location is not None:  # a signed-out resolution on a page that needs sign-in: there at once
        return _sign_in_redirect(state, encode_headers(_without(state.headers, "location", "cache-control")),
                                 sign_in_location, loop_check, explain_loops)  # fmt: skip
    if decision.verdict == "allow":
        headers = [pair for pair in state.headers if pair[0] not in _ANSWER_ONLY_HEADERS] if state.headers else []
        return Proceed(
            state, encode_headers(headers) if headers else [], pending_signed_in=decision.pending_signed_in
        )
    state_headers = encode_headers(state.headers) if state.headers else []
    if decision.verdict == "deny":
        return Deny(
            403, "denied", "This request is not allowed here.", navigation, state_headers, row="denied", state=state
        )
    if decision.verdict == "forbidden":
        claims = state.claims
        who = None
        if navigation and claims is not None and claims.user_id:
            org = f" ({claims.org_role} of {claims.org_slug or claims.org_id})" if claims.org_id else ""
            who = f"{claims.user_id}{org}"
        return Deny(
            403,
            "forbidden",
            "You are signed in but not allowed to open this page.",
            navigation,
            state_headers,
            {"reason": decision.reason} if decision.reason else None,
            row="forbidden",
            state=state,
            details=PageDetails(signed_in_as=who, return_path=return_path) if who else None,
        )
    if decision.verdict == "reverify":
        requirement = decision.reverification
        assert requirement is not None, "a reverify verdict names its requirement"
        return Deny(
            403,
            "reverification_required",
            f"Confirm it's you: this page needs your {requirement.describe()}. Sign out and sign in again "
            "(or confirm in the app's own prompt), then open this page again.",
            navigation,
            state_headers,
            {"reason": "reverification-error"},
            row="reverification-required",
            state=state,
            body=reverification_error_body(requirement),
        )
    if not keys_available and carries_token and not decision.reason:
        return Deny(
            503,
            "keys_unavailable",
            "Sessions cannot be verified right now; try again shortly.",
            navigation,
            [(b"retry-after", b"5")],
            row="keys-unavailable",
            state=state,
        )
    if redirectable and not decision.is_api:
        return _sign_in_redirect(state, state_headers, sign_in_location, loop_check, explain_loops)
    return Deny(
        401,
        "unauthenticated",
        "Sign in to use this API." if decision.is_api else "Sign in to continue.",
        navigation,
        state_headers,
        {"reason": decision.reason or state.reason},
        row="unauthenticated",
        state=state,
        details=PageDetails(sign_in_url=sign_in_location()) if redirectable and decision.is_api else None,
    )


def _needs_sign_in(decision: Decision | None, redirectable: bool) -> bool:
    return decision is not None and decision.verdict == "sign-in" and redirectable and not decision.is_api


def _without(headers: tuple[tuple[str, str], ...], *names: str) -> list[tuple[str, str]]:
    return [pair for pair in headers if pair[0] not in names]


def _sign_in_redirect(
    state: AuthState,
    state_headers: Headers,
    sign_in_location: Callable[[], str],
    loop_check: LoopCheck | None,
    explain_loops: bool,
) -> Outcome:
    """Row `sign-in-redirect` (the state's headers go along: a resolution's cookies, Clerk's reason)."""
    headers = [(b"cache-control", b"no-store"), *state_headers]
    if loop_check is not None:
        loop, cookie = loop_check(state, "s")
        if loop is not None:
            return _loop_page(state, loop, cookie, explain_loops)
        headers.append(cookie)
    return Redirect(sign_in_location(), headers, "sign-in-redirect", state=state)


def _loop_page(state: AuthState, loop: Loop, cookie: tuple[bytes, bytes], explain: bool) -> Deny:
    """Row `redirect-loop`: the page that ends a loop; its cause on development instances (or when enabled)."""
    return Deny(
        508,
        "redirect_loop",
        loop.explanation if explain else LOOP_STOPPED,
        True,
        [(b"cache-control", b"no-store"), cookie, *((b"set-cookie", value.encode()) for value in state.set_cookies)],
        {"cause": loop.cause, "reason": state.reason},
        row="redirect-loop",
        state=state,
        details=PageDetails(fix=loop.fix) if explain else None,
    )
