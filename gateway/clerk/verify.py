"""`verifyToken`: key resolution (asking for keys when needed), the checks of tokens.py, and the
verified-token cache that keeps the signature check off repeat requests.

The cache is keyed by the exact token string, as Envoy's `jwt_authn` does: a hit skips decoding and
the RSA signature check but re-runs every clock- and settings-dependent check; an entry is dropped
as soon as its token expires or its key is no longer the one the key set holds for its `kid`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.clerk.asks import FetchKeys, KeysAnswer
from gateway.clerk.claims import ClaimsError, SessionClaims, parse_claims
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.jwk import KeySet
from gateway.clerk.options import ClerkOptions
from gateway.clerk.tokens import (
    M2M_CATEGORY,
    DecodedJwt,
    TokenVerificationError,
    check_claims,
    check_header,
    check_signature,
    check_subject,
    decode_jwt,
)

ACTION_CHECK_KEYS = (
    "Go to your Dashboard and validate your secret and public keys are correct. "
    "Contact support@clerk.com if the issue persists."
)


class KeyTransportError(ClerkProtocolError):
    """Keys could not be fetched at all (network): not a token-verification error (PROTOCOL.md §7.3)."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    decoded: DecodedJwt
    key: RSAPublicKey
    claims: SessionClaims | None  # None when the payload is not a session's claims


class VerifiedTokenCache:
    """A bounded LRU of signature-verified tokens. Holds no clock: callers pass `now_ms`.

    A plain dict in recency order (a hit moves its entry to the end, the oldest goes first when
    full): a lookup costs a fraction of a microsecond, it sits on every request's path.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self._maxsize = maxsize
        self._entries: dict[str, VerifiedToken] = {}

    def get(self, token: str) -> VerifiedToken | None:
        entry = self._entries.pop(token, None)
        if entry is not None:
            self._entries[token] = entry
        return entry

    def put(self, token: str, entry: VerifiedToken) -> None:
        self._entries.pop(token, None)
        self._entries[token] = entry
        if len(self._entries) > self._maxsize:
            del self._entries[next(iter(self._entries))]

    def discard(self, token: str) -> None:
        self._entries.pop(token, None)

    def __len__(self) -> int:
        return len(self._entries)


class KeyRing:
    """The keys a decision works with; updated in place when an answer brings a fresher set."""

    __slots__ = ("keys",)

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys


def resolve_key(
    decoded: DecodedJwt, options: ClerkOptions, ring: KeyRing
) -> Generator[FetchKeys, KeysAnswer, RSAPublicKey]:
    """Step 3: the PEM key, or the JWKS key for `kid`, asking for a refetch on a miss."""
    if options.jwt_key is not None:
        return options.jwt_key
    if not options.secret_key:
        raise TokenVerificationError(
            "jwk-failed-to-resolve",
            "Failed to resolve JWK during verification.",
            "Set the CLERK_SECRET_KEY environment variable.",
        )
    kid = decoded.kid
    key = ring.keys.get(kid)
    if key is not None:
        return key
    if kid is not None:
        answer = yield FetchKeys(kid)
        ring.keys = answer.keys
        key = ring.keys.get(kid)
        if key is not None:
            return key
        if answer.failure is not None:
            if answer.failure.reason == "unexpected-error":
                raise KeyTransportError(answer.failure.message)
            raise TokenVerificationError(answer.failure.reason, answer.failure.message, "Contact support@clerk.com")
    available = ", ".join(sorted(ring.keys.by_kid)) or "none"
    raise TokenVerificationError(
        "jwk-kid-mismatch",
        f"Unable to find a signing key in JWKS that matches the kid='{kid}' of the provided session token. "
        "Please make sure that the __session cookie or the HTTP authorization header contain a "
        f"Clerk-generated session JWT. The following kid is available: {available}",
        ACTION_CHECK_KEYS,
    )


def verify_token(
    token: str,
    options: ClerkOptions,
    ring: KeyRing,
    now_ms: int,
    cache: VerifiedTokenCache | None = None,
    decoded: DecodedJwt | None = None,
    clock_skew_ms: int | None = None,
) -> Generator[FetchKeys, KeysAnswer, VerifiedToken]:
    """Clerk's `verifyToken` (PROTOCOL.md §7.1), raising `TokenVerificationError` or `KeyTransportError`."""
    skew = options.clock_skew_ms if clock_skew_ms is None else clock_skew_ms
    if cache is not None:
        entry = cache.get(token)
        if entry is not None:
            if _key_is_current(entry, options, ring.keys):
                try:
                    _check_request_claims(entry.decoded, options, now_ms, skew)
                except TokenVerificationError:
                    cache.discard(token)
                    raise
                return entry
            cache.discard(token)
    if decoded is None:
        decoded = decode_jwt(token)
    if decoded.header.get("cat") == M2M_CATEGORY:
        raise TokenVerificationError("token-invalid", "Invalid session token category.")
    key = yield from resolve_key(decoded, options, ring)
    algorithm = check_header(decoded)
    check_signature(decoded, key, algorithm)
    check_subject(decoded.payload)
    _check_request_claims(decoded, options, now_ms, skew)
    try:
        entry = VerifiedToken(decoded, key, parse_claims(decoded.payload))
    except ClaimsError:
        entry = VerifiedToken(decoded, key, None)
    if cache is not None and clock_skew_ms is None:
        cache.put(token, entry)
    return entry


def still_verified(
    token: str, options: ClerkOptions, keys: KeySet, now_ms: int, cache: VerifiedTokenCache
) -> VerifiedToken | None:
    """The cache-hit half of `verify_token`, for a token verified before: its entry if its key is still
    the current one and every clock- and settings-dependent check passes now; else None (and the caller
    runs the whole verification, which gives the precise reason)."""
    entry = cache.get(token)
    if entry is None or not _key_is_current(entry, options, keys):
        return None
    try:
        _check_request_claims(entry.decoded, options, now_ms, options.clock_skew_ms)
    except TokenVerificationError:
        return None
    return entry


def _key_is_current(entry: VerifiedToken, options: ClerkOptions, keys: KeySet) -> bool:
    current = options.jwt_key if options.jwt_key is not None else keys.get(entry.decoded.kid)
    return current is entry.key or (current is not None and current == entry.key)


def _check_request_claims(decoded: DecodedJwt, options: ClerkOptions, now_ms: int, skew: int) -> None:
    check_claims(
        decoded.payload,
        now_ms=now_ms,
        clock_skew_ms=skew,
        authorized_parties=options.authorized_parties,
        audience=options.audience,
    )
