"""Machine credentials the emulator issues: API keys, machines with their secret keys, M2M tokens and OAuth
access tokens, in the shapes of the Backend API spec (`/v1/api_keys*`, `/v1/machines*`, `/v1/m2m_tokens*`,
`/v1/oauth_applications/access_tokens/verify`).

Ids follow the spec's patterns (`ak_`/`mt_`/`oat_` + 32 hex digits, `mch_` + 27 word characters); the
secrets a caller presents start with the same prefixes, as Clerk's do, so the gateway tells their kind
apart. Machine secret keys start with `msk_` here. A revoked or expired credential no longer verifies
(404, as Clerk answers); JWT-format M2M tokens and OAuth access tokens are signed with the instance's
key and cannot be revoked, as in Clerk.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.emulator.clock import Clock
from gateway.emulator.signing import KeyRing

M2M_CATEGORY = "cl_B7d4PD333AAA"
OAUTH_JWT_TYPE = "at+jwt"
DEFAULT_OAUTH_CLIENT_ID = "client_emulator_oauth_app"


def _hex_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def _machine_id() -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "mch_" + "".join(secrets.choice(alphabet) for _ in range(27))


@dataclass(slots=True)
class Credential:
    """What every stored credential has: an id, the secret presented, its lifetime and revocation."""

    id: str
    secret: str
    subject: str
    scopes: list[str]
    claims: Any
    created_at_ms: int
    expiration_ms: int | None
    revoked: bool = False
    revocation_reason: str | None = None
    updated_at_ms: int = 0
    last_used_at_ms: int | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expiration_ms is not None and self.expiration_ms <= now_ms

    def valid(self, now_ms: int) -> bool:
        return not self.revoked and not self.expired(now_ms)


CredentialT = TypeVar("CredentialT", bound=Credential)


@dataclass(slots=True)
class ApiKey(Credential):
    name: str = ""
    description: str | None = None
    type: str = "api_key"
    created_by: str | None = None


@dataclass(slots=True)
class Machine:
    id: str
    name: str
    secret_key: str
    default_token_ttl: int
    created_at: int
    scoped_machines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class M2MToken(Credential):
    pass


@dataclass(slots=True)
class OAuthAccessToken(Credential):
    client_id: str = DEFAULT_OAUTH_CLIENT_ID


class MachineTokenStore:
    """The emulator's machine credentials; every method is one small transaction under the lock."""

    def __init__(self, clock: Clock, keys: KeyRing, issuer: str) -> None:
        self.clock = clock
        self.keys = keys
        self.issuer = issuer
        self.lock = threading.RLock()
        self.api_keys: dict[str, ApiKey] = {}
        self.machines: dict[str, Machine] = {}
        self.m2m_tokens: dict[str, M2MToken] = {}
        self.oauth_tokens: dict[str, OAuthAccessToken] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _expiration(self, seconds: float | None) -> int | None:
        return None if seconds is None else self.now_ms() + int(seconds * 1000)

    # -- API keys --------------------------------------------------------------------------------

    def create_api_key(
        self,
        *,
        subject: str,
        name: str,
        scopes: list[str] | None = None,
        claims: Any = None,
        description: str | None = None,
        created_by: str | None = None,
        seconds_until_expiration: float | None = None,
        key_type: str = "api_key",
    ) -> ApiKey:
        now = self.now_ms()
        key = ApiKey(
            id=_hex_id("ak"),
            secret=_secret("ak"),
            subject=subject,
            scopes=list(scopes or []),
            claims=claims,
            created_at_ms=now,
            updated_at_ms=now,
            expiration_ms=self._expiration(seconds_until_expiration),
            name=name,
            description=description,
            type=key_type,
            created_by=created_by,
        )
        with self.lock:
            self.api_keys[key.id] = key
        return key

    def list_api_keys(self, subject: str, *, include_invalid: bool = False) -> list[ApiKey]:
        now = self.now_ms()
        with self.lock:
            return [
                key for key in self.api_keys.values() if key.subject == subject and (include_invalid or key.valid(now))
            ]

    def api_key(self, key_id: str) -> ApiKey | None:
        with self.lock:
            return self.api_keys.get(key_id)

    def revoke(self, credential: Credential, reason: str | None) -> None:
        with self.lock:
            credential.revoked = True
            credential.revocation_reason = reason
            credential.updated_at_ms = self.now_ms()

    def verify_api_key(self, secret: str) -> ApiKey | None:
        return self._verify(self.api_keys, secret)

    def _verify(self, table: Mapping[str, CredentialT], secret: str) -> CredentialT | None:
        now = self.now_ms()
        with self.lock:
            wanted = secret.encode()
            found = next(
                (item for item in table.values() if secrets.compare_digest(item.secret.encode(), wanted)), None
            )
            if found is None or not found.valid(now):
                return None
            found.last_used_at_ms = now
            return found

    # -- machines and M2M tokens -------------------------------------------------------------------

    def create_machine(self, name: str, *, scoped_machines: list[str] | None = None, ttl: int = 3600) -> Machine:
        machine = Machine(
            id=_machine_id(),
            name=name,
            secret_key=_secret("msk"),
            default_token_ttl=ttl,
            created_at=self.now_ms(),
            scoped_machines=list(scoped_machines or []),
        )
        with self.lock:
            self.machines[machine.id] = machine
        return machine

    def machine(self, machine_id: str) -> Machine | None:
        with self.lock:
            return self.machines.get(machine_id)

    def machine_for_secret(self, secret: str) -> Machine | None:
        with self.lock:
            wanted = secret.encode()
            return next(
                (m for m in self.machines.values() if secrets.compare_digest(m.secret_key.encode(), wanted)), None
            )

    def create_m2m_token(
        self, machine: Machine, *, seconds_until_expiration: float | None = None, claims: Any = None
    ) -> M2MToken:
        now = self.now_ms()
        seconds = machine.default_token_ttl if seconds_until_expiration is None else seconds_until_expiration
        token = M2MToken(
            id=_hex_id("mt"),
            secret=_secret("mt"),
            subject=machine.id,
            scopes=list(machine.scoped_machines),
            claims=claims,
            created_at_ms=now,
            updated_at_ms=now,
            expiration_ms=self._expiration(seconds),
        )
        with self.lock:
            self.m2m_tokens[token.id] = token
        return token

    def m2m_jwt(
        self, machine: Machine, *, seconds_until_expiration: float | None = None, claims: Any = None
    ) -> tuple[str, str, int]:
        """A JWT-format M2M token (its id, the JWT, its expiry in ms): stateless, signed with the instance
        key, with the JOSE `cat` of a machine token."""
        now = int(self.clock())
        seconds = int(machine.default_token_ttl if seconds_until_expiration is None else seconds_until_expiration)
        token_id = _hex_id("mt")
        payload: dict[str, Any] = {
            **(claims if isinstance(claims, dict) else {}),
            "iss": self.issuer,
            "sub": machine.id,
            "jti": token_id,
            "iat": now,
            "nbf": now,
            "exp": now + seconds,
            "scopes": " ".join(machine.scoped_machines),
        }
        return (
            token_id,
            self.keys.sign_with_headers(payload, {"typ": "JWT", "cat": M2M_CATEGORY}),
            (now + seconds) * 1000,
        )

    def m2m_token(self, token_id: str) -> M2MToken | None:
        with self.lock:
            return self.m2m_tokens.get(token_id)

    def verify_m2m_token(self, secret: str) -> M2MToken | None:
        return self._verify(self.m2m_tokens, secret)

    # -- OAuth access tokens -----------------------------------------------------------------------

    def create_oauth_token(
        self,
        *,
        user_id: str,
        scopes: list[str] | None = None,
        client_id: str = DEFAULT_OAUTH_CLIENT_ID,
        seconds_until_expiration: float | None = 3600,
    ) -> OAuthAccessToken:
        now = self.now_ms()
        token = OAuthAccessToken(
            id=_hex_id("oat"),
            secret=_secret("oat"),
            subject=user_id,
            scopes=list(scopes or []),
            claims=None,
            created_at_ms=now,
            updated_at_ms=now,
            expiration_ms=self._expiration(seconds_until_expiration),
            client_id=client_id,
        )
        with self.lock:
            self.oauth_tokens[token.id] = token
        return token

    def oauth_jwt(
        self,
        *,
        user_id: str,
        scopes: list[str] | None = None,
        client_id: str = DEFAULT_OAUTH_CLIENT_ID,
        seconds_until_expiration: float = 3600,
        audience: str | None = None,
    ) -> str:
        """A JWT-format OAuth access token (`typ: at+jwt`, RFC 9068)."""
        now = int(self.clock())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user_id,
            "client_id": client_id,
            "jti": _hex_id("oat"),
            "iat": now,
            "nbf": now,
            "exp": now + int(seconds_until_expiration),
            "scope": " ".join(scopes or []),
        }
        if audience is not None:
            payload["aud"] = audience
        return self.keys.sign_with_headers(payload, {"typ": OAUTH_JWT_TYPE})

    def oauth_token(self, token_id: str) -> OAuthAccessToken | None:
        with self.lock:
            return self.oauth_tokens.get(token_id)

    def verify_oauth_token(self, secret: str) -> OAuthAccessToken | None:
        return self._verify(self.oauth_tokens, secret)


# -- the spec's shapes ----------------------------------------------------------------------------


def _credential_fields(item: Credential, now_ms: int) -> dict[str, Any]:
    return {
        "revoked": item.revoked,
        "revocation_reason": item.revocation_reason,
        "expired": item.expired(now_ms),
        "expiration": item.expiration_ms,
        "created_at": item.created_at_ms,
        "updated_at": item.updated_at_ms or item.created_at_ms,
    }


def bapi_api_key(key: ApiKey, now_ms: int, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "api_key",
        "id": key.id,
        "type": key.type,
        "subject": key.subject,
        "name": key.name,
        "description": key.description,
        "claims": key.claims,
        "scopes": list(key.scopes),
        **_credential_fields(key, now_ms),
        "created_by": key.created_by,
        "last_used_at": key.last_used_at_ms,
    }
    if with_secret:
        body["secret"] = key.secret
    return body


def bapi_m2m_token(token: M2MToken, now_ms: int, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "machine_to_machine_token",
        "id": token.id,
        "subject": token.subject,
        "claims": token.claims,
        "scopes": list(token.scopes),
        **_credential_fields(token, now_ms),
        "last_used_at": token.last_used_at_ms,
    }
    if with_secret:
        body["token"] = token.secret
    return body


def bapi_oauth_token(token: OAuthAccessToken, now_ms: int) -> dict[str, Any]:
    return {
        "object": "clerk_idp_oauth_access_token",
        "id": token.id,
        "client_id": token.client_id,
        "subject": token.subject,
        "scopes": list(token.scopes),
        **_credential_fields(token, now_ms),
    }


def bapi_machine(
    machine: Machine, store: MachineTokenStore, instance_id: str, *, with_secret: bool = False
) -> dict[str, Any]:
    def bare(item: Machine) -> dict[str, Any]:
        return {
            "object": "machine",
            "id": item.id,
            "name": item.name,
            "instance_id": instance_id,
            "created_at": item.created_at,
            "updated_at": item.created_at,
            "default_token_ttl": item.default_token_ttl,
        }

    scoped = [store.machine(other) for other in machine.scoped_machines]
    body = {**bare(machine), "scoped_machines": [bare(item) for item in scoped if item is not None]}
    if with_secret:
        body["secret_key"] = machine.secret_key
    return body
