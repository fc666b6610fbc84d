"""Organization sync (PROTOCOL.md §3.4): which organization a URL path pins the session to.

Patterns use path-to-regexp's syntax and defaults (case-insensitive, optional trailing slash):
`:name` matches one segment, `(regex)` is an unnamed group, everything else is literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.clerk.claims import SessionClaims
from gateway.clerk.errors import ConfigurationError
from gateway.clerk.options import OrganizationSyncOptions

_TOKEN = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)(\([^)]*\))?|\(([^)]*)\)|\*")


@dataclass(frozen=True, slots=True)
class OrganizationTarget:
    """Where the path says the session should be: an organization by id or slug, or the personal account."""

    organization_id: str | None = None
    organization_slug: str | None = None
    personal_account: bool = False

    @property
    def handshake_value(self) -> str:
        """The `organization_id` handshake parameter: id, else slug, else empty (personal account)."""
        return self.organization_id or self.organization_slug or ""

    def needs_switch(self, claims: SessionClaims) -> bool:
        if self.personal_account:
            return claims.org_id is not None
        if self.organization_id is not None:
            return self.organization_id != claims.org_id
        return self.organization_slug != claims.org_slug


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Translate a path-to-regexp pattern once; raises `ConfigurationError` on a broken one."""
    parts: list[str] = []
    position = 0
    for match in _TOKEN.finditer(pattern):
        parts.append(re.escape(pattern[position : match.start()]))
        name, custom, unnamed = match.group(1), match.group(2), match.group(3)
        if name is not None:
            inner = custom[1:-1] if custom else "[^/#?]+?"
            parts.append(f"(?P<{name}>{inner})")
        elif unnamed is not None:
            parts.append(f"(?:{unnamed})")
        else:
            parts.append(".*")
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    body = "".join(parts).rstrip("/")
    try:
        return re.compile(f"^{body}/?$", re.IGNORECASE)
    except re.error as error:
        raise ConfigurationError(
            "CLERK_ORGANIZATION_SYNC_OPTIONS", f"invalid path pattern {pattern!r}: {error}"
        ) from error


def organization_target(path: str, options: OrganizationSyncOptions | None) -> OrganizationTarget | None:
    if options is None:
        return None
    for pattern in options.organization_patterns:
        match = compile_pattern(pattern).match(path)
        if match is None:
            continue
        groups = match.groupdict()
        if groups.get("id"):
            return OrganizationTarget(organization_id=groups["id"])
        if groups.get("slug"):
            return OrganizationTarget(organization_slug=groups["slug"])
        return None
    for pattern in options.personal_account_patterns:
        if compile_pattern(pattern).match(path):
            return OrganizationTarget(personal_account=True)
    return None
