"""The kinds of token Clerk authenticates (`acceptsToken`, PROTOCOL.md §10) and how a token's kind is read.

Why a module of its own: the settings parse `accepts_token` with this vocabulary, the decision reads a
token's kind with it and the edge's route rules compare kinds; none of them should spell the prefixes.
"""

from __future__ import annotations

from typing import Final, Literal

from gateway.clerk.tokens import MACHINE_TYPES, SESSION_CATEGORIES, DecodedJwt, try_decode

TokenType = Literal["session_token", "api_key", "m2m_token", "oauth_token"]
MachineTokenType = Literal["api_key", "m2m_token", "oauth_token"]
AcceptsToken = TokenType | Literal["any"] | tuple[TokenType, ...]
"""One kind, `any`, or a list. Clerk tells a one-element list from the kind alone (row A1 runs for lists
only), so the settings keep the difference: `api_key` is a kind, `["api_key"]` a list."""

TOKEN_TYPES: Final[tuple[TokenType, ...]] = ("session_token", "api_key", "m2m_token", "oauth_token")
MACHINE_TOKEN_TYPES: Final[tuple[MachineTokenType, ...]] = ("api_key", "m2m_token", "oauth_token")

M2M_TOKEN_PREFIX: Final = "mt_"
OAUTH_TOKEN_PREFIX: Final = "oat_"
API_KEY_PREFIX: Final = "ak_"
MACHINE_SUBJECT_PREFIX: Final = "mch_"


def machine_type_by_prefix(token: str) -> MachineTokenType | None:
    """`mt_`, `oat_`, `ak_`: an opaque machine token, verified by the Backend API."""
    if token.startswith(M2M_TOKEN_PREFIX):
        return "m2m_token"
    if token.startswith(OAUTH_TOKEN_PREFIX):
        return "oauth_token"
    if token.startswith(API_KEY_PREFIX):
        return "api_key"
    return None


def is_m2m_jwt(decoded: DecodedJwt) -> bool:
    subject = decoded.payload.get("sub")
    return isinstance(subject, str) and subject.startswith(MACHINE_SUBJECT_PREFIX)


def is_oauth_jwt(decoded: DecodedJwt) -> bool:
    typ = decoded.header.get("typ")
    return isinstance(typ, str) and typ in MACHINE_TYPES


def machine_jwt_type(decoded: DecodedJwt) -> MachineTokenType | None:
    """The JWT forms: an M2M token (`sub` of a machine), else an OAuth access token (`typ: at+jwt`)."""
    if is_m2m_jwt(decoded):
        return "m2m_token"
    if is_oauth_jwt(decoded):
        return "oauth_token"
    return None


def machine_token_type(token: str, decoded: DecodedJwt | None = None) -> MachineTokenType | None:
    """Clerk's `isMachineToken` + `getMachineTokenType`: M2M (`mt_` or its JWT), then OAuth (`oat_` or
    its JWT), then an API key (`ak_`)."""
    decoded = decoded if decoded is not None else try_decode(token)
    by_jwt = machine_jwt_type(decoded) if decoded is not None else None
    if token.startswith(M2M_TOKEN_PREFIX) or by_jwt == "m2m_token":
        return "m2m_token"
    if token.startswith(OAUTH_TOKEN_PREFIX) or by_jwt == "oauth_token":
        return "oauth_token"
    if token.startswith(API_KEY_PREFIX):
        return "api_key"
    return None


def header_token_type(token: str | None) -> TokenType:
    """The kind row A1 compares with the list: a machine kind, else a session (no token: a session)."""
    if token is None:
        return "session_token"
    return machine_token_type(token) or "session_token"


def has_non_session_category(decoded: DecodedJwt) -> bool:
    """A JOSE `cat` other than a session's (absent is a session)."""
    if "cat" not in decoded.header:
        return False
    category = decoded.header["cat"]
    return not isinstance(category, str) or category not in SESSION_CATEGORIES


def is_accepted(token_type: TokenType, accepts: AcceptsToken) -> bool:
    """Clerk's `isTokenTypeAccepted`."""
    if accepts == "any":
        return True
    return token_type in accepts if isinstance(accepts, tuple) else token_type == accepts
