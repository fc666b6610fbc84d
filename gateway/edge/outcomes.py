"""What admission ends in, and the one table that turns (decision, policy verdict) into it.

Every entrance gets one of three values: `Proceed` (to the app, with the identity the decision
found), `Redirect` (a `Location` the browser follows) or `Deny` (a status, a code and a sentence).
The proxy, WebSocket upgrades and forward-auth render the same value in their own format; none of
them decides again.

The table (`outcome_for`), first matching row wins:

| row                       | when                                                     | answer                        |
|---------------------------|----------------------------------------------------------|-------------------------------|
| `clerk-redirect`          | the decision answers with a `Location` (handshake, sync) | 307 there                     |
| `allowed`                 | the policy allows                                        | proceed (+ `Set-Cookie`)      |
| `denied`                  | a deny rule matches (whoever asks)                       | 403 `denied`                  |
| `forbidden`               | signed in, the rule asks for more (role, scopes, claims)| 403 `forbidden`               |
| `reverification-required` | signed in, the rule's reverification is too old          | 403 Clerk's body, or a page   |
| `keys-unavailable`        | sign-in needed, a token was sent, no keys to check it    | 503 `keys_unavailable`        |
| `sign-in-redirect`        | sign-in needed, a GET/HEAD navigation to a page          | 307 to the sign-in URL        |
| `unauthenticated`         | sign-in needed, anything else (API call, a form POST)    | 401 + Clerk's reason          |

`reverification-required` answers an API call with exactly the body of Clerk's `reverificationError`
(what Clerk's `useReverification` reads) and a navigation with a page that says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from gateway.clerk.authorization import Reverification, reverification_error
from gateway.clerk.decide import AuthState
from gateway.edge.policy import Decision

Headers = list[tuple[bytes, bytes]]
Row = Literal[
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
    body: bytes | None = None


Outcome = Proceed | Redirect | Deny


@lru_cache(maxsize=64)
def reverification_error_body(requirement: Reverification) -> bytes:
    """Clerk's `reverificationError` as `JSON.stringify` writes it (no spaces)."""
    return json.dumps(reverification_error(requirement), separators=(",", ":")).encode()


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
) -> Outcome:
    """The table above. `decision` is None only when the decision redirects (the policy is not asked);
    `navigation`: a page the browser shows; `redirectable`: a GET/HEAD navigation."""
    location = state.location if state.headers else None
    if location is not None:
        return Redirect(
            location,
            encode_headers([pair for pair in state.headers if pair[0] != "location"]),
            "clerk-redirect",
            state=state,
        )
    assert decision is not None, "the policy is asked unless the decision redirects"
    if decision.verdict == "allow":
        headers = [pair for pair in state.headers if pair[0] not in _ANSWER_ONLY_HEADERS] if state.headers else []
        return Proceed(
            state, encode_headers(headers) if headers else [], pending_signed_in=decision.pending_signed_in
        )
    state_headers = encode_headers(state.headers) if state.headers else []
    if decision.verdict == "deny":
        return Deny(
            403,
            "denied",
            "This request is not allowed here.",
            navigation and not decision.is_api,
            state_headers,
            row="denied",
            state=state,
        )
    if decision.verdict == "forbidden":
        return Deny(
            403,
            "forbidden",
            "You are signed in but not allowed to open this page.",
            navigation and not decision.is_api,
            state_headers,
            {"reason": decision.reason} if decision.reason else None,
            row="forbidden",
            state=state,
        )
    if decision.verdict == "reverify":
        requirement = decision.reverification
        assert requirement is not None, "a reverify verdict names its requirement"
        return Deny(
            403,
            "reverification_required",
            f"Confirm it's you: this page needs your {requirement.describe()}. Sign out and sign in again "
            "(or confirm in the app's own prompt), then open this page again.",
            navigation and not decision.is_api,
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
        return Redirect(
            sign_in_location(), [(b"cache-control", b"no-store"), *state_headers], "sign-in-redirect", state=state
        )
    return Deny(
        401,
        "unauthenticated",
        "Sign in to use this API." if decision.is_api else "Sign in to continue.",
        navigation and not decision.is_api,
        state_headers,
        {"reason": decision.reason or state.reason},
        row="unauthenticated",
        state=state,
    )
