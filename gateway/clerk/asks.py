"""The I/O the core asks for in the middle of a decision, and the answers it expects back.

The decision is a generator (like httpx's `Auth.auth_flow`): it yields one of these asks, the driver
performs it (with httpx at the edge, with canned values in tests) and sends the answer back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.clerk.jwk import KeySet
from gateway.clerk.token_types import MachineTokenType


@dataclass(frozen=True, slots=True)
class FetchKeys:
    """The token's `kid` is not in the key set the decision started with (or none was loaded yet)."""

    kid: str | None


KeyFailureReason = Literal["secret-key-invalid", "jwk-remote-failed-to-load", "jwk-remote-invalid", "unexpected-error"]


@dataclass(frozen=True, slots=True)
class KeysAnswer:
    """The freshest key set the driver has; `failure` set when loading failed and no usable keys exist.

    A `failure.reason` of `unexpected-error` stands for a transport failure (PROTOCOL.md §7.3: not a
    token-verification error, so signed-out with an empty message, never a handshake).
    """

    keys: KeySet
    failure: KeyFailure | None = None


@dataclass(frozen=True, slots=True)
class KeyFailure:
    reason: KeyFailureReason
    message: str


@dataclass(frozen=True, slots=True)
class RefreshSession:
    """`POST {apiUrl}/v1/sessions/{session_id}/refresh?suffixed_cookies=…` (PROTOCOL.md §6.2)."""

    session_id: str
    expired_token: str
    refresh_token: str
    request_origin: str
    request_headers: dict[str, list[str]]
    suffixed_cookies: bool

    def json_body(self) -> dict[str, Any]:
        return {
            "format": "cookie",
            "expired_token": self.expired_token,
            "refresh_token": self.refresh_token,
            "request_origin": self.request_origin,
            "request_headers": self.request_headers,
        }


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """What came back from a Backend API call: `status` None means no HTTP response at all."""

    status: int | None
    body: Any = None
    body_is_json: bool = True


@dataclass(frozen=True, slots=True)
class FetchHandshakePayload:
    """`GET {apiUrl}/v1/clients/handshake_payload?nonce=…` (PROTOCOL.md §4.3 step 2)."""

    nonce: str


_VERIFY_PATHS: dict[str, tuple[str, str]] = {
    "api_key": ("/api_keys/verify", "secret"),
    "m2m_token": ("/m2m_tokens/verify", "token"),
    "oauth_token": ("/oauth_applications/access_tokens/verify", "access_token"),
}


@dataclass(frozen=True, slots=True)
class VerifyMachineToken:
    """`POST {apiUrl}/v1/{api_keys|m2m_tokens|oauth_applications/access_tokens}/verify` for an opaque
    machine token (PROTOCOL.md §10). The driver may answer from a short-lived cache of answers."""

    token_type: MachineTokenType
    token: str = field(repr=False)

    @property
    def path(self) -> str:
        return _VERIFY_PATHS[self.token_type][0]

    def json_body(self) -> dict[str, str]:
        return {_VERIFY_PATHS[self.token_type][1]: self.token}


Ask = FetchKeys | RefreshSession | FetchHandshakePayload | VerifyMachineToken
Answer = KeysAnswer | ApiResponse
