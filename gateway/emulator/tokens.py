"""Minting session tokens for a session: picks the organization claims and signs with the key ring."""

from __future__ import annotations

from gateway.emulator.claims import OrganizationClaims, session_claims
from gateway.emulator.signing import KeyRing
from gateway.emulator.state import EmulatorState, Session


def organization_claims(state: EmulatorState, session: Session) -> OrganizationClaims | None:
    if session.last_active_organization_id is None:
        return None
    organization = state.seed.organization(session.last_active_organization_id)
    membership = state.seed.membership(session.user_id, session.last_active_organization_id)
    if organization is None or membership is None:
        return None
    return OrganizationClaims(
        id=organization.id, slug=organization.slug, role=membership.role, permissions=membership.permissions
    )


def mint_session_token(
    state: EmulatorState, keys: KeyRing, session: Session, *, authorized_party: str | None, issuer: str
) -> str:
    now = state.now()
    state.count("token")
    claims = session_claims(
        issuer=issuer,
        user_id=session.user_id,
        session_id=session.id,
        authorized_party=authorized_party,
        issued_at=now,
        lifetime=state.config.token_lifetime,
        factor_verification_age_minutes=max(0, (now - session.factor_verified_at) // 60),
        organization=organization_claims(state, session),
    )
    user = state.seed.user(session.user_id)
    if user is not None:  # custom claims never replace Clerk's own
        claims.update({name: value for name, value in user.session_claims.items() if name not in claims})
    state.touch(session)
    return keys.sign(claims)
