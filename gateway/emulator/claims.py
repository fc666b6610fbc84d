"""Claims of the session tokens the emulator mints, shaped like Clerk's v2 session tokens.

Organization permissions are packed the way Clerk packs them (PROTOCOL.md §7.2): `fea` lists the
org-scoped features (`o:<feature>`), `o.per` the distinct actions, and `o.fpm` one bitmask per
feature whose bit j grants `org:<feature>:<per[j]>`. Unpacking them must give back exactly the
seed's `org:<feature>:<action>` permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOT_BEFORE_SKEW = 10
"""Clerk backdates `nbf` by 10 seconds to absorb clock skew between servers."""


@dataclass(frozen=True, slots=True)
class OrganizationClaims:
    id: str
    slug: str
    role: str
    permissions: tuple[str, ...]


def pack_permissions(permissions: tuple[str, ...]) -> tuple[list[str], list[str], list[int]]:
    """(features, actions, bitmasks) for permissions of the form `org:<feature>:<action>`."""
    features: list[str] = []
    actions: list[str] = []
    granted: list[tuple[str, str]] = []
    for permission in permissions:
        parts = permission.split(":")
        if len(parts) != 3 or parts[0] != "org" or not parts[1] or not parts[2]:
            continue
        feature, action = parts[1], parts[2]
        if feature not in features:
            features.append(feature)
        if action not in actions:
            actions.append(action)
        granted.append((feature, action))
    masks = [0] * len(features)
    for feature, action in granted:
        masks[features.index(feature)] |= 1 << actions.index(action)
    return features, actions, masks


def session_claims(
    *,
    issuer: str,
    user_id: str,
    session_id: str,
    authorized_party: str | None,
    issued_at: int,
    lifetime: int,
    factor_verification_age_minutes: int,
    organization: OrganizationClaims | None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "azp": authorized_party,
        "exp": issued_at + lifetime,
        "fva": [factor_verification_age_minutes, -1],
        "iat": issued_at,
        "iss": issuer,
        "nbf": issued_at - NOT_BEFORE_SKEW,
        "sid": session_id,
        "sts": "active",
        "sub": user_id,
        "v": 2,
    }
    if authorized_party is None:
        del claims["azp"]
    if organization is not None:
        features, actions, masks = pack_permissions(organization.permissions)
        role = organization.role.removeprefix("org:")
        claims["o"] = {
            "id": organization.id,
            "slg": organization.slug,
            "rol": role,
            "per": ",".join(actions),
            "fpm": ",".join(str(mask) for mask in masks),
        }
        if features:  # an empty `fea` would be one element without ":", which parsers reject
            claims["fea"] = ",".join(f"o:{feature}" for feature in features)
    return claims
