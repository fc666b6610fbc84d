"""Settings: TOML + environment, validated once, every problem reported as `ENV_VAR: what is wrong`."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.clerk.keys import make_publishable_key
from gateway.clerk.options import ClerkOptions, OrganizationSyncOptions
from gateway.settings import (
    IdentityHeaders,
    ListenAddress,
    RouteRule,
    Settings,
    SettingsError,
    load_settings,
    setting_specs,
)
from gateway.settings_reference import render_reference_markdown

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEV_PUBLISHABLE_KEY = make_publishable_key("happy-hen-42.clerk.accounts.dev")
LIVE_PUBLISHABLE_KEY = make_publishable_key("clerk.example.com", "production")
DEV_SECRET_KEY = "sk_test_0123456789abcdefghijWXYZ"
LIVE_SECRET_KEY = "sk_live_0123456789abcdefghijWXYZ"
MISSING_SECRET_KEY = (
    "CLERK_SECRET_KEY: Missing Clerk Secret Key. Go to https://dashboard.clerk.com and get your key for "
    "your instance. (Or set CLERK_JWT_KEY to verify tokens without the network.)"
)

# 2048-bit generation takes a while: once per module.
RSA_PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = (
    RSA_PRIVATE_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
EC_PUBLIC_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def an_environment(**overrides: str) -> dict[str, str]:
    """A valid minimal environment (dev instance), with overrides; a value of "" removes the variable."""
    environment = {"CLERK_PUBLISHABLE_KEY": DEV_PUBLISHABLE_KEY, "CLERK_SECRET_KEY": DEV_SECRET_KEY}
    environment.update(overrides)
    return {name: value for name, value in environment.items() if value != ""}


def a_config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(config_path: Path | None, environment: dict[str, str], **options: bool) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        load_settings(config_path, environment, **options)
    return list(raised.value.problems)


# ------------------------------------------------------------------------------------------------
# A valid configuration


def test_minimal_environment_gives_defaults_and_clerk_options() -> None:
    settings = load_settings(None, an_environment())

    assert isinstance(settings.clerk, ClerkOptions)
    assert settings.clerk.publishable_key.frontend_api == "happy-hen-42.clerk.accounts.dev"
    assert settings.clerk.secret_key == DEV_SECRET_KEY
    assert settings.clerk.api_url == "https://api.clerk.com"
    assert settings.clerk.api_version == "v1"
    assert settings.clerk.clock_skew_ms == 5000
    assert settings.clerk.satellite_auto_sync is False
    gateway = settings.gateway
    assert gateway.upstream is None
    assert gateway.listen == ListenAddress("127.0.0.1", 8080)
    assert str(gateway.listen) == "127.0.0.1:8080"
    assert (gateway.workers, gateway.mode, gateway.public_paths, gateway.routes) == (1, "protect", (), ())
    assert gateway.frontend_api_path == "/__clerk"
    assert (gateway.connect_timeout, gateway.read_timeout) == (5.0, 60.0)
    assert (gateway.jwks_cache_ttl, gateway.jwks_min_refetch_interval, gateway.token_cache_size) == (300, 5, 10000)
    assert gateway.identity_headers.user_id == "X-Clerk-User-Id"
    assert (gateway.max_header_bytes, gateway.max_url_length) == (16384, 8192)
    assert gateway.preserve_host is True
    assert gateway.trusted_proxies == ()


def test_settings_are_immutable() -> None:
    settings = load_settings(None, an_environment())

    with pytest.raises(AttributeError):
        settings.gateway.workers = 4  # type: ignore[misc]


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = a_config_file(
        tmp_path, '[clerk]\nclock_skew_ms = 1000\n[gateway]\nworkers = 2\nmode = "annotate"\nread_timeout = 30\n'
    )

    settings = load_settings(config, an_environment(GATEWAY_WORKERS="8", CLERK_CLOCK_SKEW_MS="250"))

    assert settings.gateway.workers == 8
    assert settings.clerk.clock_skew_ms == 250
    assert settings.gateway.mode == "annotate"  # from the file, not overridden
    assert settings.gateway.read_timeout == 30.0
    assert settings.config_path == config


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    config = a_config_file(tmp_path, "[gateway]\nworkers = 3\n")

    assert load_settings(config, an_environment(GATEWAY_WORKERS="")).gateway.workers == 3


def test_empty_frontend_api_path_disables_the_proxy(tmp_path: Path) -> None:
    config = a_config_file(tmp_path, '[gateway]\nfrontend_api_path = ""\n')

    assert load_settings(config, an_environment()).gateway.frontend_api_path is None
    assert load_settings(None, an_environment(GATEWAY_FRONTEND_API_PATH=" ")).gateway.frontend_api_path is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_booleans_accept_true_false_one_zero_in_any_case(raw: str, expected: bool) -> None:
    assert load_settings(None, an_environment(GATEWAY_PRESERVE_HOST=raw)).gateway.preserve_host is expected


def test_satellite_auto_sync_is_enabled_only_by_true() -> None:
    assert load_settings(None, an_environment(CLERK_SATELLITE_AUTO_SYNC="True")).clerk.satellite_auto_sync is True
    assert load_settings(None, an_environment(CLERK_SATELLITE_AUTO_SYNC="false")).clerk.satellite_auto_sync is False
    assert problems_of(None, an_environment(CLERK_SATELLITE_AUTO_SYNC="1")) == [
        "CLERK_SATELLITE_AUTO_SYNC: expected true or false, got '1'"
    ]


def test_comma_lists_are_trimmed_and_empty_items_dropped() -> None:
    environment = an_environment(
        CLERK_AUTHORIZED_PARTIES=" https://a.example.com ,, https://b.example.com:8443,",
        CLERK_AUDIENCE="api, ,web",
        GATEWAY_PUBLIC_PATHS="/healthz, /public/*",
        GATEWAY_TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.7",
    )

    settings = load_settings(None, environment)

    assert settings.clerk.authorized_parties == ("https://a.example.com", "https://b.example.com:8443")
    assert settings.clerk.audience == ("api", "web")
    assert settings.gateway.public_paths == ("/healthz", "/public/*")
    assert settings.gateway.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
    )


def test_toml_lists_work_like_comma_lists(tmp_path: Path) -> None:
    config = a_config_file(tmp_path, '[clerk]\naudience = [" api ", ""]\n[gateway]\napi_paths = ["/api/*"]\n')

    settings = load_settings(config, an_environment())

    assert settings.clerk.audience == ("api",)
    assert settings.gateway.api_paths == ("/api/*",)


def test_organization_sync_options_parse_from_json() -> None:
    environment = an_environment(
        CLERK_ORGANIZATION_SYNC_OPTIONS='{"organizationPatterns": ["/orgs/:slug", "/orgs/:slug/(.*)"], '
        '"personalAccountPatterns": ["/me", "/me/(.*)"]}'
    )

    assert load_settings(None, environment).clerk.organization_sync == OrganizationSyncOptions(
        organization_patterns=("/orgs/:slug", "/orgs/:slug/(.*)"),
        personal_account_patterns=("/me", "/me/(.*)"),
    )


def test_organization_sync_options_parse_from_a_snake_case_table(tmp_path: Path) -> None:
    config = a_config_file(tmp_path, '[clerk.organization_sync_options]\norganization_patterns = ["/orgs/:slug"]\n')

    assert load_settings(config, an_environment()).clerk.organization_sync == OrganizationSyncOptions(
        organization_patterns=("/orgs/:slug",)
    )


def test_routes_and_identity_headers_from_toml(tmp_path: Path) -> None:
    config = a_config_file(
        tmp_path,
        '[[gateway.routes]]\npath = "/admin/*"\norg_role = "org:admin"\n'
        '[[gateway.routes]]\npath = "/status"\naccess = "public"\n'
        '[[gateway.routes]]\npath = "/api/*"\nrequire_org = true\napi = true\norg_permission = "org:x:read"\n'
        '[gateway.identity_headers]\nuser_id = "X-User"\n',
    )

    gateway = load_settings(config, an_environment()).gateway

    assert gateway.routes == (
        RouteRule(path="/admin/*", access="signed-in", org_role="org:admin"),
        RouteRule(path="/status", access="public"),
        RouteRule(path="/api/*", require_org=True, api=True, org_permission="org:x:read"),
    )
    assert gateway.identity_headers == IdentityHeaders(user_id="X-User")


def test_routes_from_json_in_the_environment() -> None:
    environment = an_environment(GATEWAY_ROUTES='[{"path": "/admin/*", "org_role": "org:admin"}]')

    assert load_settings(None, environment).gateway.routes == (RouteRule(path="/admin/*", org_role="org:admin"),)


def test_pem_with_literal_backslash_n_loads() -> None:
    escaped = RSA_PUBLIC_PEM.strip().replace("\n", "\\n")

    settings = load_settings(None, an_environment(CLERK_JWT_KEY=escaped))

    assert settings.clerk.jwt_key is not None
    assert settings.clerk.jwt_key.public_numbers() == RSA_PRIVATE_KEY.public_key().public_numbers()


def test_jwt_key_file_loads(tmp_path: Path) -> None:
    key_file = tmp_path / "clerk.pem"
    key_file.write_text(RSA_PUBLIC_PEM)

    settings = load_settings(None, an_environment(CLERK_JWT_KEY_FILE=str(key_file)))

    assert settings.clerk.jwt_key is not None
    assert settings.clerk_settings.verification_key is not None
    assert settings.clerk_settings.verification_key.source == str(key_file)


def test_jwt_key_without_secret_key_is_accepted_for_networkless_verification() -> None:
    settings = load_settings(None, an_environment(CLERK_SECRET_KEY="", CLERK_JWT_KEY=RSA_PUBLIC_PEM))

    assert settings.clerk.secret_key is None
    assert settings.clerk.jwt_key is not None


def test_assertion_key_loads_a_private_key(tmp_path: Path) -> None:
    key_file = tmp_path / "assertion.pem"
    key_file.write_bytes(
        RSA_PRIVATE_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    assertion_key = load_settings(None, an_environment(GATEWAY_ASSERTION_KEY=str(key_file))).gateway.assertion_key

    assert assertion_key is not None and assertion_key.source == str(key_file)


def test_listen_accepts_ipv6() -> None:
    listen = load_settings(None, an_environment(GATEWAY_LISTEN="[::1]:9000")).gateway.listen

    assert (listen.host, listen.port, str(listen)) == ("::1", 9000, "[::1]:9000")


def test_secret_is_masked_in_repr_and_str() -> None:
    settings = load_settings(None, an_environment(CLERK_JWT_KEY=RSA_PUBLIC_PEM))

    for text in (repr(settings), str(settings)):
        assert DEV_SECRET_KEY not in text
        assert "sk_test_…WXYZ" in text
    assert settings.masked_secret_key == "sk_test_…WXYZ"


# ------------------------------------------------------------------------------------------------
# Problems: each case yields exactly these lines


PROBLEM_CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "missing publishable key",
        {"CLERK_PUBLISHABLE_KEY": ""},
        ["CLERK_PUBLISHABLE_KEY: missing. Publishable key not valid (expected format: pk_test_... or pk_live_...)."],
    ),
    (
        "malformed publishable key",
        {"CLERK_PUBLISHABLE_KEY": "pk_test_bm90LWEtaG9zdA"},
        ["CLERK_PUBLISHABLE_KEY: Publishable key not valid (expected format: pk_test_... or pk_live_...)."],
    ),
    ("missing secret key without a jwt key", {"CLERK_SECRET_KEY": ""}, [MISSING_SECRET_KEY]),
    ("jwt key that is not PEM", {"CLERK_JWT_KEY": "hello"}, ["CLERK_JWT_KEY: not a PEM RSA public key"]),
    ("jwt key that is not RSA", {"CLERK_JWT_KEY": EC_PUBLIC_PEM}, ["CLERK_JWT_KEY: not a PEM RSA public key"]),
    ("non-integer clock skew", {"CLERK_CLOCK_SKEW_MS": "5s"}, ["CLERK_CLOCK_SKEW_MS: expected an integer, got '5s'"]),
    (
        "yes is not a boolean",
        {"CLERK_IS_SATELLITE": "yes"},
        ["CLERK_IS_SATELLITE: expected true or false (or 1/0), got 'yes'"],
    ),
    (
        "api url without scheme",
        {"CLERK_API_URL": "api.clerk.com"},
        ["CLERK_API_URL: expected an absolute http(s) URL, got 'api.clerk.com'"],
    ),
    (
        "proxy url neither absolute nor a path",
        {"CLERK_PROXY_URL": "__clerk"},
        ["CLERK_PROXY_URL: expected an absolute http(s) URL or a path starting with /, got '__clerk'"],
    ),
    (
        "frontend api url with another scheme",
        {"CLERK_FAPI_URL": "ftp://127.0.0.1:4500"},
        ["CLERK_FAPI_URL: expected an absolute http(s) URL, got 'ftp://127.0.0.1:4500'"],
    ),
    (
        "authorized party with a trailing slash",
        {"CLERK_AUTHORIZED_PARTIES": "https://app.example.com/"},
        [
            "CLERK_AUTHORIZED_PARTIES: expected an origin (scheme and host, no path or trailing /), "
            "got 'https://app.example.com/'"
        ],
    ),
    (
        "domain with a path",
        {"CLERK_DOMAIN": "https://example.com/app"},
        [
            "CLERK_DOMAIN: expected a domain such as example.com or localhost:3001 (a host name, optionally with "
            ":port), got 'https://example.com/app'"
        ],
    ),
    (
        "organization sync options that are not JSON",
        {"CLERK_ORGANIZATION_SYNC_OPTIONS": "{organizationPatterns: []}"},
        [
            "CLERK_ORGANIZATION_SYNC_OPTIONS: invalid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)"
        ],
    ),
    (
        "organization sync options with an unknown key",
        {"CLERK_ORGANIZATION_SYNC_OPTIONS": '{"organisationPatterns": ["/orgs/:slug"]}'},
        [
            "CLERK_ORGANIZATION_SYNC_OPTIONS: unknown key 'organisationPatterns' in the options "
            "(did you mean 'organizationPatterns'?)"
        ],
    ),
    (
        "upstream without scheme",
        {"GATEWAY_UPSTREAM": "localhost:3000"},
        ["GATEWAY_UPSTREAM: expected an absolute http(s) URL, got 'localhost:3000'"],
    ),
    (
        "listen without port",
        {"GATEWAY_LISTEN": "0.0.0.0"},
        ["GATEWAY_LISTEN: expected HOST:PORT with a port from 1 to 65535, got '0.0.0.0'"],
    ),
    (
        "listen with port out of range",
        {"GATEWAY_LISTEN": "0.0.0.0:70000"},
        ["GATEWAY_LISTEN: expected HOST:PORT with a port from 1 to 65535, got '0.0.0.0:70000'"],
    ),
    ("zero workers", {"GATEWAY_WORKERS": "0"}, ["GATEWAY_WORKERS: must be at least 1, got 0"]),
    ("unknown mode", {"GATEWAY_MODE": "block"}, ["GATEWAY_MODE: expected one of protect, annotate, got 'block'"]),
    ("zero timeout", {"GATEWAY_READ_TIMEOUT": "0"}, ["GATEWAY_READ_TIMEOUT: must be more than 0, got '0'"]),
    (
        "timeout that is not a number",
        {"GATEWAY_CONNECT_TIMEOUT": "fast"},
        ["GATEWAY_CONNECT_TIMEOUT: expected a number of seconds, got 'fast'"],
    ),
    ("zero cache size", {"GATEWAY_TOKEN_CACHE_SIZE": "0"}, ["GATEWAY_TOKEN_CACHE_SIZE: must be at least 1, got 0"]),
    (
        "trusted proxy that is not an address",
        {"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"},
        ["GATEWAY_TRUSTED_PROXIES: expected an IP address or CIDR such as 10.0.0.0/8, got 'proxy.local'"],
    ),
    (
        "public path without leading slash",
        {"GATEWAY_PUBLIC_PATHS": "healthz"},
        ["GATEWAY_PUBLIC_PATHS: expected a path pattern starting with / (e.g. /public/*), got 'healthz'"],
    ),
    (
        "route with an unknown access level",
        {"GATEWAY_ROUTES": '[{"path": "/admin/*", "access": "admins"}]'},
        ["GATEWAY_ROUTES: route 1 (/admin/*): access: expected one of public, signed-in, deny, got 'admins'"],
    ),
    (
        "public route requiring a role",
        {"GATEWAY_ROUTES": '[{"path": "/x", "access": "public", "org_role": "org:admin"}]'},
        ["GATEWAY_ROUTES: route 1 (/x): a public route cannot require an organization, role or permission"],
    ),
    (
        "route without a path",
        {"GATEWAY_ROUTES": '[{"access": "public"}]'},
        ["GATEWAY_ROUTES: route 1: path is missing"],
    ),
    (
        "identity header with an invalid name",
        {"GATEWAY_IDENTITY_HEADERS": '{"user_id": "X User"}'},
        ["GATEWAY_IDENTITY_HEADERS: user_id: not a valid HTTP header name: 'X User'"],
    ),
    (
        "identity header used twice",
        {"GATEWAY_IDENTITY_HEADERS": '{"user_id": "x-clerk-session-id"}'},
        ["GATEWAY_IDENTITY_HEADERS: header 'x-clerk-session-id' is used for more than one identity value"],
    ),
    (
        "jwt key file that does not exist",
        {"CLERK_JWT_KEY_FILE": "/nonexistent/clerk.pem"},
        ["CLERK_JWT_KEY_FILE: cannot read '/nonexistent/clerk.pem': No such file or directory"],
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [case[1:] for case in PROBLEM_CASES], ids=[case[0] for case in PROBLEM_CASES]
)
def test_each_problem_yields_exactly_its_line(overrides: dict[str, str], expected: list[str]) -> None:
    assert problems_of(None, an_environment(**overrides)) == expected


SATELLITE_CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "dev satellite without sign-in url",
        {"CLERK_DOMAIN": "example.net"},
        ["CLERK_SIGN_IN_URL: Missing signInUrl. Pass a signInUrl for dev instances if an app is satellite"],
    ),
    (
        "satellite with a relative sign-in url",
        {"CLERK_DOMAIN": "example.net", "CLERK_SIGN_IN_URL": "/sign-in"},
        ["CLERK_SIGN_IN_URL: The signInUrl needs to have a absolute url format."],
    ),
    (
        "satellite with its sign-in url on its own origin",
        {
            "CLERK_DOMAIN": "example.net",
            "CLERK_SIGN_IN_URL": "https://app.example.net/sign-in",
            "GATEWAY_PUBLIC_ORIGIN": "https://app.example.net",
        },
        [
            "CLERK_SIGN_IN_URL: The signInUrl needs to be on a different origin than your satellite "
            "application (GATEWAY_PUBLIC_ORIGIN)."
        ],
    ),
    (
        "satellite without domain or proxy url",
        {"CLERK_SIGN_IN_URL": "https://example.com/sign-in"},
        [
            "CLERK_DOMAIN: Missing domain and proxyUrl. A satellite application needs to specify a domain "
            "(CLERK_DOMAIN) or a proxyUrl (CLERK_PROXY_URL)"
        ],
    ),
    (
        "dev is decided by the secret key, not the publishable key",
        {"CLERK_PUBLISHABLE_KEY": LIVE_PUBLISHABLE_KEY, "CLERK_SECRET_KEY": "test_abc", "CLERK_PROXY_URL": "/__clerk"},
        ["CLERK_SIGN_IN_URL: Missing signInUrl. Pass a signInUrl for dev instances if an app is satellite"],
    ),
    (
        "dev satellite with nothing set reports both problems in Clerk's order",
        {},
        [
            "CLERK_SIGN_IN_URL: Missing signInUrl. Pass a signInUrl for dev instances if an app is satellite",
            "CLERK_DOMAIN: Missing domain and proxyUrl. A satellite application needs to specify a domain "
            "(CLERK_DOMAIN) or a proxyUrl (CLERK_PROXY_URL)",
        ],
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [case[1:] for case in SATELLITE_CASES], ids=[case[0] for case in SATELLITE_CASES]
)
def test_satellite_assertions_of_protocol_1_3(overrides: dict[str, str], expected: list[str]) -> None:
    assert problems_of(None, an_environment(CLERK_IS_SATELLITE="true", **overrides)) == expected


def test_satellite_with_absolute_sign_in_url_on_another_origin_is_valid() -> None:
    environment = an_environment(
        CLERK_IS_SATELLITE="true",
        CLERK_DOMAIN="example.net",
        CLERK_SIGN_IN_URL="https://example.com/sign-in",
        GATEWAY_PUBLIC_ORIGIN="https://example.net",
    )

    assert load_settings(None, environment).clerk.is_satellite is True


def test_missing_upstream_is_a_problem_only_when_serving() -> None:
    assert load_settings(None, an_environment()).gateway.upstream is None
    assert problems_of(None, an_environment(), require_upstream=True) == [
        "GATEWAY_UPSTREAM: missing; set the http(s) URL of the app to proxy to"
    ]


def test_both_jwt_key_and_jwt_key_file_is_a_problem(tmp_path: Path) -> None:
    key_file = tmp_path / "clerk.pem"
    key_file.write_text(RSA_PUBLIC_PEM)

    assert problems_of(None, an_environment(CLERK_JWT_KEY=RSA_PUBLIC_PEM, CLERK_JWT_KEY_FILE=str(key_file))) == [
        "CLERK_JWT_KEY_FILE: set either CLERK_JWT_KEY or CLERK_JWT_KEY_FILE, not both"
    ]


def test_several_problems_are_all_reported_at_once(tmp_path: Path) -> None:
    config = a_config_file(
        tmp_path,
        '[clerk]\npublishable_ky = "pk_test_x"\n[gateway]\nworkers = 0\nmode = "block"\n[gatway]\nx = 1\n',
    )
    environment = an_environment(CLERK_PUBLISHABLE_KEY="", CLERK_SECRET_KEY="", CLERK_CLOCK_SKEW_MS="abc")

    assert problems_of(config, environment, require_upstream=True) == [
        "clerk.publishable_ky: unknown key 'publishable_ky' in gateway.toml (did you mean 'publishable_key'?)",
        "gatway: unknown section in gateway.toml (expected one of clerk, gateway)",
        "CLERK_CLOCK_SKEW_MS: expected an integer, got 'abc'",
        "GATEWAY_WORKERS: must be at least 1, got 0",
        "GATEWAY_MODE: expected one of protect, annotate, got 'block'",
        "CLERK_PUBLISHABLE_KEY: missing. Publishable key not valid (expected format: pk_test_... or pk_live_...).",
        MISSING_SECRET_KEY,
        "GATEWAY_UPSTREAM: missing; set the http(s) URL of the app to proxy to",
    ]


def test_wrong_toml_types_are_reported(tmp_path: Path) -> None:
    config = a_config_file(tmp_path, '[clerk]\nclock_skew_ms = "fast"\nis_satellite = 1\n[gateway]\nworkers = 1.5\n')

    assert problems_of(config, an_environment()) == [
        "CLERK_IS_SATELLITE: expected true or false, got an integer",
        "CLERK_CLOCK_SKEW_MS: expected an integer, got 'fast'",
        "GATEWAY_WORKERS: expected an integer, got a number",
    ]


def test_invalid_toml_is_one_line_naming_the_file_and_position(tmp_path: Path) -> None:
    config = a_config_file(tmp_path, "[gateway]\nworkers = \n")

    assert problems_of(config, an_environment()) == [f"{config}: invalid TOML: Invalid value (at line 2, column 11)"]


def test_unreadable_config_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"

    assert problems_of(missing, an_environment()) == [
        f"{missing}: cannot read the configuration file: No such file or directory"
    ]


def test_settings_error_message_is_one_problem_per_line() -> None:
    error = SettingsError(["A: one", "B: two"])

    assert str(error) == "A: one\nB: two"


# ------------------------------------------------------------------------------------------------
# The example configurations and the generated reference


def test_sidecar_example_protects_all_but_health_and_public() -> None:
    settings = load_settings(CONFIG_DIR / "sidecar.example.toml", an_environment(), require_upstream=True)

    assert settings.gateway.mode == "protect"
    assert settings.gateway.public_paths == ("/healthz", "/public/*")
    assert settings.gateway.api_paths == ("/api/*",)


def test_satellite_example_is_a_valid_production_satellite() -> None:
    environment = an_environment(CLERK_PUBLISHABLE_KEY=LIVE_PUBLISHABLE_KEY, CLERK_SECRET_KEY=LIVE_SECRET_KEY)

    settings: Settings = load_settings(CONFIG_DIR / "satellite.example.toml", environment, require_upstream=True)

    assert settings.clerk.is_production and settings.clerk.is_satellite
    assert settings.clerk.domain == "example.net"
    assert settings.clerk.original_frontend_api == "clerk.example.net"
    assert settings.clerk.sign_in_url == "https://example.com/sign-in"


def test_reference_lists_every_environment_variable_and_toml_key() -> None:
    reference = render_reference_markdown()

    for spec in setting_specs():
        assert f"| `{spec.key}` | `{spec.env_var}` |" in reference
    assert "| `api_url` | `CLERK_API_URL` | `https://api.clerk.com` |" in reference
    assert "| `listen` | `GATEWAY_LISTEN` | 127.0.0.1:8080 |" in reference


def test_every_setting_has_a_unique_environment_variable_and_help() -> None:
    specs = setting_specs()

    assert len({spec.env_var for spec in specs}) == len(specs)
    assert all(spec.help and spec.env_var.startswith(("CLERK_", "GATEWAY_")) for spec in specs)
