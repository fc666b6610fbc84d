"""Machine tokens (PROTOCOL.md §10): what a verified one says, how the Backend API's answer about an
opaque one is read, and how the JWT forms are verified locally.

Opaque tokens (`ak_`, `mt_`, `oat_`) are verified by the Backend API (the decision asks
`VerifyMachineToken`); M2M JWTs (`sub` of a machine) and OAuth JWTs (`typ: at+jwt`) are checked here
with the instance's keys, as `@clerk/backend` does. Errors carry Clerk's codes (`token-invalid`,
`secret-key-invalid`, `unexpected-error`, `token-verification-failed`) and its message format.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from gateway.clerk.asks import ApiResponse, FetchKeys, KeysAnswer
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.options import ClerkOptions
from gateway.clerk.token_types import MachineTokenType, is_m2m_jwt, is_oauth_jwt
from gateway.clerk.tokens import (
    M2M_CATEGORY,
    DecodedJwt,
    TokenVerificationError,
    check_algorithm,
    check_claims,
    check_header,
    check_signature,
    check_subject,
    decode_jwt,
    is_js_number,
    js_json,
)
from gateway.clerk.verify import KeyRing, KeyTransportError, resolve_key

OAUTH_JWT_TYPES = ("at+jwt", "application/at+jwt")

_NOT_FOUND_MESSAGES: dict[str, str] = {
    "api_key": "API key not found",
    "m2m_token": "Machine token not found",
    "oauth_token": "OAuth token not found",
}


class MachineTokenError(ClerkProtocolError):
    """Clerk's `MachineTokenVerificationError`: a code (the state's reason), a message and the HTTP status."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.status = status

    def full_message(self) -> str:
        """`getFullMessage()`: `<message> (code=<code>, status=<status or n/a>)`."""
        return f"{self.message} (code={self.reason}, status={self.status or 'n/a'})"


@dataclass(frozen=True, slots=True)
class MachineIdentity:
    """What a verified machine token says about its caller (Clerk's machine auth objects)."""

    token_type: MachineTokenType
    id: str
    subject: str
    scopes: tuple[str, ...] = ()
    claims: Any = None
    name: str | None = None  # API keys
    client_id: str | None = None  # OAuth access tokens
    expiration_ms: float | None = None

    @property
    def user_id(self) -> str | None:
        """An OAuth token's subject; an API key's when it is a user's (Clerk's `userId`)."""
        if self.token_type == "oauth_token":
            return self.subject
        return self.subject if self.token_type == "api_key" and self.subject.startswith("user_") else None

    @property
    def org_id(self) -> str | None:
        return self.subject if self.token_type == "api_key" and self.subject.startswith("org_") else None

    @property
    def machine_id(self) -> str | None:
        """An M2M token's subject (Clerk's `machineId`); also a machine's own API key's (the gateway's)."""
        if self.token_type == "m2m_token":
            return self.subject
        return self.subject if self.subject.startswith("mch_") else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "token_type": self.token_type,
            "id": self.id,
            "subject": self.subject,
            "scopes": list(self.scopes),
            "claims": self.claims,
            "name": self.name,
            "client_id": self.client_id,
        }


# ---------------------------------------------------------------------------------------------- #
# Opaque tokens: the Backend API's answer


def identity_from_answer(
    token_type: MachineTokenType, reply: ApiResponse, audience: tuple[str, ...] = ()
) -> MachineIdentity:
    """Clerk's `verifyAPIKey` / `verifyM2MToken` / `verifyOAuthToken` on the Backend API's answer:
    401 → `secret-key-invalid`, 404 → `token-invalid`, any other failure → `unexpected-error`; an
    OAuth token must name one of `audience` in its `aud` when one is configured."""
    status = reply.status
    if status is None:
        raise MachineTokenError("unexpected-error", "Unexpected error")
    body = reply.body if isinstance(reply.body, dict) else None
    if status == 401:
        raise MachineTokenError("secret-key-invalid", _first_error_message(body) or "Invalid secret key", status)
    if status == 404:
        raise MachineTokenError("token-invalid", _NOT_FOUND_MESSAGES[token_type], status)
    if not 200 <= status < 300 or body is None:
        raise MachineTokenError("unexpected-error", "Unexpected error", status)
    token_id, subject = body.get("id"), body.get("subject")
    if not isinstance(token_id, str) or not isinstance(subject, str):
        # e.g. an OAuth JWT sent to the opaque endpoint answers `{"active": false}`
        raise MachineTokenError("token-invalid", _NOT_FOUND_MESSAGES[token_type], status)
    if token_type == "oauth_token":
        _check_oauth_audience(body.get("aud"), "aud" in body, audience)
    expiration = body.get("expiration")
    return MachineIdentity(
        token_type=token_type,
        id=token_id,
        subject=subject,
        scopes=_strings(body.get("scopes")),
        claims=body.get("claims"),
        name=body.get("name") if isinstance(body.get("name"), str) else None,
        client_id=body.get("client_id") if isinstance(body.get("client_id"), str) else None,
        expiration_ms=_milliseconds(expiration, 1),
    )


def _first_error_message(body: dict[str, Any] | None) -> str | None:
    errors = body.get("errors") if body is not None else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message")
        if isinstance(message, str) and message:
            return message
    return None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _check_oauth_audience(aud: Any, present: bool, audience: tuple[str, ...]) -> None:
    """`assertOAuthAudienceClaim`: stricter than a session's `aud` check, a token without `aud` fails."""
    if not audience:
        return
    claimed = (aud if isinstance(aud, list) else [aud]) if aud else None
    if not isinstance(claimed, list) or not all(isinstance(item, str) and item for item in claimed):
        raise MachineTokenError(
            "token-verification-failed",
            f"Invalid OAuth audience claim (aud) {js_json(aud, present)}. "
            "Expected a non-empty string or a non-empty array of non-empty strings.",
        )
    if not any(item in audience for item in claimed):
        raise MachineTokenError(
            "token-verification-failed",
            f"OAuth audience mismatch. Verification expected audience {js_json(list(audience))}, "
            f"but incoming token has aud {js_json(aud, present)}.",
        )


# ---------------------------------------------------------------------------------------------- #
# JWT forms: verified with the instance's keys (`verifyMachineAuthToken`, `verifyM2MJwt`, `verifyOAuthJwt`)

_JWT_FORMAT = re.compile(r"[a-zA-Z0-9\-_]+\.[a-zA-Z0-9\-_]+\.[a-zA-Z0-9\-_]+")


def is_jwt_format(token: str) -> bool:
    """Clerk's `isJwtFormat`: three dot-separated base64url runs (such a token is never sent to the API)."""
    return _JWT_FORMAT.fullmatch(token) is not None


def verify_machine_jwt(
    token: str, options: ClerkOptions, ring: KeyRing, now_ms: int
) -> Generator[FetchKeys, KeysAnswer, MachineIdentity]:
    """A JWT-format machine token: an M2M JWT (`sub` of a machine) or an OAuth JWT (`typ: at+jwt`)."""
    try:
        decoded = decode_jwt(token)
    except TokenVerificationError as error:
        raise MachineTokenError("token-invalid", error.message) from error
    if is_m2m_jwt(decoded):
        if "cat" in decoded.header and decoded.header["cat"] != M2M_CATEGORY:
            raise MachineTokenError("token-invalid", "Invalid M2M JWT category.")
        yield from _verify_jwt(decoded, options, ring, now_ms, audience=options.audience)
        return _m2m_identity(decoded.payload)
    if is_oauth_jwt(decoded):
        yield from _verify_jwt(decoded, options, ring, now_ms, audience=(), oauth=True)
        payload = decoded.payload
        _check_oauth_audience(payload.get("aud"), "aud" in payload, options.audience)
        return _oauth_identity(payload)
    typ = decoded.header.get("typ")
    raise MachineTokenError(
        "token-verification-failed",
        f"Invalid JWT type: {typ if typ is not None else 'missing'}. Expected one of: "
        f"{', '.join(OAUTH_JWT_TYPES)} for OAuth, or sub starting with 'mch_' for M2M",
    )


def _verify_jwt(
    decoded: DecodedJwt,
    options: ClerkOptions,
    ring: KeyRing,
    now_ms: int,
    *,
    audience: tuple[str, ...],
    oauth: bool = False,
) -> Generator[FetchKeys, KeysAnswer, None]:
    """`resolveKeyAndVerifyJwt`: the key, then `verifyJwt` (type, algorithm, signature, `sub`, `aud`,
    time claims; no `azp`). Every failure is `token-verification-failed` with the check's message."""
    try:
        key = yield from resolve_key(decoded, options, ring)
        if oauth:
            typ = decoded.header.get("typ")
            if typ not in OAUTH_JWT_TYPES:
                shown = js_json(typ, "typ" in decoded.header)
                expected = ", ".join(OAUTH_JWT_TYPES)
                raise TokenVerificationError("token-invalid", f'Invalid JWT type {shown}. Expected "{expected}".')
            algorithm = check_algorithm(decoded)
        else:
            algorithm = check_header(decoded)
        check_signature(decoded, key, algorithm)
        check_subject(decoded.payload)
        check_claims(
            decoded.payload,
            now_ms=now_ms,
            clock_skew_ms=options.clock_skew_ms,
            authorized_parties=(),
            audience=audience,
        )
    except (TokenVerificationError, KeyTransportError) as error:
        raise MachineTokenError("token-verification-failed", error.message) from error


def _m2m_identity(payload: dict[str, Any]) -> MachineIdentity:
    """`M2MToken.fromJwtPayload`: scopes from `scopes` (space-separated), else `aud`; the other claims."""
    scopes_claim = payload.get("scopes")
    if isinstance(scopes_claim, str):
        scopes = tuple(scopes_claim.split(" "))
    else:
        scopes = _strings(payload.get("aud") if isinstance(payload.get("aud"), list) else [payload.get("aud")])
    claims = {name: value for name, value in payload.items() if name not in _M2M_RESERVED_CLAIMS}
    return MachineIdentity(
        token_type="m2m_token",
        id=_text(payload.get("jti")),
        subject=str(payload["sub"]),
        scopes=scopes,
        claims=claims,
        expiration_ms=_milliseconds(payload.get("exp")),
    )


def _oauth_identity(payload: dict[str, Any]) -> MachineIdentity:
    """`IdPOAuthAccessToken.fromJwtPayload`: scopes from `scp`, else `scope` (space-separated)."""
    scp = payload.get("scp")
    scope = payload.get("scope")
    scopes = _strings(scp) if scp is not None else tuple(scope.split(" ")) if isinstance(scope, str) else ()
    return MachineIdentity(
        token_type="oauth_token",
        id=_text(payload.get("jti")),
        subject=str(payload["sub"]),
        scopes=scopes,
        client_id=_text(payload.get("client_id")),
        expiration_ms=_milliseconds(payload.get("exp")),
    )


_M2M_RESERVED_CLAIMS = frozenset({"iss", "sub", "exp", "nbf", "iat", "jti"})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _milliseconds(value: Any, per_unit: int = 1000) -> float | None:
    return float(value) * per_unit if isinstance(value, int | float) and is_js_number(value) else None
