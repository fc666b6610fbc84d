"""What the core needs to know about the instance: Clerk's SDK options, already validated.

Built once at startup by `gateway.settings`; the core never reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.clerk.keys import PublishableKey
from gateway.clerk.token_types import AcceptsToken

CLERK_API_VERSION = "2026-05-12"
DEFAULT_API_URL = "https://api.clerk.com"
DEFAULT_CLOCK_SKEW_MS = 5000


@dataclass(frozen=True, slots=True)
class OrganizationSyncOptions:
    """Path patterns (path-to-regexp style, e.g. `/orgs/:slug/(.*)`) that pin the active organization."""

    organization_patterns: tuple[str, ...] = ()
    personal_account_patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClerkOptions:
    """The options `authenticateRequest` takes (PROTOCOL.md §1.2), as plain validated values."""

    publishable_key: PublishableKey
    secret_key: str | None = field(default=None, repr=False)
    jwt_key: RSAPublicKey | None = None
    api_url: str = DEFAULT_API_URL
    api_version: str = "v1"
    proxy_url: str | None = None
    domain: str | None = None
    is_satellite: bool = False
    sign_in_url: str | None = None
    sign_up_url: str | None = None
    authorized_parties: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()
    clock_skew_ms: int = DEFAULT_CLOCK_SKEW_MS
    satellite_auto_sync: bool = False
    organization_sync: OrganizationSyncOptions | None = None
    # Where the Frontend API really answers when it is not https://<host from the key>, e.g. an
    # http emulator on loopback. Used for the handshake URL base only; `iss` checks keep the key's host.
    frontend_api_url: str | None = None
    # Clerk refreshes an expired token only on GET (PROTOCOL.md §3.3). Apps without Clerk's browser SDK
    # never refresh tokens themselves, so their fetch/XHR POSTs would be signed out after a minute:
    # the gateway extends the refresh to every method when this is set (the edge turns it on).
    refresh_any_method: bool = False
    # Clerk follows `__clerk_redirect_url` on a development primary wherever it points (row D5). When
    # this is set (the edge sets it), only the request's own origin and these origins are followed.
    allowed_redirect_origins: tuple[str, ...] | None = None
    # `acceptsToken` (PROTOCOL.md §10): which tokens the decision takes; a route may ask for others.
    accepts_token: AcceptsToken = "session_token"

    @property
    def is_production(self) -> bool:
        return self.publishable_key.is_production

    @property
    def cookie_suffix(self) -> str:
        return self.publishable_key.cookie_suffix

    @property
    def original_frontend_api(self) -> str:
        """The Frontend API host ignoring `proxy_url` (PROTOCOL.md §1.1)."""
        if self.is_production and self.domain and self.is_satellite:
            return f"clerk.{self.domain}"
        return self.publishable_key.frontend_api
