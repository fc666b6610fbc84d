"""Hand-built tokens for adversarial tests: raw JSON payloads, other algorithms, re-encoded signatures,
and a synchronous driver for `verify_token` (PROTOCOL.md §7.1) with canned key answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from gateway.clerk.asks import FetchKeys, KeysAnswer
from gateway.clerk.jwk import KeySet
from gateway.clerk.options import ClerkOptions
from gateway.clerk.verify import KeyRing, VerifiedToken, VerifiedTokenCache, verify_token
from tests.support.clerk import KID, NOW, claims, key_set, options, private_key, public_pem

_HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}
BASE64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def segment(value: Mapping[str, Any] | str) -> str:
    """A base64url segment of a JSON object, or of raw text taken verbatim (e.g. `{"exp":1e400}`)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return b64url(text.encode())


def signed_raw(header: Mapping[str, Any] | str, payload: Mapping[str, Any] | str, key: str = "main",
               algorithm: str = "RS256") -> str:
    """RSASSA-PKCS1-v1_5 over the exact segments given (payload may be raw JSON text)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = private_key(key).sign(signing_input.encode(), padding.PKCS1v15(), _HASHES[algorithm]())
    return f"{signing_input}.{b64url(signature)}"


def hs256_with_public_pem(**claim_overrides: Any) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the verifier's public key PEM."""
    header = {"alg": "HS256", "typ": "JWT", "kid": KID}
    signing_input = f"{segment(header)}.{segment(claims(**claim_overrides))}"
    mac = hmac.new(public_pem().encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def alg_none(signature: str = "", **claim_overrides: Any) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": KID}
    return f"{segment(header)}.{segment(claims(**claim_overrides))}.{signature}"


def with_signature_segment(token: str, signature_segment: str) -> str:
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{signature_segment}"


def standard_alphabet(token: str) -> str:
    """The same bytes in standard base64 (`+`, `/`): not base64url."""
    return token.replace("-", "+").replace("_", "/")


def flip_trailing_bits(signature_segment: str) -> str:
    """Change the unused low bits of the last character (256-byte signatures leave 4 spare bits)."""
    last = BASE64URL_ALPHABET.index(signature_segment[-1])
    return signature_segment[:-1] + BASE64URL_ALPHABET[last ^ 0b1]


def verify(
    token: str,
    opts: ClerkOptions | None = None,
    *,
    keys: KeySet | None = None,
    now: float = NOW,
    fetched: KeysAnswer | None = None,
    cache: VerifiedTokenCache | None = None,
    asks: list[FetchKeys] | None = None,
) -> VerifiedToken:
    """Drive `verify_token` to completion; each `FetchKeys` is answered with `fetched` (default: no keys)."""
    flow = verify_token(token, opts or options(), KeyRing(key_set() if keys is None else keys), int(now * 1000),
                        cache)
    try:
        ask = next(flow)
        while True:
            if asks is not None:
                asks.append(ask)
            ask = flow.send(fetched or KeysAnswer(KeySet()))
    except StopIteration as finished:
        result: VerifiedToken = finished.value
        return result
