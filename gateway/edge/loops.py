"""Redirect loops caught as they happen, and named.

Clerk's own guard (`__clerk_redirect_count`, PROTOCOL.md §3.1) counts handshakes only and then answers
signed-out, which the gateway turns into a sign-in redirect: a loop made of sign-in redirects and
handshakes (a wrong `CLERK_AUTHORIZED_PARTIES`, keys of another instance) goes on until the browser gives
up with `ERR_TOO_MANY_REDIRECTS`. So the gateway keeps, in the browser, a short memory of the redirects
it sent it (`__gateway_loop`: the window's start, the hops in it, the last hop and the last sign-in
redirect), and before sending one more it asks whether this one cannot help:

* a sign-in redirect shortly after another one, when the browser came back from it through Clerk's
  handshake still signed out, or with a token refused in a way signing in again keeps (its `azp`, its
  signature or key): a loop;
* a handshake for a clock reason (`nbf`, `iat` in the future, expired) shortly after another one (the
  fresh token Clerk issued failed the same check: the clocks disagree): a loop;
* Clerk's guard fired (the counter at 3) and the answer would be one more redirect: a loop;
* anything else past `LOOP_HOPS` redirects within `LOOP_WINDOW` seconds: a loop.

The page names the most telling cause the hops pointed to (`explain`), including what Clerk only logs:
why a handshake resolution failed (`AuthState.handshake_failure`). The sign-out clears the memory.

The memory is signed with itsdangerous (a key derived from the secret key, as the sign-out token is), so a
browser cannot forge it, only lose it; it holds no token and no identity. itsdangerous signs the gateway's
own state only, never Clerk's tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadData, Signer

from gateway.clerk.decide import AuthState
from gateway.clerk.request import RequestView
from gateway.clerk.tokens import try_decode

logger = logging.getLogger("gateway")

COOKIE = "__gateway_loop"
LOOP_WINDOW = 10
"""Seconds a browser's redirects are remembered."""
LOOP_HOPS = 10
"""Redirects within the window that are a loop whatever their reasons (a sign-in takes five)."""
REPEAT_WINDOW = 3
"""Seconds within which a second clock-reason handshake means the first did not help."""
_HKDF_INFO = b"session-gateway redirect loop"
_PROCESS_KEY = secrets.token_bytes(32)

# Reasons a new sign-in cannot change: the token Clerk issues next is refused the same way.
_KEY_REASONS = frozenset({"token-invalid-signature", "jwk-kid-mismatch", "jwk-remote-missing", "token-invalid-issuer"})
_SETTING_REASONS = frozenset({"token-invalid-authorized-parties", "token-invalid-audience"})
# Clerk's handshake reasons, and a development resolution's retry (`AuthState.handshake_failure`).
_BEHIND_PREFIXES = ("session-token-nbf", "session-token-iat-in-the-future", "token-not-active-yet",
                    "token-iat-in-the-future")  # fmt: skip
_AHEAD_PREFIXES = ("session-token-expired-", "token-expired")
_CLOCK_PREFIXES = _BEHIND_PREFIXES + _AHEAD_PREFIXES
# Reasons Clerk answers with a handshake (PROTOCOL.md §3.2): signed-out with one of them, a navigation
# and the counter at 3 is its loop guard (`session-token-expired-…` by prefix).
_HANDSHAKE_REASONS = frozenset({
    "satellite-needs-syncing", "primary-responds-to-syncing", "dev-browser-sync", "dev-browser-missing",
    "session-token-but-no-client-uat", "client-uat-but-no-session-token", "session-token-iat-before-client-uat",
    "session-token-nbf", "session-token-iat-in-the-future", "primary-domain-cross-origin-sync",
    "active-organization-mismatch",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Loop:
    """A loop found: `cause` (a short id, the metric's label), what happened and what to change."""

    cause: str
    explanation: str
    fix: str
    hops: int


@dataclass(slots=True)
class Memory:
    """What the browser's cookie remembers (times are whole seconds of the gateway's clock)."""

    started: int = 0
    hops: int = 0
    last_kind: str = ""  # "h": a redirect Clerk decided (handshake, sync, resolution), "s": a sign-in redirect
    last_at: int = 0
    sign_in_at: int = 0  # the last sign-in redirect not followed by a signed-in handshake resolution
    clock_at: int = 0  # the last handshake for a clock reason
    causes: str = ""  # the likely causes seen in the window, comma-separated

    def encode(self) -> bytes:
        fields = [self.started, self.hops, self.last_kind, self.last_at, self.sign_in_at, self.clock_at, self.causes]
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Memory:
        started, hops, last_kind, last_at, sign_in_at, clock_at, causes = json.loads(data)
        return cls(int(started), int(hops), str(last_kind), int(last_at), int(sign_in_at), int(clock_at), str(causes))


class LoopGuard:
    """Reads and writes the browser's memory of redirects; one per worker."""

    def __init__(self, secret_key: str | None) -> None:
        self._signer = _signer(secret_key)

    def check(
        self, view: RequestView, state: AuthState, kind: str, now: float, *, secure: bool
    ) -> tuple[Loop | None, tuple[bytes, bytes]]:
        """Before one more redirect (`kind` "h" or "s"): the loop it would continue, if any, and the cookie
        to send with the answer (the memory with this hop, or cleared when a loop is answered)."""
        at = int(now)
        memory = self._read(view, at)
        reason = state.handshake_failure or state.reason
        cause = _cause_of(reason, state, memory)
        causes = [c for c in memory.causes.split(",") if c]
        if cause and cause not in causes:
            causes.append(cause)
        if _is_loop(view, state, kind, reason, memory, at):
            return explain(causes, reason, view, state, memory.hops + 1), clear_cookie(secure)
        if memory.hops == 0:
            memory.started = at
        memory.hops += 1
        memory.last_kind, memory.last_at = kind, at
        if kind == "s":
            memory.sign_in_at = at
        elif state.is_signed_in:
            memory.sign_in_at = 0  # the sign-in completed
        if kind == "h" and reason.startswith(_CLOCK_PREFIXES):
            memory.clock_at = at  # a clock handshake, or a resolution that needed Clerk's skew retry
        memory.causes = ",".join(causes[-4:])
        value = self._signer.sign(memory.encode()).decode("ascii")
        return None, _cookie(value, LOOP_WINDOW, secure)

    def _read(self, view: RequestView, at: int) -> Memory:
        raw = view.cookies.get(COOKIE)
        if not raw:
            return Memory()
        try:
            memory = Memory.decode(self._signer.unsign(raw.encode("ascii")))
        except (BadData, ValueError, TypeError, UnicodeEncodeError):
            return Memory()
        if at - memory.started > LOOP_WINDOW or memory.started > at:
            return Memory()
        return memory


def _is_loop(view: RequestView, state: AuthState, kind: str, reason: str, memory: Memory, at: int) -> bool:
    if kind == "s" and memory.sign_in_at:
        if reason in _KEY_REASONS or reason in _SETTING_REASONS:
            return True  # came back from signing in with a token refused in a way signing in again keeps
        if memory.last_kind == "h" and memory.last_at >= memory.sign_in_at:
            return True  # came back from signing in through Clerk's handshake, and still needs to sign in
    if kind == "h" and reason.startswith(_CLOCK_PREFIXES) and memory.clock_at and at - memory.clock_at <= REPEAT_WINDOW:
        return True  # the fresh token the last handshake brought failed the same clock check
    if kind == "s" and _clerk_guard_fired(view, state):
        return True
    return memory.hops + 1 > LOOP_HOPS


def _cause_of(reason: str, state: AuthState, memory: Memory) -> str:
    """The cause id a hop's reason points to ("" when it says nothing)."""
    if reason == "token-invalid-audience":
        return "audience"
    if reason == "token-invalid-authorized-parties":
        return "authorized-parties"
    if reason in _KEY_REASONS:
        return "keys"
    if reason == "handshake-nonce-failed" or (reason == "session-token-missing" and memory.sign_in_at):
        return "handshake-empty"  # the Backend API gave nothing for the handshake, or no session after a sign-in
    if reason.startswith(_BEHIND_PREFIXES):
        return "clock-behind"
    if reason.startswith(_AHEAD_PREFIXES):
        return "clock-ahead"
    if reason == "satellite-needs-syncing":
        return "satellite-sync"
    if reason.startswith("dev-browser-"):
        return "dev-browser"
    if reason in ("client-uat-but-no-session-token", "session-token-iat-before-client-uat",
                  "session-token-but-no-client-uat"):  # fmt: skip
        return "cookie-domains"
    return ""


# The most telling first: a setting or a key explains the rest of the hops.
_PRIORITY = ("authorized-parties", "audience", "keys", "handshake-empty", "clock-behind", "clock-ahead",
             "satellite-sync", "cookie-domains", "dev-browser")  # fmt: skip


def explain(causes: list[str], reason: str, view: RequestView, state: AuthState, hops: int) -> Loop:
    """The likely cause of a loop, from the causes its hops pointed to, in words an operator can act on."""
    cause = next((known for known in _PRIORITY if known in causes), "unknown")
    origin = view.clerk_origin
    if cause == "audience":
        return Loop(cause, "Clerk's session token names an audience (aud) CLERK_AUDIENCE does not accept, so "
                    "every sign-in comes back refused.", "Fix CLERK_AUDIENCE.", hops)  # fmt: skip
    if cause == "authorized-parties":
        azp = _azp(state.token or view.cookies.get("__session"))
        minted = f" (the token was minted for {azp})" if azp else ""
        return Loop(
            cause,
            f"The session token's authorized party is not in CLERK_AUTHORIZED_PARTIES{minted}, so every sign-in "
            "comes back refused and is sent to sign in again.",
            f"Add {azp or origin} to CLERK_AUTHORIZED_PARTIES (and check GATEWAY_PUBLIC_ORIGIN).",
            hops,
        )
    if cause in ("keys", "handshake-empty"):
        found = (
            "The session token is signed by a key this gateway does not know"
            if cause == "keys"
            else "Clerk's handshake brought back nothing the Backend API (CLERK_API_URL, CLERK_SECRET_KEY) knows"
        )
        return Loop(
            "keys",
            f"{found}: the token comes from another Clerk instance, or CLERK_SECRET_KEY (or CLERK_JWT_KEY) "
            "belongs to another instance than CLERK_PUBLISHABLE_KEY.",
            "Take both keys from the same instance; `gateway doctor` checks them.",
            hops,
        )
    if cause == "clock-behind":
        return Loop(
            cause,
            "Every fresh session token looks issued in the future: this server's clock is behind Clerk's by more "
            "than the allowed skew (CLERK_CLOCK_SKEW_MS).",
            "Synchronise the clock (NTP); `gateway doctor` measures the difference.",
            hops,
        )
    if cause == "clock-ahead":
        return Loop(
            cause,
            "Every fresh session token looks expired: this server's clock is ahead of Clerk's, or the session "
            "cannot be refreshed.",
            "Synchronise the clock (NTP); `gateway doctor` measures the difference.",
            hops,
        )
    if cause == "satellite-sync":
        return Loop(
            cause,
            "This satellite's sync with the primary domain does not complete.",
            f"List {origin} in the primary's GATEWAY_ALLOWED_REDIRECT_ORIGINS and check CLERK_SIGN_IN_URL; "
            "`gateway doctor` checks both.",
            hops,
        )
    if cause == "cookie-domains":
        return Loop(
            cause,
            "Clerk's __client_uat and __session cookies disagree after every handshake: they live on domains "
            "that do not fit together.",
            "Check GATEWAY_PUBLIC_ORIGIN, CLERK_DOMAIN and the instance's domain; `gateway doctor` checks them.",
            hops,
        )
    if cause == "dev-browser":
        return Loop(
            cause,
            "The development browser token does not stick: this origin's cookies are not kept.",
            "Check that the browser accepts this site's cookies (a Secure cookie over http, a cookie domain).",
            hops,
        )
    return Loop(
        "unknown",
        f"The browser kept being redirected (last reason: {reason or 'none'}).",
        "Replay the request with `gateway explain --trace` to see the decision.",
        hops,
    )


def log_loop(loop: Loop, reason: str, path: str) -> None:
    """The one warning a loop gets (no token, no cookie, no query)."""
    logger.warning("gateway.redirect_loop cause=%s reason=%s hops=%d path=%s fix=%r", loop.cause, reason or "none",
                   loop.hops, path, loop.fix)  # fmt: skip


def _clerk_guard_fired(view: RequestView, state: AuthState) -> bool:
    """Clerk's counter reached 3, so the decision answered signed-out where it would have handshaken."""
    if state.status != "signed-out" or not view.is_handshake_eligible:
        return False
    reason = state.reason
    return view.cookies.get("__clerk_redirect_count", "").strip() == "3" and (
        reason in _HANDSHAKE_REASONS or reason.startswith("session-token-expired-")
    )


def _azp(token: str | None) -> str | None:
    decoded = try_decode(token) if token else None
    azp = decoded.payload.get("azp") if decoded is not None else None
    return azp if isinstance(azp, str) and azp.startswith(("http://", "https://")) and len(azp) < 200 else None


def clear_cookie(secure: bool) -> tuple[bytes, bytes]:
    """Forget the memory (a loop was answered, or the browser signed out)."""
    return _cookie("", 0, secure)


def _cookie(value: str, max_age: int, secure: bool) -> tuple[bytes, bytes]:
    cookie = f"{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
    return b"set-cookie", cookie.encode("ascii")


@lru_cache(maxsize=8)
def _signer(secret_key: str | None) -> Signer:
    """HKDF-SHA256 of the Clerk secret key; without one, a key of this process only (the memory resets)."""
    key = (
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key.encode())
        if secret_key
        else _PROCESS_KEY
    )
    return Signer(key, salt="session-gateway redirect loop", digest_method=hashlib.sha256)
