"""Identity for the app: the headers it reads, an optional signed assertion, and spoof removal.

One encoding of identity values for every entrance (proxy, forward-auth, WebSocket): a value of
printable ASCII without `%` or an outer space travels as it is (Clerk ids, roles, permissions, most
slugs); any other value travels percent-encoded as UTF-8 (`%` as `%25`, space as `%20`, control
characters, non-ASCII), so a
header is always one valid line and the app recovers the text with one URL-decoding. The signed
assertion carries the values as they are (JSON).

Every identity header name (and its underscore twin, which some servers fold into the same CGI
variable) is removed from the client's request before ours are added, so the app can trust them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import quote

import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.clerk.machine import MachineIdentity
from gateway.settings import IdentityHeaders

ASSERTION_HEADER = "X-Gateway-Identity-Assertion"
ASSERTION_LIFETIME = 60
ASSERTION_ISSUER = "session-gateway"
_MEMO_SIZE = 10_000


def spoofable_names(headers: IdentityHeaders, extra: tuple[str, ...] = ()) -> frozenset[bytes]:
    """Lower-case names to strip from client requests, dash and underscore spellings both."""
    names: set[bytes] = set()
    for name in (*headers.names(), ASSERTION_HEADER, *extra):
        lowered = name.lower()
        names.add(lowered.encode("latin-1"))
        names.add(lowered.replace("-", "_").encode("latin-1"))
    return frozenset(names)


class IdentityAsserter:
    """Signs a short-lived JWT of the identity with the gateway's own key; one signature per token."""

    def __init__(self, private_key: PrivateKeyTypes, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(private_key, RSAPrivateKey | EllipticCurvePrivateKey | Ed25519PrivateKey):
            raise TypeError(f"unsupported assertion key type {type(private_key).__name__}")
        self._key: RSAPrivateKey | EllipticCurvePrivateKey | Ed25519PrivateKey = private_key
        self._clock = clock
        self.algorithm, self._public_jwk = _algorithm_and_jwk(private_key)
        self.kid = jwt.utils.base64url_encode(json.dumps(self._public_jwk, sort_keys=True).encode()[:24]).decode()
        self._cache: TTLCache[str, str] = TTLCache(maxsize=10_000, ttl=ASSERTION_LIFETIME // 2, timer=clock)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}]}

    def assertion(self, token: str, claims: SessionClaims) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        now = int(self._clock())
        payload = {
            "iss": ASSERTION_ISSUER,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "sub": claims.user_id,
            "sid": claims.session_id,
            "org_id": claims.org_id,
            "org_role": claims.org_role,
            "org_slug": claims.org_slug,
            "org_permissions": list(claims.org_permissions),
        }
        signed = jwt.encode(payload, self._key, algorithm=self.algorithm, headers={"kid": self.kid})
        self._cache[token] = signed
        return signed

    def machine_assertion(self, token: str, machine: MachineIdentity) -> str:
        """The assertion for a machine token: who it is (`sub`, its owner) and what it may do."""
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        now = int(self._clock())
        payload = {
            "iss": ASSERTION_ISSUER,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
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
            payload["exp"] = min(payload["exp"], int(machine.expiration_ms // 1000))
        signed = jwt.encode(payload, self._key, algorithm=self.algorithm, headers={"kid": self.kid})
        self._cache[token] = signed
        return signed


def _algorithm_and_jwk(private_key: PrivateKeyTypes) -> tuple[str, dict[str, str]]:
    if isinstance(private_key, RSAPrivateKey):
        return "RS256", RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    if isinstance(private_key, EllipticCurvePrivateKey):
        algorithm = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[private_key.curve.name]
        return algorithm, ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    if isinstance(private_key, Ed25519PrivateKey):
        return "EdDSA", OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    raise TypeError(f"unsupported assertion key type {type(private_key).__name__}")


class IdentityHeaderWriter:
    """Turns a decision into the request headers the app receives."""

    def __init__(self, names: IdentityHeaders, asserter: IdentityAsserter | None = None) -> None:
        self._names = {
            field: getattr(names, field).lower().encode("latin-1")
            for field in (
                "status",
                "reason",
                "user_id",
                "session_id",
                "org_id",
                "org_role",
                "org_slug",
                "org_permissions",
                "token_type",
                "token_id",
                "machine_id",
                "scopes",
                "api_key_name",
                "api_key_claims",
                "oauth_client_id",
            )
        }
        self._asserter = asserter
        self.strip = spoofable_names(names)
        self._by_token: dict[str, list[tuple[bytes, bytes]]] = {}

    def headers_for(self, state: AuthState, *, pending_signed_in: bool = False) -> list[tuple[bytes, bytes]]:
        """The app's identity headers; a signed-in token's are built once and reused (without assertion).
        `pending_signed_in`: a route let a pending session in, so the app gets its identity, with the
        reason `session-pending`."""
        token = state.token
        if pending_signed_in:
            return self._build(state, pending_signed_in=True)
        if token is not None and state.status == "signed-in" and self._asserter is None:
            cached = self._by_token.get(token)
            if cached is None:
                cached = self._build(state)
                if len(self._by_token) >= _MEMO_SIZE:
                    self._by_token.clear()
                self._by_token[token] = cached
            return list(cached)
        return self._build(state)

    def _build(self, state: AuthState, *, pending_signed_in: bool = False) -> list[tuple[bytes, bytes]]:
        names = self._names
        if state.machine is not None and state.is_signed_in:
            return self._build_machine(state.machine, state.token)
        claims = state.claims if state.is_signed_in else None
        let_in = claims is not None and (not claims.is_pending or pending_signed_in)
        status = "signed-in" if claims is not None and claims.user_id and let_in else "signed-out"
        result = [(names["status"], status.encode())]
        reason = state.reason or ("session-pending" if claims is not None and claims.is_pending else "")
        if reason:
            result.append((names["reason"], encode_identity_value(reason)))
        if claims is None or status != "signed-in":
            return result
        result += self._present(
            ("user_id", claims.user_id),
            ("session_id", claims.session_id),
            ("org_id", claims.org_id),
            ("org_role", claims.org_role),
            ("org_slug", claims.org_slug),
            ("org_permissions", ",".join(claims.org_permissions)),
        )
        if self._asserter is not None and state.token is not None:
            result.append((ASSERTION_HEADER.lower().encode(), self._asserter.assertion(state.token, claims).encode()))
        return result

    def _present(self, *fields: tuple[str, str | None]) -> list[tuple[bytes, bytes]]:
        """The headers of the fields that have a value (an absent identity stays absent), encoded."""
        return [(self._names[field], encode_identity_value(value)) for field, value in fields if value]

    def _build_machine(self, machine: MachineIdentity, token: str | None) -> list[tuple[bytes, bytes]]:
        names = self._names
        result = [(names["status"], b"signed-in"), (names["token_type"], machine.token_type.encode())]
        result += self._present(
            ("token_id", machine.id),
            ("user_id", machine.user_id),
            ("org_id", machine.org_id),
            ("machine_id", machine.machine_id),
            ("api_key_name", machine.name),
            ("oauth_client_id", machine.client_id),
            ("scopes", ",".join(machine.scopes)),
        )
        if machine.token_type == "api_key" and machine.claims is not None:
            claims = json.dumps(machine.claims, separators=(",", ":"), ensure_ascii=False)
            result.append((names["api_key_claims"], encode_identity_value(claims)))
        if self._asserter is not None and token is not None:
            result.append(
                (ASSERTION_HEADER.lower().encode(), self._asserter.machine_assertion(token, machine).encode())
            )
        return result


def encode_identity_value(value: str) -> bytes:
    """See the module docstring: as it is when printable ASCII without `%`, else percent-encoded UTF-8."""
    if value.isascii() and value.isprintable() and "%" not in value and value.strip(" ") == value:
        return value.encode("ascii")
    return quote(value, safe=_SAFE_IN_IDENTITY, errors="surrogatepass").encode("ascii")  # JSON allows lone surrogates


# Printable ASCII but `%` and space: what `encode_identity_value` leaves as it is inside an encoded value.
_SAFE_IN_IDENTITY = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) != "%")
