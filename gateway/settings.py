"""The gateway's one configuration: TOML file + environment, validated once, immutable afterwards.

Why one module: every setting is declared exactly once, as a field of `ClerkSettings` or
`GatewaySettings` carrying its TOML key, environment variable, parser, default and help text
(`setting(...)`). Loading, `gateway check-config` and the README's configuration reference
(`gateway.settings_reference`) all read that one table, so adding a setting is a one-line change.

Rules (STYLE.md §4, modeled on oauth2-proxy):
* Sources, strongest first: the environment (`CLERK_*` as in Clerk's SDKs, `GATEWAY_*`), the TOML
  file (`[clerk]`, `[gateway]`), the default. An empty environment variable counts as unset.
* Every problem is collected and reported together (`SettingsError.problems`), each as one line
  `ENV_VAR: what is wrong`; unknown TOML keys are reported too, so a typo never silently falls back to
  a default.
* A secret key is required, as in Clerk's SDK (PROTOCOL.md §1.3), unless `CLERK_JWT_KEY` is set:
  then the gateway verifies session tokens networklessly and cannot refresh tokens, resolve
  handshake nonces or proxy the Frontend API (Clerk would need the secret key for all three).
* Nothing here is read again after start; the rest of the code gets a `Settings` passed to it.
"""

# ruff: noqa: RUF009 - `setting(...)` only wraps `dataclasses.field`; the defaults are immutable.
from __future__ import annotations

import difflib
import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from gateway.clerk.errors import ConfigurationError
from gateway.clerk.keys import PublishableKey, is_development_secret_key, parse_publishable_key
from gateway.clerk.options import (
    DEFAULT_API_URL,
    DEFAULT_CLOCK_SKEW_MS,
    ClerkOptions,
    OrganizationSyncOptions,
)

T = TypeVar("T")
KeyT = TypeVar("KeyT")

Mode = Literal["protect", "annotate"]
PathCase = Literal["strict", "sensitive", "insensitive"]
Access = Literal["public", "signed-in"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_FRONTEND_API_PATH: str | None = "/__clerk"
MODES: tuple[Mode, ...] = ("protect", "annotate")
PATH_CASES: tuple[PathCase, ...] = ("strict", "sensitive", "insensitive")
ACCESS_LEVELS: tuple[Access, ...] = ("public", "signed-in")
MISSING_SECRET_KEY = "Missing Clerk Secret Key. Go to https://dashboard.clerk.com and get your key for your instance."


# --------------------------------------------------------------------------------------------------
# Errors


class InvalidValue(ValueError):
    """A parser's verdict on one setting; may hold several messages (e.g. two bad routes)."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class SettingsError(Exception):
    """The configuration cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------------------
# Value types that appear in the settings


@dataclass(frozen=True, slots=True, repr=False)
class Secret:
    """A secret string whose `repr` and `str` never show it (`sk_test_…abcd`)."""

    value: str

    @property
    def masked(self) -> str:
        return mask_secret(self.value)

    def __repr__(self) -> str:
        return f"Secret({self.masked!r})"

    def __str__(self) -> str:
        return self.masked


@dataclass(frozen=True, slots=True)
class PemKey(Generic[KeyT]):
    """A key loaded at start, with where it came from (an environment variable name or a file path)."""

    source: str
    key: KeyT = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """Access rule for the paths matching `path` (a glob-ish pattern such as `/admin/*`)."""

    path: str
    access: Access = "signed-in"
    org_role: str | None = None
    org_permission: str | None = None
    require_org: bool = False
    api: bool = False  # answer 401 JSON instead of redirecting to sign-in


@dataclass(frozen=True, slots=True)
class IdentityHeaders:
    """Names of the headers that carry the identity to the app (ARCHITECTURE.md, "To the app")."""

    status: str = "X-Clerk-Auth-Status"
    reason: str = "X-Clerk-Auth-Reason"
    user_id: str = "X-Clerk-User-Id"
    session_id: str = "X-Clerk-Session-Id"
    org_id: str = "X-Clerk-Org-Id"
    org_role: str = "X-Clerk-Org-Role"
    org_slug: str = "X-Clerk-Org-Slug"
    org_permissions: str = "X-Clerk-Org-Permissions"

    def names(self) -> tuple[str, ...]:
        """Every header name, e.g. to strip client-sent spoofs before proxying."""
        return tuple(getattr(self, item.name) for item in fields(self))


def mask_secret(secret: str) -> str:
    """Keep the prefix that tells the instance type and the last 4 characters, when long enough."""
    prefix = next((p for p in ("sk_test_", "sk_live_", "test_", "live_") if secret.startswith(p)), "")
    rest = secret[len(prefix) :]
    tail = rest[-4:] if len(rest) >= 16 else ""
    return f"{prefix}…{tail}"


# --------------------------------------------------------------------------------------------------
# Parsers: each takes a raw value (a string from the environment, or a TOML value) and returns the
# typed value or raises `InvalidValue`. Empty values never reach them unless the setting says so.


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: object) -> str:
    kinds: list[tuple[type, str]] = [
        (bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
        (list, "a list"), (dict, "a table"),
    ]  # fmt: skip
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def parse_text(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"expected a string, got {_kind(value)}")
    return value.strip()


def parse_secret(value: object) -> Secret:
    return Secret(parse_text(value))


def parse_clerk_publishable_key(value: object) -> PublishableKey:
    try:
        return parse_publishable_key(parse_text(value))
    except ConfigurationError as error:
        raise InvalidValue(error.message) from None


def parse_boolean(value: object) -> bool:
    """`true`/`false`/`1`/`0`, any case; anything else (`yes`, `on`) is a mistake worth reporting."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise InvalidValue(f"expected true or false, got {_kind(value)}")
    text = value.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise InvalidValue(f"expected true or false (or 1/0), got {_show(value)}")


def parse_literal_true(value: object) -> bool:
    """Like Clerk's `satelliteAutoSync`: only `true` enables; `false` disables; others are reported."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise InvalidValue(f"expected true or false, got {_kind(value)}")
    text = value.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise InvalidValue(f"expected true or false, got {_show(value)}")


def integer(minimum: int) -> Callable[[object], int]:
    def parse_integer(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidValue(f"expected an integer, got {_kind(value)}")
        try:
            number = int(value)
        except ValueError:
            raise InvalidValue(f"expected an integer, got {_show(value)}") from None
        if number < minimum:
            raise InvalidValue(f"must be at least {minimum}, got {number}")
        return number

    return parse_integer


def seconds(*, allow_zero: bool = False) -> Callable[[object], float]:
    def parse_seconds(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidValue(f"expected a number of seconds, got {_kind(value)}")
        try:
            number = float(value)
        except ValueError:
            raise InvalidValue(f"expected a number of seconds, got {_show(value)}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidValue(f"expected a finite number of seconds, got {_show(value)}")
        if number < 0 or (number == 0 and not allow_zero):
            raise InvalidValue(f"must be {'0 or more' if allow_zero else 'more than 0'}, got {_show(value)}")
        return number

    return parse_seconds


def list_of(parse_item: Callable[[object], T]) -> Callable[[object], tuple[T, ...]]:
    """A TOML list, or a comma-separated string; items are trimmed and empty items dropped."""

    def parse_list(value: object) -> tuple[T, ...]:
        if isinstance(value, str):
            items: list[object] = [item.strip() for item in value.split(",")]
        elif isinstance(value, list):
            items = [item.strip() if isinstance(item, str) else item for item in value]
        else:
            raise InvalidValue(f"expected a list or a comma-separated string, got {_kind(value)}")
        parsed: list[T] = []
        problems: list[str] = []
        for item in items:
            if item == "":
                continue
            try:
                parsed.append(parse_item(item))
            except InvalidValue as error:
                problems.extend(error.messages)
        if problems:
            raise InvalidValue(*problems)
        return tuple(parsed)

    return parse_list


def parse_http_url(value: object) -> str:
    """An absolute `http(s)://host...` URL."""
    text = parse_text(value)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidValue(f"not a valid URL: {_show(text)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"expected an absolute http(s) URL, got {_show(text)}")
    return text


def parse_http_url_or_path(value: object) -> str:
    """An absolute http(s) URL, or a path on this host such as `/__clerk` or `/sign-in`."""
    text = parse_text(value)
    if text.startswith("/") and not text.startswith("//"):
        return text
    try:
        return parse_http_url(text)
    except InvalidValue:
        raise InvalidValue(f"expected an absolute http(s) URL or a path starting with /, got {_show(text)}") from None


def parse_origin(value: object) -> str:
    """`scheme://host[:port]` exactly, as browsers send in `Origin` and Clerk puts in `azp`."""
    text = parse_text(value)
    try:
        parts = urlsplit(parse_http_url(text))
    except InvalidValue:
        raise InvalidValue(f"expected an origin such as https://app.example.com, got {_show(text)}") from None
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidValue(f"expected an origin (scheme and host, no path or trailing /), got {_show(text)}")
    return text


_HOST_NAME = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def parse_host_name(value: object) -> str:
    """A bare host name (`example.com`), no scheme, port or path; `*.example.com` allowed for lists."""
    text = parse_text(value).lower()
    if not _HOST_NAME.match(text):
        raise InvalidValue(f"expected a host name such as example.com (no scheme, port or path), got {_show(text)}")
    return text


def parse_domain(value: object) -> str:
    text = parse_host_name(value)
    if text.startswith("*."):
        raise InvalidValue(f"expected a host name such as example.com, got {_show(text)}")
    return text


def parse_allowed_host(value: object) -> str:
    """A host name, optionally with `:port` (matched against the `Host` header)."""
    text = parse_text(value).lower()
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if port and not port.isdigit():
        raise InvalidValue(f"expected a host name with an optional :port, got {_show(text)}")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        parse_host_name(host)
    return text


def parse_path_pattern(value: object) -> str:
    text = parse_text(value)
    if not text.startswith("/") or any(character.isspace() for character in text):
        raise InvalidValue(f"expected a path pattern starting with / (e.g. /public/*), got {_show(text)}")
    return text


def parse_path_segment(value: object) -> str:
    text = parse_text(value)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text):
        raise InvalidValue(f"expected a single path segment such as v1, got {_show(text)}")
    return text


def parse_frontend_api_path(value: object) -> str | None:
    """The path the Frontend API is proxied under; empty disables the proxy."""
    text = parse_text(value)
    if text == "":
        return None
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", text):
        raise InvalidValue(f"expected a path such as /__clerk (no trailing /), or empty to disable, got {_show(text)}")
    return text


def parse_listen_address(value: object) -> ListenAddress:
    text = parse_text(value)
    host, separator, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not separator or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidValue(f"expected HOST:PORT with a port from 1 to 65535, got {_show(text)}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host) or host.startswith("*."):
            raise InvalidValue(f"expected HOST:PORT with an IP address or host name, got {_show(text)}") from None
    return ListenAddress(host=host, port=int(port_text))


def parse_mode(value: object) -> Mode:
    text = parse_text(value).lower()
    for mode in MODES:
        if text == mode:
            return mode
    raise InvalidValue(f"expected one of {', '.join(MODES)}, got {_show(text)}")


def parse_path_case(value: object) -> PathCase:
    text = parse_text(value).lower()
    for case in PATH_CASES:
        if text == case:
            return case
    raise InvalidValue(f"expected one of {', '.join(PATH_CASES)}, got {_show(text)}")


def parse_network(value: object) -> IPNetwork:
    text = parse_text(value)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidValue(f"expected an IP address or CIDR such as 10.0.0.0/8, got {_show(text)}") from None


def _normalize_pem(text: str, kind: str) -> bytes:
    """Accept what Clerk's SDK accepts: literal `\\n` from env files, or the bare base64 body."""
    text = text.replace("\\n", "\n").strip()
    if "-----BEGIN" not in text:
        body = "".join(text.split())
        text = f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"
    return text.encode()


def _load_rsa_public_key(text: str) -> RSAPublicKey:
    try:
        key = load_pem_public_key(_normalize_pem(text, "PUBLIC KEY"))
    except (ValueError, TypeError):
        raise InvalidValue("not a PEM RSA public key") from None
    if not isinstance(key, RSAPublicKey):
        raise InvalidValue("not a PEM RSA public key")
    return key


def _read_key_file(value: object) -> tuple[Path, str]:
    path = Path(parse_text(value)).expanduser()
    try:
        return path, path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not a text file"
        raise InvalidValue(f"cannot read {str(path)!r}: {reason}") from None


def parse_jwt_key(value: object) -> PemKey[RSAPublicKey]:
    return PemKey(source="CLERK_JWT_KEY", key=_load_rsa_public_key(parse_text(value)))


def parse_jwt_key_file(value: object) -> PemKey[RSAPublicKey]:
    path, text = _read_key_file(value)
    try:
        return PemKey(source=str(path), key=_load_rsa_public_key(text))
    except InvalidValue:
        raise InvalidValue(f"{str(path)!r} is not a PEM RSA public key") from None


_SIGNING_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


def parse_private_key_file(value: object) -> PemKey[PrivateKeyTypes]:
    path, text = _read_key_file(value)
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise InvalidValue(f"{str(path)!r} is not an unencrypted PEM private key") from None
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise InvalidValue(f"{str(path)!r} is not an RSA, EC or EdDSA private key")
    return PemKey(source=str(path), key=key)


def _table(value: object, what: str) -> Mapping[str, object]:
    """A TOML table, or a JSON object given as a string (how tables travel through the environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InvalidValue(f"invalid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidValue(f"expected {what}, got {_kind(value)}")
    return cast(Mapping[str, object], value)


def _unknown_key_message(key: str, known: Sequence[str], where: str) -> str:
    """Name the closest known key, since an unknown key is almost always a typo."""
    suggestion = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {suggestion[0]!r}?" if suggestion else f"expected one of {', '.join(known)}"
    return f"unknown key {key!r} in {where} ({hint})"


_ORGANIZATION_SYNC_KEYS = {
    "organizationPatterns": "organization_patterns",
    "organization_patterns": "organization_patterns",
    "personalAccountPatterns": "personal_account_patterns",
    "personal_account_patterns": "personal_account_patterns",
}


def parse_organization_sync(value: object) -> OrganizationSyncOptions:
    """`{"organizationPatterns": [...], "personalAccountPatterns": [...]}` (snake_case accepted too)."""
    table = _table(value, "a table or JSON object with organizationPatterns / personalAccountPatterns")
    problems: list[str] = []
    patterns: dict[str, tuple[str, ...]] = {}
    for key, item in table.items():
        if key not in _ORGANIZATION_SYNC_KEYS:
            problems.append(
                _unknown_key_message(key, ["organizationPatterns", "personalAccountPatterns"], "the options")
            )
            continue
        if not isinstance(item, list):
            problems.append(f"{key} must be a list of path patterns, got {_kind(item)}")
            continue
        try:
            patterns[_ORGANIZATION_SYNC_KEYS[key]] = list_of(parse_path_pattern)(item)
        except InvalidValue as error:
            problems.extend(f"{key}: {message}" for message in error.messages)
    if problems:
        raise InvalidValue(*problems)
    return OrganizationSyncOptions(**patterns)


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_header_name(value: object) -> str:
    text = parse_text(value)
    if not _HEADER_NAME.match(text):
        raise InvalidValue(f"not a valid HTTP header name: {_show(text)}")
    return text


def parse_identity_headers(value: object) -> IdentityHeaders:
    """Overrides of the default header names, by logical name (`user_id = "X-User"`)."""
    table = _table(value, "a table mapping names such as user_id to header names")
    known = [item.name for item in fields(IdentityHeaders)]
    problems: list[str] = []
    overrides: dict[str, str] = {}
    for key, item in table.items():
        if key not in known:
            problems.append(_unknown_key_message(key, known, "identity_headers"))
            continue
        try:
            overrides[key] = parse_header_name(item)
        except InvalidValue as error:
            problems.extend(f"{key}: {message}" for message in error.messages)
    headers = replace(IdentityHeaders(), **overrides)
    names = headers.names()
    lowered = [name.lower() for name in names]
    problems.extend(
        f"header {name!r} is used for more than one identity value"
        for position, name in enumerate(names)
        if lowered.count(name.lower()) > 1 and lowered.index(name.lower()) == position
    )
    if problems:
        raise InvalidValue(*problems)
    return headers


def parse_access(value: object) -> Access:
    text = parse_text(value).lower()
    for access in ACCESS_LEVELS:
        if text == access:
            return access
    raise InvalidValue(f"expected one of {', '.join(ACCESS_LEVELS)}, got {_show(text)}")


_ROUTE_KEY_PARSERS: dict[str, Callable[[object], object]] = {
    "path": parse_path_pattern,
    "access": parse_access,
    "org_role": parse_text,
    "org_permission": parse_text,
    "require_org": parse_boolean,
    "api": parse_boolean,
}


def _parse_route(value: object) -> RouteRule:
    table = _table(value, "a table with path and access")
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, item in table.items():
        if key not in _ROUTE_KEY_PARSERS:
            problems.append(_unknown_key_message(key, list(_ROUTE_KEY_PARSERS), "the route"))
            continue
        try:
            parsed = _ROUTE_KEY_PARSERS[key](item)
        except InvalidValue as error:
            problems.extend(f"{key}: {message}" for message in error.messages)
            continue
        if parsed != "":
            values[key] = parsed
    if "path" not in values and not any(message.startswith("path:") for message in problems):
        problems.append("path is missing")
    requires_identity = values.get("org_role") or values.get("org_permission") or values.get("require_org")
    if values.get("access") == "public" and requires_identity:
        problems.append("a public route cannot require an organization, role or permission")
    if problems:
        raise InvalidValue(*problems)
    return RouteRule(**values)


def parse_routes(value: object) -> tuple[RouteRule, ...]:
    """An array of tables (`[[gateway.routes]]`), or a JSON array in the environment."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InvalidValue(f"invalid JSON: {error}") from None
    if not isinstance(value, list):
        raise InvalidValue(f"expected an array of tables ([[gateway.routes]]), got {_kind(value)}")
    routes: list[RouteRule] = []
    problems: list[str] = []
    for number, item in enumerate(value, start=1):
        try:
            routes.append(_parse_route(item))
        except InvalidValue as error:
            label = f"route {number}"
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                label += f" ({item['path']})"
            problems.extend(f"{label}: {message}" for message in error.messages)
    if problems:
        raise InvalidValue(*problems)
    return tuple(routes)


# --------------------------------------------------------------------------------------------------
# The table: each setting declared once, as a dataclass field carrying its spec.

_SPEC = "gateway.settings.spec"


@dataclass(frozen=True, slots=True)
class _Declared:
    env_var: str
    parse: Callable[[object], object]
    help: str
    empty_is_unset: bool
    default_text: str | None


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One row of the configuration table."""

    section: str  # TOML table, e.g. "gateway"
    key: str  # TOML key and attribute name, e.g. "upstream"
    env_var: str  # e.g. "GATEWAY_UPSTREAM"
    parse: Callable[[object], object]
    default: object
    help: str
    empty_is_unset: bool = True
    default_text: str | None = None  # how the reference shows the default, when repr is not enough

    @property
    def toml_name(self) -> str:
        return f"{self.section}.{self.key}"


def setting(
    default: T,
    parse: Callable[[object], T],
    *,
    env: str,
    help: str,
    empty_is_unset: bool = True,
    default_text: str | None = None,
) -> T:
    """Declare a setting as a dataclass field (the only place a setting is described)."""
    declared = _Declared(env, parse, help, empty_is_unset, default_text)
    return field(default=default, metadata={_SPEC: declared})


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
        help="The satellite's own domain (production satellites use `clerk.<domain>`).",
    )  # fmt: skip
    is_satellite: bool = setting(
        False, parse_boolean, env="CLERK_IS_SATELLITE", help="This app runs on a satellite domain."
    )
    sign_in_url: str | None = setting(
        None, parse_http_url_or_path, env="CLERK_SIGN_IN_URL",
        help="Sign-in page signed-out visitors are sent to; satellites need an absolute URL on the primary.",
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
        help="Route rules: `[[gateway.routes]]` with `path`, `access` (`public`/`signed-in`), optional "
        "`org_role`, `org_permission`, `require_org`, `api` (JSON array in the environment).",
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
        "org_permissions` (a table; JSON in the environment).",
        default_text="`X-Clerk-Auth-Status`, `X-Clerk-Auth-Reason`, `X-Clerk-User-Id`, …",
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
    assertion_key: PemKey[PrivateKeyTypes] | None = setting(
        None, parse_private_key_file, env="GATEWAY_ASSERTION_KEY",
        help="Path of a PEM private key; when set, a signed identity assertion is sent to the app.",
    )  # fmt: skip


SECTIONS: tuple[tuple[str, type[ClerkSettings] | type[GatewaySettings]], ...] = (
    ("clerk", ClerkSettings),
    ("gateway", GatewaySettings),
)


def setting_specs() -> tuple[SettingSpec, ...]:
    """The whole configuration table, in declaration order."""
    return tuple(_specs())


def _specs() -> Iterator[SettingSpec]:
    for section, section_class in SECTIONS:
        for item in fields(section_class):
            declared: _Declared = item.metadata[_SPEC]
            yield SettingSpec(
                section=section,
                key=item.name,
                env_var=declared.env_var,
                parse=declared.parse,
                default=item.default,
                help=declared.help,
                empty_is_unset=declared.empty_is_unset,
                default_text=declared.default_text,
            )


# --------------------------------------------------------------------------------------------------
# The validated result


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway is configured with. `clerk` is the core's view; the rest is for the edge.

    `clerk` holds the secret key in clear, so it is left out of `repr`; `clerk_settings` shows it masked.
    """

    clerk: ClerkOptions = field(repr=False)
    clerk_settings: ClerkSettings
    gateway: GatewaySettings
    config_path: Path | None = None

    @property
    def masked_secret_key(self) -> str | None:
        secret = self.clerk_settings.secret_key
        return secret.masked if secret else None


# --------------------------------------------------------------------------------------------------
# Loading


def load_settings(
    config_path: str | Path | None,
    environ: Mapping[str, str],
    *,
    require_upstream: bool = False,
) -> Settings:
    """Read the TOML file (if any) and the environment, validate everything, raise `SettingsError` with
    every problem found. `require_upstream` is for commands that proxy (`gateway serve`)."""
    path = Path(config_path) if config_path is not None else None
    document = _read_toml(path) if path is not None else {}
    problems = list(_unknown_toml_keys(document, path))
    values: dict[str, dict[str, object]] = {section: {} for section, _ in SECTIONS}
    failed: set[str] = set()
    for spec in setting_specs():
        raw = _raw_value(spec, document, environ)
        if raw is None:
            continue
        try:
            values[spec.section][spec.key] = spec.parse(raw)
        except InvalidValue as error:
            failed.add(spec.env_var)
            problems.extend(f"{spec.env_var}: {message}" for message in error.messages)
    clerk = ClerkSettings(**values["clerk"])  # type: ignore[arg-type]
    gateway = GatewaySettings(**values["gateway"])  # type: ignore[arg-type]
    problems.extend(_clerk_problems(clerk, gateway, failed))
    if require_upstream and gateway.upstream is None and "GATEWAY_UPSTREAM" not in failed:
        problems.append("GATEWAY_UPSTREAM: missing; set the http(s) URL of the app to proxy to")
    if problems:
        raise SettingsError(problems)
    return Settings(clerk=_clerk_options(clerk, gateway), clerk_settings=clerk, gateway=gateway, config_path=path)


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's content; an unreadable or invalid file is the only problem worth reporting then."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise SettingsError([f"{path}: cannot read the configuration file: {error.strerror or error}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError([f"{path}: invalid TOML: {error}"]) from None
    except UnicodeDecodeError:
        raise SettingsError([f"{path}: invalid TOML: the file is not UTF-8"]) from None


def _unknown_toml_keys(document: Mapping[str, Any], path: Path | None) -> Iterator[str]:
    where = path.name if path else "the configuration file"
    sections = [section for section, _ in SECTIONS]
    known_keys = {section: [spec.key for spec in setting_specs() if spec.section == section] for section in sections}
    for section, content in document.items():
        if section not in known_keys:
            yield f"{section}: unknown section in {where} (expected one of {', '.join(sections)})"
        elif not isinstance(content, dict):
            yield f"{section}: expected a table [{section}] in {where}, got {_kind(content)}"
        else:
            for key in content:
                if key not in known_keys[section]:
                    yield f"{section}.{key}: {_unknown_key_message(key, known_keys[section], where)}"


def _raw_value(spec: SettingSpec, document: Mapping[str, Any], environ: Mapping[str, str]) -> object | None:
    """The environment wins over the file; an empty value is "unset" unless the setting says otherwise."""
    from_environment = environ.get(spec.env_var)
    if from_environment is not None and (from_environment.strip() or not spec.empty_is_unset):
        return from_environment
    section = document.get(spec.section)
    from_file = section.get(spec.key) if isinstance(section, dict) else None
    if isinstance(from_file, str) and not from_file.strip() and spec.empty_is_unset:
        return None
    return from_file


def _clerk_problems(clerk: ClerkSettings, gateway: GatewaySettings, failed: set[str]) -> Iterator[str]:
    """Cross-setting checks, in the order of Clerk's own assertions (PROTOCOL.md §1.1, §1.3)."""
    if clerk.publishable_key is None and "CLERK_PUBLISHABLE_KEY" not in failed:
        try:
            parse_publishable_key(None)
        except ConfigurationError as error:
            yield str(error)
    if clerk.jwt_key and clerk.jwt_key_file:
        yield "CLERK_JWT_KEY_FILE: set either CLERK_JWT_KEY or CLERK_JWT_KEY_FILE, not both"
    if not clerk.secret_key and clerk.verification_key is None and not failed & {"CLERK_JWT_KEY", "CLERK_JWT_KEY_FILE"}:
        yield f"CLERK_SECRET_KEY: {MISSING_SECRET_KEY} (Or set CLERK_JWT_KEY to verify tokens without the network.)"
    if clerk.is_satellite:
        yield from _satellite_problems(clerk, gateway, failed)


def _satellite_problems(clerk: ClerkSettings, gateway: GatewaySettings, failed: set[str]) -> Iterator[str]:
    """PROTOCOL.md §1.3 (2a)-(2c), checked at start; (b) against `GATEWAY_PUBLIC_ORIGIN` when it is set."""
    if clerk.sign_in_url is None and "CLERK_SIGN_IN_URL" not in failed:
        if _is_development(clerk):
            yield "CLERK_SIGN_IN_URL: Missing signInUrl. Pass a signInUrl for dev instances if an app is satellite"
        else:
            yield (
                "CLERK_SIGN_IN_URL: Missing signInUrl. A production satellite sends signed-out visitors to "
                "the sign-in page of its primary domain; set it as an absolute URL"
            )
    elif clerk.sign_in_url is not None:
        if clerk.sign_in_url.startswith("/"):
            yield "CLERK_SIGN_IN_URL: The signInUrl needs to have a absolute url format."
        elif gateway.public_origin and _origin_of(clerk.sign_in_url) == _origin_of(gateway.public_origin):
            yield (
                "CLERK_SIGN_IN_URL: The signInUrl needs to be on a different origin than your satellite "
                "application (GATEWAY_PUBLIC_ORIGIN)."
            )
    if not clerk.domain and not clerk.proxy_url and not failed & {"CLERK_DOMAIN", "CLERK_PROXY_URL"}:
        yield (
            "CLERK_DOMAIN: Missing domain and proxyUrl. A satellite application needs to specify a domain "
            "(CLERK_DOMAIN) or a proxyUrl (CLERK_PROXY_URL)"
        )


def _is_development(clerk: ClerkSettings) -> bool:
    """Clerk decides by the secret key's prefix; without one, by the publishable key's instance type."""
    if clerk.secret_key:
        return is_development_secret_key(clerk.secret_key.value)
    return clerk.publishable_key is not None and not clerk.publishable_key.is_production


def _origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), parts.port or default_port


def _clerk_options(clerk: ClerkSettings, gateway: GatewaySettings) -> ClerkOptions:
    assert clerk.publishable_key is not None  # guaranteed by validation
    verification_key = clerk.verification_key
    return ClerkOptions(
        publishable_key=clerk.publishable_key,
        secret_key=clerk.secret_key.value if clerk.secret_key else None,
        jwt_key=verification_key.key if verification_key else None,
        api_url=clerk.api_url,
        api_version=clerk.api_version,
        proxy_url=clerk.proxy_url,
        domain=clerk.domain,
        is_satellite=clerk.is_satellite,
        sign_in_url=clerk.sign_in_url,
        sign_up_url=clerk.sign_up_url,
        authorized_parties=clerk.authorized_parties,
        audience=clerk.audience,
        clock_skew_ms=clerk.clock_skew_ms,
        satellite_auto_sync=clerk.satellite_auto_sync,
        organization_sync=clerk.organization_sync_options,
        frontend_api_url=clerk.frontend_api_url,
        refresh_any_method=gateway.refresh_any_method,
        allowed_redirect_origins=(
            *gateway.allowed_redirect_origins, *clerk.authorized_parties, *filter(None, [gateway.public_origin])
        ),
    )
