"""Seal what replicas share in Redis: keys that reveal no token, values only the gateway can read.

A refresh answer holds a fresh session token (its Set-Cookie strings), so it is stored encrypted with
AES-GCM under a key derived (HKDF-SHA256) from the Clerk secret key, which every replica of one
instance has and Redis does not; the Redis key it is stored under is bound as associated data, so a
value copied under another key does not open. Keys are HMAC-SHA256 digests of what identifies the
request (never a raw token), under a second derived key, so nobody who can read Redis can test a
guessed token against them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"session-gateway " + purpose).derive(
        secret.encode()
    )


class Sealer:
    """`digest(*parts)` names a shared entry; `seal`/`open` protect its value."""

    def __init__(self, secret: str, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._aead = AESGCM(_derive(secret, b"shared-state encryption"))
        self._mac_key = _derive(secret, b"shared-state key names")
        self._random = random_bytes

    def digest(self, *parts: str | bytes) -> str:
        """A stable hex name for these parts (length-prefixed, so ("ab", "c") and ("a", "bc") differ)."""
        mac = hmac.new(self._mac_key, digestmod=hashlib.sha256)
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            mac.update(len(data).to_bytes(4, "big") + data)
        return mac.hexdigest()

    def seal(self, value: bytes, bound_to: str) -> bytes:
        nonce = self._random(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value, bound_to.encode())

    def open(self, sealed: bytes, bound_to: str) -> bytes | None:
        """The value, or None if it was not sealed by this secret for this key (or was altered)."""
        if len(sealed) <= _NONCE_BYTES:
            return None
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], bound_to.encode())
        except InvalidTag:
            return None
