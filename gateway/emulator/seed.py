"""The seed: users, organizations, roles and memberships the emulator starts with (TOML)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


class SeedError(ValueError):
    """A seed file that cannot be used; the message names the offending entry."""


@dataclass(frozen=True, slots=True)
class SeedUser:
    id: str
    email: str
    password: str
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    image_url: str | None = None
    public_metadata: Mapping[str, Any] = field(default_factory=dict)
    session_claims: Mapping[str, Any] = field(default_factory=dict)
    """Custom claims in this user's session tokens, as a customized session token template would add."""


@dataclass(frozen=True, slots=True)
class SeedOrganization:
    id: str
    name: str
    slug: str


@dataclass(frozen=True, slots=True)
class SeedMembership:
    id: str
    user_id: str
    organization_id: str
    role: str
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Seed:
    users: tuple[SeedUser, ...]
    organizations: tuple[SeedOrganization, ...]
    memberships: tuple[SeedMembership, ...]

    def user(self, user_id: str) -> SeedUser | None:
        return next((user for user in self.users if user.id == user_id), None)

    def user_by_identifier(self, identifier: str) -> SeedUser | None:
        wanted = identifier.strip().lower()
        return next(
            (u for u in self.users if wanted in (u.email.lower(), (u.username or "").lower(), u.id.lower())),
            None,
        )

    def organization(self, id_or_slug: str) -> SeedOrganization | None:
        return next((org for org in self.organizations if id_or_slug in (org.id, org.slug)), None)

    def memberships_of_user(self, user_id: str) -> tuple[SeedMembership, ...]:
        return tuple(m for m in self.memberships if m.user_id == user_id)

    def memberships_of_organization(self, organization_id: str) -> tuple[SeedMembership, ...]:
        return tuple(m for m in self.memberships if m.organization_id == organization_id)

    def membership(self, user_id: str, organization_id: str) -> SeedMembership | None:
        return next(
            (m for m in self.memberships if m.user_id == user_id and m.organization_id == organization_id),
            None,
        )


def load_seed(path: Path | None = None) -> Seed:
    """Read a seed file, or the packaged default seed when `path` is None."""
    if path is None:
        text = resources.files("gateway.emulator").joinpath("default_seed.toml").read_text("utf-8")
        source = "default seed"
    else:
        text = path.read_text("utf-8")
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SeedError(f"{source}: not valid TOML: {error}") from error
    return parse_seed(data, source)


def parse_seed(data: dict[str, Any], source: str = "seed") -> Seed:
    users = tuple(_user(entry, f"{source}: users[{i}]") for i, entry in enumerate(data.get("users", [])))
    organizations = tuple(
        _organization(entry, f"{source}: organizations[{i}]") for i, entry in enumerate(data.get("organizations", []))
    )
    roles = {
        str(name): tuple(_strings(spec.get("permissions", []), f"{source}: roles.{name}.permissions"))
        for name, spec in dict(data.get("roles", {})).items()
    }
    user_ids = {user.id for user in users}
    org_ids = {org.id for org in organizations}
    memberships = []
    for i, entry in enumerate(data.get("memberships", [])):
        where = f"{source}: memberships[{i}]"
        user_id = _text(entry, "user", where)
        org_id = _text(entry, "organization", where)
        role = _text(entry, "role", where)
        if user_id not in user_ids:
            raise SeedError(f"{where}: unknown user {user_id!r}")
        if org_id not in org_ids:
            raise SeedError(f"{where}: unknown organization {org_id!r}")
        if not role.startswith("org:"):
            role = f"org:{role}"
        permissions = entry.get("permissions")
        granted = tuple(_strings(permissions, f"{where}.permissions")) if permissions else roles.get(role, ())
        memberships.append(
            SeedMembership(
                id=str(entry.get("id") or f"orgmem_{user_id}_{org_id}"),
                user_id=user_id,
                organization_id=org_id,
                role=role,
                permissions=granted,
            )
        )
    _unique([u.id for u in users], f"{source}: duplicate user id")
    _unique([u.email.lower() for u in users], f"{source}: duplicate user email")
    _unique([o.id for o in organizations], f"{source}: duplicate organization id")
    _unique([o.slug for o in organizations], f"{source}: duplicate organization slug")
    return Seed(users=users, organizations=organizations, memberships=tuple(memberships))


def _user(entry: dict[str, Any], where: str) -> SeedUser:
    return SeedUser(
        id=_text(entry, "id", where),
        email=_text(entry, "email", where),
        password=_text(entry, "password", where),
        first_name=entry.get("first_name"),
        last_name=entry.get("last_name"),
        username=entry.get("username"),
        image_url=entry.get("image_url"),
        public_metadata=_table(entry, "public_metadata", where),
        session_claims=_table(entry, "session_claims", where),
    )


def _table(entry: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = entry.get(key, {})
    if not isinstance(value, dict):
        raise SeedError(f"{where}: {key!r} must be a table")
    return value


def _organization(entry: dict[str, Any], where: str) -> SeedOrganization:
    org_id = _text(entry, "id", where)
    return SeedOrganization(id=org_id, name=str(entry.get("name") or org_id), slug=_text(entry, "slug", where))


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise SeedError(f"{where}: {key!r} must be a non-empty string")
    return value


def _strings(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SeedError(f"{where}: must be a list of strings")
    return list(values)


def _unique(values: list[str], message: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise SeedError(f"{message}: {value!r}")
        seen.add(value)
