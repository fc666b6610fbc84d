"""The signed identity assertion: a short-lived JWT of who the app's user is, for apps that verify it.

Signed with the gateway's current key (`GATEWAY_ASSERTION_KEY`), for one app's audience; the current
and the previous keys (`GATEWAY_ASSERTION_PREVIOUS_KEYS`, a grace period for what they signed) are
published at `/__gateway/jwks.json` by their RFC 7638 thumbprints. What a session's assertion
carries beyond its ids is the app's mapped identity (`gateway.edge.identity` adds it).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway.clerk.claims import SessionClaims
from gateway.clerk.machine import MachineIdentity

ASSERTION_LIFETIME = 60
ASSERTION_ISSUER = "session-gateway"
_MEMO_SIZE = 10_000


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 over the key's required members, sorted, without whitespace, base64url."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({member: jwk[member] for member in required}, separators=(",", ":"), sort_keys=True)
    return jwt.utils.base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode()


_SigningKey = RSAPrivateKey | EllipticCurvePrivateKey | Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class _PublishedKey:
    algorithm: str
    kid: str
    public_jwk: dict[str, str]

    def as_jwk(self) -> dict[str, str]:
        return {**self.public_jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


class IdentityAsserter:
    """Signs short-lived JWTs of the identity with the gateway's current key; publishes it and the
    previous ones (a grace period for assertions they signed) by their RFC 7638 `kid`s."""

    def __init__(
        self,
        private_key: PrivateKeyTypes,
        clock: Callable[[], float] = time.time,
        *,
        previous_keys: Iterable[PrivateKeyTypes] = (),
    ) -> None:
        self._key = _signing_key(private_key)
        self._clock = clock
        self._current = _published(self._key)
        self.algorithm = self._current.algorithm
        self.kid = self._current.kid
        current_kid = self.kid
        self._previous = tuple(
            key for key in (_published(_signing_key(item)) for item in previous_keys) if key.kid != current_kid
        )
        self._machine_cache: TTLCache[tuple[str, str | None], str] = TTLCache(
            maxsize=_MEMO_SIZE, ttl=ASSERTION_LIFETIME // 2, timer=clock
        )

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.as_jwk() for key in (self._current, *self._previous)]}

    def now(self) -> float:
        return self._clock()

    def sign(self, claims: Mapping[str, Any], audience: str | None) -> str:
        """`claims` with issuer, audience (when there is one), issue time and a 60-second lifetime."""
        now = int(self._clock())
        payload: dict[str, Any] = {"iss": ASSERTION_ISSUER, "iat": now, "exp": now + ASSERTION_LIFETIME}
        if audience:
            payload["aud"] = audience
        payload.update(claims)
        return jwt.encode(payload, self._key, algorithm=self.algorithm, headers={"kid": self.kid})

    def machine_assertion(self, token: str, machine: MachineIdentity, audience: str | None = None) -> str:
        """The assertion for a machine token: who it is (`sub`, its owner) and what it may do."""
        cached = self._machine_cache.get((token, audience))
        if cached is not None:
            return cached
        payload: dict[str, Any] = {
            "sub": machine.subject,
            "token_type": machine.token_type,
            "token_id": machine.id,
            "user_id": machine.user_id,
            "org_id": machine.org_id,
            "machine_id": machine.machine_id,
            "scopes": list(machine.scopes),
            "name": machine.name,
            "claims": machine.claims,
            "client_id": machine.client_id,
        }
        if machine.expiration_ms is not None:
            payload["exp"] = min(int(self._clock()) + ASSERTION_LIFETIME, int(machine.expiration_ms // 1000))
        signed = self.sign(payload, audience)
        self._machine_cache[(token, audience)] = signed
        return signed


def session_assertion_claims(claims: SessionClaims) -> dict[str, Any]:
    return {
        "sub": claims.user_id,
        "sid": claims.session_id,
        "org_id": claims.org_id,
        "org_role": claims.org_role,
        "org_slug": claims.org_slug,
        "org_permissions": list(claims.org_permissions),
    }


def _signing_key(private_key: PrivateKeyTypes) -> _SigningKey:
    if not isinstance(private_key, RSAPrivateKey | EllipticCurvePrivateKey | Ed25519PrivateKey):
        raise TypeError(f"unsupported assertion key type {type(private_key).__name__}")
    return private_key


def _published(private_key: _SigningKey) -> _PublishedKey:
    algorithm, public_jwk = _algorithm_and_jwk(private_key)
    return _PublishedKey(algorithm, jwk_thumbprint(public_jwk), public_jwk)


def _algorithm_and_jwk(private_key: _SigningKey) -> tuple[str, dict[str, str]]:
    if isinstance(private_key, RSAPrivateKey):
        return "RS256", RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    if isinstance(private_key, EllipticCurvePrivateKey):
        algorithm = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[private_key.curve.name]
        return algorithm, ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return "EdDSA", OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
