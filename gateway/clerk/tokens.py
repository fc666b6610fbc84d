"""Session JWT decoding and verification, in Clerk's order and with Clerk's reasons and messages.

PROTOCOL.md §7.1 (order of checks), §7.4 (PEM key), §7.5 (messages). Signatures are checked with
PyJWT's RSA algorithm objects on keys parsed once elsewhere; nothing here parses keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from gateway.clerk.errors import ClerkProtocolError

ACTION_VALID_JWT: Final = "Make sure that this is a valid Clerk-generated JWT."
SESSION_CATEGORIES: Final = frozenset({"cl_B7d4PD111AAA", "cl_I7d4PD111III"})
M2M_CATEGORY: Final = "cl_B7d4PD333AAA"
MACHINE_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
SUPPORTED_ALGORITHMS: Final = ("RS256", "RS384", "RS512")
_VERIFIERS: Final = {
    "RS256": RSAAlgorithm(RSAAlgorithm.SHA256),
    "RS384": RSAAlgorithm(RSAAlgorithm.SHA384),
    "RS512": RSAAlgorithm(RSAAlgorithm.SHA512),
}
PEM_ALG_MISMATCH_MESSAGE: Final = (
    'Error verifying JWT signature. Error: JWK "alg" does not match the requested algorithm'
)


class TokenVerificationError(ClerkProtocolError):
    """A token failed a check; `full_message` renders Clerk's `x-clerk-auth-message` text."""

    def __init__(self, reason: str, message: str, action: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.action = action

    def full_message(self, carrier: str | None) -> str:
        text = f"{self.message} {self.action}" if self.action else self.message
        carrier_text = carrier if carrier is not None else "undefined"
        return f"{text} (reason={self.reason}, token-carrier={carrier_text})"


@dataclass(frozen=True, slots=True)
class DecodedJwt:
    """A JWT split and decoded, signature not yet checked."""

    raw: str
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) and kid else None


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _b64url_decode(segment: str) -> bytes:
    """Strict base64url (padding optional): `+`, `/` or stray bytes make the token undecodable, as in Clerk."""
    if _BASE64URL.fullmatch(segment) is None:
        raise ValueError("not base64url")
    stripped = segment.rstrip("=")
    decoded = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped.encode("ascii"):
        raise ValueError("non-canonical base64url (unused bits set)")
    return decoded


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_jwt(token: str) -> DecodedJwt:
    """Split and decode; `token-invalid` with Clerk's two messages when the form is wrong."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenVerificationError(
            "token-invalid", "Invalid JWT form. A JWT consists of three parts separated by dots."
        )
    try:
        header = json.loads(_b64url_decode(parts[0]), parse_constant=_reject_constant)
        payload = json.loads(_b64url_decode(parts[1]), parse_constant=_reject_constant)
        signature = _b64url_decode(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as error:
        raise TokenVerificationError(
            "token-invalid", "Invalid JWT form. The header, payload, or signature could not be decoded."
        ) from error
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise TokenVerificationError(
            "token-invalid", "Invalid JWT form. The header, payload, or signature could not be decoded."
        )
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", errors="replace")
    return DecodedJwt(token, header, payload, signing_input, signature)


def try_decode(token: str | None) -> DecodedJwt | None:
    if not token:
        return None
    try:
        return decode_jwt(token)
    except TokenVerificationError:
        return None


def is_non_session_token(decoded: DecodedJwt) -> bool:
    """Machine JWTs and non-session categories (PROTOCOL.md §7.1, pre-checks): `token-type-mismatch`."""
    subject = decoded.payload.get("sub")
    if isinstance(subject, str) and subject.startswith("mch_"):
        return True
    typ = decoded.header.get("typ")
    if isinstance(typ, str) and typ in MACHINE_TYPES:
        return True
    if "cat" not in decoded.header:
        return False
    category = decoded.header["cat"]
    return not isinstance(category, str) or category not in SESSION_CATEGORIES


def js_json(value: Any, present: bool = True) -> str:
    """`JSON.stringify` as Clerk's messages print claims (`undefined` when absent)."""
    if not present:
        return "undefined"
    return json.dumps(_js_numbers(value), separators=(",", ":"), ensure_ascii=False)


def _js_numbers(value: Any) -> Any:
    """JavaScript prints whole floats without `.0`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_js_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _js_numbers(item) for key, item in value.items()}
    return value


def whole_seconds_ms(value: int | float) -> float:
    """A claim truncated toward zero to whole seconds, in milliseconds (infinite values stay infinite)."""
    if isinstance(value, float) and not math.isfinite(value):
        return value
    try:
        return float(math.trunc(value)) * 1000.0  # as JavaScript: past the largest double, ±Infinity
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def utc_string(epoch_ms: float) -> str:
    """JavaScript's `Date.prototype.toUTCString()` (RFC 7231 IMF-fixdate)."""
    try:
        moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return "Invalid Date"
    return format_datetime(moment, usegmt=True)


def is_js_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_header(decoded: DecodedJwt) -> str:
    """`typ` then `alg` (steps 4-5); returns the algorithm."""
    typ = decoded.header.get("typ", None)
    if "typ" in decoded.header and typ != "JWT":
        raise TokenVerificationError(
            "token-invalid", f'Invalid JWT type {js_json(typ)}. Expected "JWT".', ACTION_VALID_JWT
        )
    return check_algorithm(decoded)


def check_algorithm(decoded: DecodedJwt) -> str:
    """Step 5 alone (machine JWTs check their own `typ`); returns the algorithm."""
    alg = decoded.header.get("alg")
    if alg not in SUPPORTED_ALGORITHMS:
        raise TokenVerificationError(
            "token-invalid-algorithm",
            f"Invalid JWT algorithm {js_json(alg, 'alg' in decoded.header)}. Supported: RS256,RS384,RS512.",
            ACTION_VALID_JWT,
        )
    return str(alg)


def check_signature(decoded: DecodedJwt, key: RSAPublicKey, algorithm: str) -> None:
    """Step 6. Clerk's keys are RS256 JWKs, which Web Crypto refuses to use with another hash."""
    if algorithm != "RS256":
        raise TokenVerificationError("token-verification-failed", PEM_ALG_MISMATCH_MESSAGE, ACTION_VALID_JWT)
    try:
        valid = _VERIFIERS[algorithm].verify(decoded.signing_input, key, decoded.signature)
    except (ValueError, TypeError) as error:
        raise TokenVerificationError(
            "token-verification-failed", f"Error verifying JWT signature. {error}", ACTION_VALID_JWT
        ) from error
    if not valid:
        raise TokenVerificationError("token-invalid-signature", "JWT signature is invalid.")


def check_subject(payload: dict[str, Any]) -> None:
    subject = payload.get("sub")
    if not isinstance(subject, str):
        raise TokenVerificationError(
            "token-verification-failed",
            f"Subject claim (sub) is required and must be a string. Received {js_json(subject, 'sub' in payload)}.",
            ACTION_VALID_JWT,
        )


def check_claims(
    payload: dict[str, Any],
    *,
    now_ms: int,
    clock_skew_ms: int,
    authorized_parties: tuple[str, ...],
    audience: tuple[str, ...],
) -> None:
    """Steps 8-12: everything that depends on the request's clock or settings (re-run on cache hits)."""
    if audience and "aud" in payload and payload["aud"]:
        claimed = payload["aud"]
        claimed_list = claimed if isinstance(claimed, list) else [claimed]
        if not any(item in audience for item in claimed_list):
            raise TokenVerificationError(
                "token-verification-failed",
                f"Invalid JWT audience claim (aud) {js_json(claimed)}. Is not included in {js_json(list(audience))}.",
                ACTION_VALID_JWT,
            )
    if authorized_parties:
        azp = payload.get("azp")
        if not isinstance(azp, str) or azp not in authorized_parties:
            raise TokenVerificationError(
                "token-invalid-authorized-parties",
                f"Invalid JWT Authorized party claim (azp) {js_json(azp, 'azp' in payload)}. "
                f'Expected "{",".join(authorized_parties)}".',
            )
    exp = payload.get("exp")
    if not is_js_number(exp):
        raise TokenVerificationError(
            "token-verification-failed",
            f"Invalid JWT expiry date claim (exp) {js_json(exp, 'exp' in payload)}. Expected number.",
            ACTION_VALID_JWT,
        )
    assert exp is not None
    exp_ms = whole_seconds_ms(exp)
    if exp_ms <= now_ms - clock_skew_ms:
        raise TokenVerificationError(
            "token-expired",
            f"JWT is expired. Expiry date: {utc_string(exp_ms)}, Current date: {utc_string(now_ms)}.",
        )
    for claim, label, reason, template in (
        (
            "nbf",
            "not before date",
            "token-not-active-yet",
            "JWT cannot be used prior to not before date claim (nbf). Not before date: {d}; Current date: {n};",
        ),
        (
            "iat",
            "issued at date",
            "token-iat-in-the-future",
            "JWT issued at date claim (iat) is in the future. Issued at date: {d}; Current date: {n};",
        ),
    ):
        if claim not in payload:
            continue
        value = payload[claim]
        if not is_js_number(value):
            raise TokenVerificationError(
                "token-verification-failed",
                f"Invalid JWT {label} claim ({claim}) {js_json(value)}. Expected number.",
                ACTION_VALID_JWT,
            )
        value_ms = whole_seconds_ms(value)
        if value_ms > now_ms + clock_skew_ms:
            raise TokenVerificationError(reason, template.format(d=utc_string(value_ms), n=utc_string(now_ms)))


TIME_REASONS: Final = frozenset({"token-expired", "token-not-active-yet", "token-iat-in-the-future"})
