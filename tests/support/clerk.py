"""Factories for core tests: keys, session tokens, options, requests and canned answers to asks.

Defaults follow Clerk's own SDK tests (PROTOCOL.md §11): `GET http://clerk.com/path` with
`Host: example.com` and `Sec-Fetch-Dest: document`; the clock sits at the valid token's `iat`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from gateway.clerk.asks import Answer, ApiResponse, Ask, FetchHandshakePayload, FetchKeys, KeysAnswer, RefreshSession
from gateway.clerk.decide import AuthState, decide
from gateway.clerk.jwk import KeySet
from gateway.clerk.keys import parse_publishable_key
from gateway.clerk.options import ClerkOptions
from gateway.clerk.request import RequestView
from gateway.clerk.verify import VerifiedTokenCache

PK_TEST = "pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA"
PK_LIVE = "pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA"
SUFFIX_TEST = "vWCgMp3A"
SUFFIX_LIVE = "MqCvchyS"
FAPI = "clerk.inspired.puma-74.lcl.dev"
KID = "ins_2GIoQhbUpy0hX7B2cVkuTMinXoD"
IAT = 1_666_648_250
NOW = float(IAT)
USER_ID = "user_2GIpXOEpVyJw51rkZn9Kmnc6Sxr"
SESSION_ID = "sess_2GbDB4enNdCa5vS1zpC3Xzg9tK9"
AZP = "https://accounts.inspired.puma-74.lcl.dev"


def private_key(name: str = "main") -> RSAPrivateKey:
    """One RSA key per name for the whole test session (generation is slow)."""
    return _private_key(name)


@lru_cache(maxsize=8)
def _private_key(name: str) -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_set(*names: str, kids: tuple[str, ...] | None = None) -> KeySet:
    names = names or ("main",)
    kids = kids or (KID,) if len(names) == 1 else kids or tuple(f"kid_{n}" for n in names)
    return KeySet({kid: private_key(name).public_key() for kid, name in zip(kids, names, strict=True)})


def public_pem(name: str = "main") -> str:
    return (
        private_key(name)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "azp": AZP,
        "exp": IAT + 60,
        "iat": IAT,
        "iss": f"https://{FAPI}",
        "nbf": IAT - 10,
        "sid": SESSION_ID,
        "sub": USER_ID,
    }
    for name, value in overrides.items():
        if value is DROP:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


DROP = object()


def session_token(key: str = "main", kid: str | None = KID, headers: Mapping[str, Any] | None = None,
                  algorithm: str = "RS256", **overrides: Any) -> str:
    header: dict[str, Any] = {"kid": kid} if kid is not None else {}
    header.update(headers or {})
    return jwt.encode(claims(**overrides), private_key(key), algorithm=algorithm, headers=header)


def unsigned_token(header: Mapping[str, Any], payload: Mapping[str, Any], signature: bytes = b"sig") -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return ".".join(
        (part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature))
    )


def tampered(token: str, **payload_overrides: Any) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(payload_overrides)
    new_payload = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
    return f"{header}.{new_payload}.{signature}"


def options(pk: str = PK_TEST, **overrides: Any) -> ClerkOptions:
    base = ClerkOptions(publishable_key=parse_publishable_key(pk), secret_key="sk_test_deadbeef")
    return replace(base, **overrides)


def request(
    url: str = "http://clerk.com/path",
    method: str = "GET",
    cookies: Mapping[str, str] | str | None = None,
    headers: Mapping[str, str] | None = None,
    dest: str | None = "document",
) -> RequestView:
    merged: dict[str, str] = {"host": "example.com", "user-agent": "Mozilla/TestAgent"}
    if dest is not None:
        merged["sec-fetch-dest"] = dest
    if cookies:
        merged["cookie"] = cookies if isinstance(cookies, str) else "; ".join(f"{k}={v}" for k, v in cookies.items())
    for name, value in (headers or {}).items():
        if value is None:
            merged.pop(name.lower(), None)
        else:
            merged[name.lower()] = value
    return RequestView.build(method, url, merged)


@dataclass
class Backend:
    """Canned answers to the core's asks, recording every ask."""

    keys: KeySet = field(default_factory=key_set)
    keys_answer: KeysAnswer | None = None
    refresh: ApiResponse | None = None
    handshake_payload: ApiResponse | None = None
    asks: list[Ask] = field(default_factory=list)

    def __call__(self, ask: Ask) -> Answer:
        self.asks.append(ask)
        if isinstance(ask, FetchKeys):
            return self.keys_answer or KeysAnswer(self.keys)
        if isinstance(ask, RefreshSession):
            return self.refresh or ApiResponse(status=None)
        if isinstance(ask, FetchHandshakePayload):
            return self.handshake_payload or ApiResponse(status=404, body={"errors": [{"code": "not_found"}]})
        raise AssertionError(f"unexpected ask {ask!r}")

    def asked(self, kind: type) -> list[Any]:
        return [ask for ask in self.asks if isinstance(ask, kind)]


def run(
    req: RequestView,
    opts: ClerkOptions | None = None,
    *,
    now: float = NOW,
    backend: Backend | None = None,
    initial_keys: KeySet | None = None,
    cache: VerifiedTokenCache | None = None,
) -> AuthState:
    backend = backend or Backend()
    keys = backend.keys if initial_keys is None else initial_keys
    return decide(req, opts or options(), keys, now, backend, cache)
