"""From verified session-token claims to the identity the app sees (PROTOCOL.md §7.2).

Both token versions: v1 carries flat `org_*` claims; v2 (`v: 2`) packs the organization into `o`,
with permissions spread over `o.per`, `o.fpm` bitmasks and the `fea` feature list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.clerk.errors import ClerkProtocolError

_DECIMAL = re.compile(r"[0-9]+")


class ClaimsError(ClerkProtocolError):
    """Malformed organization claims: Clerk's `toAuth` throws, the cookie path answers `unexpected-error`."""


@dataclass(frozen=True, slots=True)
class SessionClaims:
    user_id: str | None
    session_id: str | None
    session_status: str | None
    org_id: str | None
    org_role: str | None
    org_slug: str | None
    org_permissions: tuple[str, ...]
    actor: Any
    factor_verification_age: tuple[int, int] | None
    authorized_party: str | None
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Every verified claim, custom session claims included (route rules may match any of them)."""

    @property
    def is_pending(self) -> bool:
        return self.session_status == "pending"

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "session_id": self.session_id,
            "session_status": self.session_status,
            "org_id": self.org_id,
            "org_role": self.org_role,
            "org_slug": self.org_slug,
            "org_permissions": list(self.org_permissions),
            "actor": self.actor,
        }


def _js_truthy(value: Any) -> bool:
    """JavaScript truthiness: objects and arrays are truthy even when empty."""
    if isinstance(value, dict | list):
        return True
    return bool(value)


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_claims(payload: dict[str, Any]) -> SessionClaims:
    """Raise `ClaimsError` exactly where Clerk's payload parser would throw."""
    org_id: str | None
    org_role: str | None
    org_slug: str | None
    permissions: tuple[str, ...]
    organization = payload.get("o")
    if payload.get("v") == 2 and _js_truthy(organization):
        org = organization if isinstance(organization, dict) else {}
        org_id = _string(org.get("id"))
        org_slug = _string(org.get("slg"))
        role = org.get("rol")
        org_role = f"org:{role}" if isinstance(role, str) and role else None
        permissions = _v2_permissions(payload.get("fea"), org.get("per"), org.get("fpm"))
    else:
        org_id = _string(payload.get("org_id"))
        org_role = _string(payload.get("org_role"))
        org_slug = _string(payload.get("org_slug"))
        raw_permissions = payload.get("org_permissions")
        permissions = (
            tuple(p for p in raw_permissions if isinstance(p, str)) if isinstance(raw_permissions, list) else ()
        )
    fva = payload.get("fva")
    factor_age = (
        (int(fva[0]), int(fva[1]))
        if isinstance(fva, list) and len(fva) == 2 and all(isinstance(x, int) for x in fva)
        else None
    )
    return SessionClaims(
        user_id=_string(payload.get("sub")),
        session_id=_string(payload.get("sid")),
        session_status=_string(payload.get("sts")),
        org_id=org_id,
        org_role=org_role,
        org_slug=org_slug,
        org_permissions=permissions,
        actor=payload.get("act"),
        factor_verification_age=factor_age,
        authorized_party=_string(payload.get("azp")),
        payload=payload,
    )


def _split_list(value: Any, claim: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str):
        raise ClaimsError(f"Invalid {claim} claim: expected a comma-separated string.")
    return [item.strip() for item in value.split(",")]


def _v2_permissions(features: Any, permission_names: Any, feature_masks: Any) -> tuple[str, ...]:
    org_features: list[str] = []
    for entry in _split_list(features, "fea"):
        scope, separator, feature = entry.partition(":")
        if not separator:
            raise ClaimsError(f"Invalid fea claim entry {entry!r}: expected scope:feature.")
        if scope in ("o", "ou", "uo"):
            org_features.append(feature)
    names = _split_list(permission_names, "o.per") if permission_names is not None else []
    masks = _split_list(feature_masks, "o.fpm") if feature_masks is not None else []
    if permission_names is None or feature_masks is None:
        return ()
    permissions: list[str] = []
    for index, feature in enumerate(org_features):
        if index >= len(masks) or not _DECIMAL.fullmatch(masks[index]):
            continue
        mask = int(masks[index])
        for bit, name in enumerate(names):
            if mask >> bit & 1:
                permissions.append(f"org:{feature}:{name}")
    return tuple(permissions)
