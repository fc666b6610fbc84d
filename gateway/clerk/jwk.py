"""Verification keys as the core sees them: already-parsed RSA public keys by `kid`.

Parsing happens once, where keys are fetched or loaded (gateway.clerk_api.jwks, settings); the
hot path only looks keys up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import PyJWTError

from gateway.clerk.errors import ClerkProtocolError


@dataclass(frozen=True, slots=True)
class KeySet:
    """An immutable snapshot of the JWKS: swapping the snapshot is how keys rotate."""

    by_kid: Mapping[str, RSAPublicKey] = field(default_factory=dict)

    def get(self, kid: str | None) -> RSAPublicKey | None:
        if kid is None:
            return None
        return self.by_kid.get(kid)

    def __len__(self) -> int:
        return len(self.by_kid)


EMPTY_KEY_SET = KeySet()


def key_set_from_jwks(document: Any) -> KeySet:
    """Parse a JWKS document (`{"keys": [...]}`), keeping the RSA signing keys with a `kid`.

    Raises `ClerkProtocolError` (reason `jwk-remote-invalid`) when the document is not a JWKS.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ClerkProtocolError("The JWKS document has no keys list.", reason="jwk-remote-invalid")
    keys: dict[str, RSAPublicKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, Mapping) or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use") not in (None, "sig"):
            continue
        try:
            key = RSAAlgorithm.from_jwk(json.dumps(dict(entry)))
        except (ValueError, TypeError, KeyError, PyJWTError) as error:
            raise ClerkProtocolError(f"A JWKS key could not be parsed: {error}", reason="jwk-remote-invalid") from error
        if isinstance(key, RSAPublicKey):
            keys[entry["kid"]] = key
    return KeySet(by_kid=keys)
