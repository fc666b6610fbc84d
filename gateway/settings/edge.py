"""`[gateway]`: how the edge listens, proxies, decides per route and talks to the app.

Why a module of its own: these settings are the gateway's own (`GATEWAY_*`), read by the edge and
never by the Clerk core.
"""

# ruff: noqa: RUF009 - `setting(...)` only wraps `dataclasses.field`; the defaults are immutable.
from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.clerk.token_types import AcceptsToken
from gateway.settings.apps import AppSettings, effective_apps, parse_apps
from gateway.settings.identity import DEFAULT_IDENTITY, IdentitySettings, parse_identity_settings
from gateway.settings.keys import parse_private_key_file
from gateway.settings.parsing import (
    integer,
    list_of,
    parse_accepts_token,
    parse_allowed_host,
    parse_boolean,
    parse_frontend_api_path,
    parse_http_url,
    parse_listen_address,
    parse_mode,
    parse_network,
    parse_origin,
    parse_path_case,
    parse_path_pattern,
    parse_redis_url,
    parse_text,
    seconds,
)
from gateway.settings.routes import parse_identity_headers, parse_routes
from gateway.settings.table import setting
from gateway.settings.values import (
    IdentityHeaders,
    IPNetwork,
    ListenAddress,
    Mode,
    PathCase,
    PemKey,
    RedisUrl,
    RouteRule,
)

DEFAULT_FRONTEND_API_PATH: str | None = "/__clerk"


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """`[gateway]`: how the edge listens, proxies, decides per route and talks to the app."""

    upstream: str | None = setting(
        None, parse_http_url, env="GATEWAY_UPSTREAM",
        help="http(s) URL of the app to proxy to; required by `gateway serve`.",
    )  # fmt: skip
    public_origin: str | None = setting(
        None, parse_origin, env="GATEWAY_PUBLIC_ORIGIN",
        help="The origin browsers use for this gateway, e.g. `https://app.example.com`.",
    )  # fmt: skip
    listen: ListenAddress = setting(
        ListenAddress("127.0.0.1", 8080), parse_listen_address, env="GATEWAY_LISTEN",
        help="`HOST:PORT` to listen on.", default_text="127.0.0.1:8080",
    )  # fmt: skip
    workers: int = setting(1, integer(1), env="GATEWAY_WORKERS", help="Worker processes.")
    mode: Mode = setting(
        "protect", parse_mode, env="GATEWAY_MODE",
        help="`protect` enforces sign-in and route rules; `annotate` lets every request through with status headers.",
    )  # fmt: skip
    public_paths: tuple[str, ...] = setting(
        (), list_of(parse_path_pattern), env="GATEWAY_PUBLIC_PATHS",
        help="Path patterns that need no sign-in (comma-separated); empty = everything is protected.",
    )  # fmt: skip
    routes: tuple[RouteRule, ...] = setting(
        (), parse_routes, env="GATEWAY_ROUTES",
        help="Route rules: `[[gateway.routes]]` with `path`, optional `methods`, `access` "
        "(`public`/`signed-in`/`deny`), conditions (`org_role`, `org_permission`, `require_org`, `plan`, "
        "`feature`, `claim`, `any`, `all`, `not`), `reverification`, `treat_pending_as_signed_out`, "
        "`cors_preflight`, `api`, `accepts` (as `accepts_token`), `scopes` (a machine token must carry them all) "
        "(JSON array in the environment); see \"Route rules\".",
    )  # fmt: skip
    treat_pending_as_signed_out: bool = setting(
        True, parse_boolean, env="GATEWAY_TREAT_PENDING_AS_SIGNED_OUT",
        help="A pending session (`sts: pending`, tasks left) counts as signed out, as Clerk's `toAuth()` does; "
        "`false` lets it in (a route rule may say otherwise).",
    )  # fmt: skip
    accepts_token: AcceptsToken = setting(
        "session_token", parse_accepts_token, env="GATEWAY_ACCEPTS_TOKEN",
        help="Tokens accepted, as Clerk's `acceptsToken`: `session_token`, `api_key`, `m2m_token`, `oauth_token`, "
        "a comma-separated list (a TOML array) or `any`. Machine tokens come in `Authorization: Bearer` only.",
    )  # fmt: skip
    machine_token_revocation_window: float = setting(
        10.0, seconds(allow_zero=True), env="GATEWAY_MACHINE_TOKEN_REVOCATION_WINDOW",
        help="Seconds a Backend API answer about an opaque machine token (`ak_`, `mt_`, `oat_`) is reused "
        "(never past the token's expiry): a revoked token is refused within this time. 0 asks every time.",
    )  # fmt: skip
    revocation_retention: float = setting(
        3600.0, seconds(), env="GATEWAY_REVOCATION_RETENTION",
        help="Seconds a revocation heard through Clerk's webhooks is kept: at least your instance's longest "
        "session-token lifetime plus clock skew (a token issued before it could be valid that long).",
    )  # fmt: skip
    redis_url: RedisUrl | None = setting(
        None, parse_redis_url, env="GATEWAY_REDIS_URL",
        help="Redis shared by every replica (`redis://host:6379/0`, `rediss://` for TLS, `unix:///path.sock`): "
        "revocations reach all replicas and a session is refreshed once for all of them; without it each "
        "process keeps its own (see \"Running several replicas\").",
    )  # fmt: skip
    path_case: PathCase = setting(
        "strict", parse_path_case, env="GATEWAY_PATH_CASE",
        help="How route patterns treat letter case: `strict` (a path must pass both case-sensitive and "
        "case-insensitive matching: safe whatever the app does), `sensitive`, or `insensitive`.",
    )  # fmt: skip
    api_paths: tuple[str, ...] = setting(
        (), list_of(parse_path_pattern), env="GATEWAY_API_PATHS",
        help="Path patterns answered with 401 JSON instead of a sign-in redirect.",
    )  # fmt: skip
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        (), list_of(parse_network), env="GATEWAY_TRUSTED_PROXIES",
        help="IPs/CIDRs whose `X-Forwarded-*` headers are believed; empty = none.",
    )  # fmt: skip
    preserve_host: bool = setting(
        True, parse_boolean, env="GATEWAY_PRESERVE_HOST", help="Send the client's `Host` to the app."
    )
    frontend_api_path: str | None = setting(
        DEFAULT_FRONTEND_API_PATH, parse_frontend_api_path, env="GATEWAY_FRONTEND_API_PATH", empty_is_unset=False,
        help="Path the Frontend API is proxied under; empty disables the proxy.",
    )  # fmt: skip
    connect_timeout: float = setting(
        5.0, seconds(), env="GATEWAY_CONNECT_TIMEOUT", help="Seconds to connect to the app or Clerk."
    )
    read_timeout: float = setting(
        60.0, seconds(), env="GATEWAY_READ_TIMEOUT", help="Seconds to wait for the app or Clerk to answer."
    )
    jwks_cache_ttl: float = setting(
        300.0, seconds(), env="GATEWAY_JWKS_CACHE_TTL", help="Seconds a fetched JWKS is reused."
    )
    jwks_min_refetch_interval: float = setting(
        5.0, seconds(allow_zero=True), env="GATEWAY_JWKS_MIN_REFETCH_INTERVAL",
        help="Unknown key ids refetch the JWKS at most this often (seconds).",
    )  # fmt: skip
    token_cache_size: int = setting(
        10000, integer(1), env="GATEWAY_TOKEN_CACHE_SIZE",
        help="Verified tokens, and remembered signed-in sessions, kept in memory (each).",
    )  # fmt: skip
    identity_headers: IdentityHeaders = setting(
        IdentityHeaders(), parse_identity_headers, env="GATEWAY_IDENTITY_HEADERS",
        help="Header names for `status, reason, user_id, session_id, org_id, org_role, org_slug, "
        "org_permissions`, and for machine tokens `token_type, token_id, machine_id, scopes, api_key_name, "
        "api_key_claims, oauth_client_id` (a table; JSON in the environment).",
        default_text="`X-Clerk-Auth-Status`, `X-Clerk-Auth-Reason`, `X-Clerk-User-Id`, …",
    )  # fmt: skip
    identity: IdentitySettings = setting(
        DEFAULT_IDENTITY, parse_identity_settings, env="GATEWAY_IDENTITY",
        help="The identity mapping: `presets` (`clerk`, `oauth2-proxy`, `remote-user`, `grafana`), `user` "
        "(`email`/`username`/`user_id`), `groups`, `public_metadata` (keys templates may use) and `headers` "
        "(custom headers: name = template such as `\"{first_name} {last_name}\"`); a table, JSON in the "
        "environment. See \"For apps behind the gateway\".",
        default_text="`presets = [\"clerk\"]`",
    )  # fmt: skip
    identity_cache_ttl: float = setting(
        60.0, seconds(), env="GATEWAY_IDENTITY_CACHE_TTL",
        help="Seconds a user or organization fetched from the Backend API for the identity headers is reused.",
    )  # fmt: skip
    identity_cache_size: int = setting(
        10000, integer(1), env="GATEWAY_IDENTITY_CACHE_SIZE",
        help="Users, and organizations (each), kept for the identity headers.",
    )  # fmt: skip
    identity_stale_if_error: float = setting(
        300.0, seconds(allow_zero=True), env="GATEWAY_IDENTITY_STALE_IF_ERROR",
        help="Seconds past its TTL a cached user or organization still serves while the Backend API fails.",
    )  # fmt: skip
    allowed_hosts: tuple[str, ...] = setting(
        (), list_of(parse_allowed_host), env="GATEWAY_ALLOWED_HOSTS",
        help="`Host` values accepted; empty = any.",
    )  # fmt: skip
    allowed_redirect_origins: tuple[str, ...] = setting(
        (), list_of(parse_origin), env="GATEWAY_ALLOWED_REDIRECT_ORIGINS",
        help="Extra origins allowed as redirect targets.",
    )  # fmt: skip
    max_header_bytes: int = setting(
        16384, integer(1), env="GATEWAY_MAX_HEADER_BYTES", help="Largest request header block accepted."
    )
    max_url_length: int = setting(8192, integer(1), env="GATEWAY_MAX_URL_LENGTH", help="Longest URL accepted.")
    max_cookies: int = setting(100, integer(1), env="GATEWAY_MAX_COOKIES", help="Most cookies accepted in a request.")
    access_log: bool = setting(
        True, parse_boolean, env="GATEWAY_ACCESS_LOG", help="One JSON line per request on the `gateway.access` logger."
    )
    shutdown_timeout: float = setting(
        30.0, seconds(), env="GATEWAY_SHUTDOWN_TIMEOUT",
        help="Seconds a shutdown waits for in-flight requests before closing the connections to the app.",
    )  # fmt: skip
    refresh_any_method: bool = setting(
        True, parse_boolean, env="GATEWAY_REFRESH_ANY_METHOD",
        help="Refresh an expired session token on any method, not only GET, so pages without Clerk's browser "
        "SDK keep working past the token lifetime (fetch/XHR POSTs); `false` keeps Clerk's GET-only rule.",
    )  # fmt: skip
    explain_loops: bool = setting(
        False, parse_boolean, env="GATEWAY_EXPLAIN_LOOPS",
        help="Name the likely cause (and the fix) on the page that stops a redirect loop; always on with a "
        "development instance. Off, the page says only that a loop was stopped; the log names the cause.",
    )  # fmt: skip
    assertion_key: PemKey[PrivateKeyTypes] | None = setting(
        None, parse_private_key_file, env="GATEWAY_ASSERTION_KEY",
        help="Path of a PEM private key; when set, a signed identity assertion is sent to the app.",
    )  # fmt: skip
    assertion_previous_keys: tuple[PemKey[PrivateKeyTypes], ...] = setting(
        (), list_of(parse_private_key_file), env="GATEWAY_ASSERTION_PREVIOUS_KEYS",
        help="Paths of earlier assertion keys, still published in `/__gateway/jwks.json` (never signing) "
        "while apps may hold assertions they signed; see \"Rotating the assertion key\".",
    )  # fmt: skip
    assertion_audience: str | None = setting(
        None, parse_text, env="GATEWAY_ASSERTION_AUDIENCE",
        help="The assertion's `aud`; unset: `GATEWAY_PUBLIC_ORIGIN` (no `aud` without either).",
    )  # fmt: skip
    reload_watch: float = setting(
        0.0, seconds(allow_zero=True), env="GATEWAY_RELOAD_WATCH",
        help="Seconds between looks at the configuration file: a change reloads it as SIGHUP does (0: only SIGHUP).",
    )  # fmt: skip
    apps: tuple[AppSettings, ...] = setting(
        (), parse_apps, env="GATEWAY_APPS",
        help="Several apps behind one gateway: `[[gateway.apps]]` with `name`, `upstream`, optional `hosts`, "
        "`path_prefix`, `strip_prefix`, `preserve_host`, `connect_timeout`, `read_timeout`, `websockets`, "
        "`public_paths`, `api_paths`, `routes`, `accepts_token`, `assertion_audience`, `identity`, `clerk` (an "
        "instance of its own: `[clerk]` keys) (JSON array in the environment); see \"Many apps behind one gateway\". "
        "Without it the top-level settings are the one app.",
    )  # fmt: skip

    def served_apps(self) -> tuple[AppSettings, ...]:
        """The apps requests are routed to, the default app of the top-level settings included."""
        return effective_apps(
            self.apps, upstream=self.upstream, routes=self.routes, public_paths=self.public_paths,
            api_paths=self.api_paths,
        )  # fmt: skip
