"""`[clerk]`: the settings Clerk's SDKs know, under the names and environment variables they read.

Why a module of its own: these are Clerk's options (PROTOCOL.md §1.2), validated like the SDK does;
`gateway.settings.load` turns them into the core's `ClerkOptions`.
"""

# ruff: noqa: RUF009 - `setting(...)` only wraps `dataclasses.field`; the defaults are immutable.
from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.clerk.keys import PublishableKey
from gateway.clerk.options import DEFAULT_API_URL, DEFAULT_CLOCK_SKEW_MS, OrganizationSyncOptions
from gateway.settings.keys import parse_jwt_key, parse_jwt_key_file
from gateway.settings.parsing import (
    integer,
    list_of,
    parse_boolean,
    parse_clerk_publishable_key,
    parse_domain,
    parse_http_url,
    parse_http_url_or_path,
    parse_literal_true,
    parse_origin,
    parse_path_segment,
    parse_secret,
    parse_text,
    parse_webhook_signing_secret,
)
from gateway.settings.routes import parse_organization_sync
from gateway.settings.table import setting
from gateway.settings.values import PemKey, Secret


@dataclass(frozen=True, slots=True)
class ClerkSettings:
    """`[clerk]`: Clerk's SDK options under the names Clerk's SDKs read (PROTOCOL.md §1.2)."""

    publishable_key: PublishableKey | None = setting(
        None, parse_clerk_publishable_key, env="CLERK_PUBLISHABLE_KEY",
        help="Publishable key (`pk_test_…`/`pk_live_…`); names the instance and its Frontend API. Required.",
    )  # fmt: skip
    secret_key: Secret | None = setting(
        None, parse_secret, env="CLERK_SECRET_KEY",
        help="Secret key (`sk_test_…`/`sk_live_…`) for the Backend API and the Frontend API proxy. "
        "Required unless `CLERK_JWT_KEY` is set (networkless: no refresh, handshake nonce or proxy).",
    )  # fmt: skip
    webhook_signing_secret: Secret | None = setting(
        None, parse_webhook_signing_secret, env="CLERK_WEBHOOK_SIGNING_SECRET",
        help="Signing secret (`whsec_…`) of a Clerk webhook endpoint pointed at `/__gateway/webhooks/clerk`; "
        "set, revoked sessions and deleted users are refused at once (see \"Revocation through Clerk's webhooks\").",
    )  # fmt: skip
    jwt_key: PemKey[RSAPublicKey] | None = setting(
        None, parse_jwt_key, env="CLERK_JWT_KEY",
        help="PEM RSA public key for networkless verification (literal `\\n` accepted); JWKS is then never fetched.",
    )  # fmt: skip
    jwt_key_file: PemKey[RSAPublicKey] | None = setting(
        None, parse_jwt_key_file, env="CLERK_JWT_KEY_FILE",
        help="Path of a file holding `CLERK_JWT_KEY` (use one or the other).",
    )  # fmt: skip
    api_url: str = setting(DEFAULT_API_URL, parse_http_url, env="CLERK_API_URL", help="Backend API base URL.")
    api_version: str = setting("v1", parse_path_segment, env="CLERK_API_VERSION", help="Backend API path version.")
    proxy_url: str | None = setting(
        None, parse_http_url_or_path, env="CLERK_PROXY_URL",
        help="URL (absolute, or a path such as `/__clerk`) where the Frontend API is proxied; overrides its host.",
    )  # fmt: skip
    domain: str | None = setting(
        None, parse_domain, env="CLERK_DOMAIN",
        help="The satellite's own domain, optionally with `:port` (`localhost:3001`); production satellites "
        "use `clerk.<domain>`.",
    )  # fmt: skip
    is_satellite: bool = setting(
        False, parse_boolean, env="CLERK_IS_SATELLITE", help="This app runs on a satellite domain."
    )
    sign_in_url: str | None = setting(
        None, parse_http_url_or_path, env="CLERK_SIGN_IN_URL",
        help="Sign-in page signed-out visitors are sent to (default: the Account Portal, "
        "`https://accounts.<primary domain>/sign-in`); on a satellite an absolute URL on the primary, "
        "required for development instances.",
    )  # fmt: skip
    sign_up_url: str | None = setting(None, parse_http_url_or_path, env="CLERK_SIGN_UP_URL", help="Sign-up page.")
    authorized_parties: tuple[str, ...] = setting(
        (), list_of(parse_origin), env="CLERK_AUTHORIZED_PARTIES",
        help="Origins accepted in a token's `azp` (comma-separated); empty = no check.",
    )  # fmt: skip
    audience: tuple[str, ...] = setting(
        (), list_of(parse_text), env="CLERK_AUDIENCE",
        help="Accepted `aud` values (comma-separated); checked only when a token has `aud`.",
    )  # fmt: skip
    satellite_auto_sync: bool = setting(
        False, parse_literal_true, env="CLERK_SATELLITE_AUTO_SYNC",
        help="Satellites sync with the primary even without cookies (only `true` enables).",
    )  # fmt: skip
    clock_skew_ms: int = setting(
        DEFAULT_CLOCK_SKEW_MS, integer(0), env="CLERK_CLOCK_SKEW_MS",
        help="Allowed clock skew for `exp`/`nbf`/`iat`, in milliseconds.",
    )  # fmt: skip
    organization_sync_options: OrganizationSyncOptions | None = setting(
        None, parse_organization_sync, env="CLERK_ORGANIZATION_SYNC_OPTIONS",
        help='Paths that pin the active organization: `{"organizationPatterns": [...], '
        '"personalAccountPatterns": [...]}` (JSON in the environment, a table in TOML).',
    )  # fmt: skip
    frontend_api_url: str | None = setting(
        None, parse_http_url, env="CLERK_FAPI_URL",
        help="The Frontend API's real base URL when it is not `https://<host from the key>` (e.g. a local emulator).",
    )  # fmt: skip

    @property
    def verification_key(self) -> PemKey[RSAPublicKey] | None:
        return self.jwt_key or self.jwt_key_file
