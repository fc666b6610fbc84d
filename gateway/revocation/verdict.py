"""What a revocation does to a decision: a revoked session is signed-out, reason `session-revoked`.

The gateway's own reason, next to Clerk's: the token verified, but Clerk has said since (through a
webhook) that its session is over or its user deleted. Signed-out like any other, so a page that
needs sign-in redirects to it and a program gets a 401. Machine tokens are not session tokens and are
never affected.
"""

from __future__ import annotations

from gateway.clerk.decide import AuthState, signed_out
from gateway.revocation.deny_list import DenyList

SESSION_REVOKED = "session-revoked"

REVOKED = signed_out(SESSION_REVOKED, "Clerk revoked this session (or deleted its user) after the token was issued.")
"""The one state every revoked request gets: nothing in it depends on the request."""


def is_revoked(deny_list: DenyList, state: AuthState) -> bool:
    """Whether `state` signs in with a session token the deny list refuses."""
    claims = state.claims
    if state.status != "signed-in" or claims is None or state.machine is not None:
        return False
    issued_at = claims.payload.get("iat")
    return deny_list.is_revoked(
        claims.session_id,
        claims.user_id,
        float(issued_at) if isinstance(issued_at, int | float) and not isinstance(issued_at, bool) else None,
    )


def unless_revoked(deny_list: DenyList, state: AuthState) -> AuthState:
    """`state`, or `REVOKED` when its session was revoked; costs one attribute read while nothing is."""
    if deny_list.active and is_revoked(deny_list, state):
        return REVOKED
    return state
