"""The instance's RSA signing keys, their JWKS, and rotation with a grace period.

After a rotation the new key signs everything while the old one stays published for
`rotation_grace` seconds, so tokens signed just before the rotation still verify (this is what
gives a JWKS cache a reason to refetch on an unknown `kid`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.emulator.clock import Clock
from gateway.emulator.ids import IdFactory


class TokenRejected(Exception):
    """A token the emulator did not sign (or cannot read); the message says why."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256", "n": jwk["n"], "e": jwk["e"]}


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


class KeyRing:
    """Current signer plus recently retired keys; safe to use from several threads."""

    def __init__(
        self,
        clock: Clock,
        ids: IdFactory,
        rotation_grace: float,
        initial_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._grace = rotation_grace
        self._lock = threading.Lock()
        self._current = SigningKey(ids.new("ins", 12), initial_key or generate_private_key())
        self._retired: list[tuple[SigningKey, float]] = []

    @property
    def current(self) -> SigningKey:
        with self._lock:
            return self._current

    def rotate(self) -> SigningKey:
        """Make a new key the signer; the previous one stays in the JWKS for the grace period."""
        fresh = SigningKey(self._ids.new("ins", 12), generate_private_key())
        with self._lock:
            self._retired.insert(0, (self._current, self._clock()))
            self._current = fresh
        return fresh

    def published(self) -> list[SigningKey]:
        now = self._clock()
        with self._lock:
            self._retired = [(key, at) for key, at in self._retired if now - at < self._grace]
            return [self._current, *(key for key, _ in self._retired)]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.published()]}

    def sign(self, payload: dict[str, Any]) -> str:
        key = self.current
        return jwt.encode(payload, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})

    def sign_with_headers(self, payload: dict[str, Any], headers: dict[str, Any]) -> str:
        """Sign with the current key and these JOSE header members besides `kid` (machine tokens)."""
        key = self.current
        return jwt.encode(payload, key.private_key, algorithm="RS256", headers={"kid": key.kid, **headers})

    def verify_ignoring_expiry(self, token: str) -> dict[str, Any]:
        """Claims of a token signed by a published key; expiry and other time claims are not checked."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as error:
            raise TokenRejected(f"undecodable token: {error}") from error
        key = next((k for k in self.published() if k.kid == kid), None)
        if key is None:
            raise TokenRejected(f"unknown kid {kid!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
            )
        except jwt.PyJWTError as error:
            raise TokenRejected(f"invalid token: {error}") from error
        return claims
