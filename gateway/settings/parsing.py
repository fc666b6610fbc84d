"""Parsers for single values, and the combinators that build them (`integer`, `seconds`, `list_of`).

Each takes a raw value (a string from the environment, or a TOML value) and returns the typed value
or raises `InvalidValue`. Empty values never reach them unless the setting says so. Why a module of
its own: the same small parsers serve every setting, and the messages they write are what an
operator reads, so they are kept together to stay consistent.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, cast
from urllib.parse import urlsplit

from gateway.clerk.errors import ConfigurationError
from gateway.clerk.keys import PublishableKey, parse_publishable_key
from gateway.clerk.token_types import TOKEN_TYPES, AcceptsToken, TokenType
from gateway.settings.errors import InvalidValue
from gateway.settings.values import MODES, PATH_CASES, IPNetwork, ListenAddress, Mode, PathCase, RedisUrl, Secret

T = TypeVar("T")
S = TypeVar("S", bound=str)


def show(value: object) -> str:
    """A raw value as a message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: object) -> str:
    """What kind of TOML value this is, for "expected X, got a list"."""
    kinds: list[tuple[type, str]] = [
        (bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
        (list, "a list"), (dict, "a table"),
    ]  # fmt: skip
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def parse_text(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"expected a string, got {kind_of(value)}")
    return value.strip()


def parse_secret(value: object) -> Secret:
    return Secret(parse_text(value))


def parse_webhook_signing_secret(value: object) -> Secret:
    """A Svix signing secret as Clerk's dashboard shows it: `whsec_` and base64 of the key."""
    text = parse_text(value)
    if not text.startswith("whsec_"):
        raise InvalidValue("expected a webhook signing secret starting with `whsec_` (Clerk's dashboard: Webhooks)")
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise InvalidValue("the part after `whsec_` is not base64; copy the signing secret again") from None
    if len(key) < 16:
        raise InvalidValue("the signing secret is too short (under 16 bytes); copy it again")
    return Secret(text)


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
        raise InvalidValue(f"expected true or false, got {kind_of(value)}")
    text = value.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise InvalidValue(f"expected true or false (or 1/0), got {show(value)}")


def parse_literal_true(value: object) -> bool:
    """Like Clerk's `satelliteAutoSync`: only `true` enables; `false` disables; others are reported."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise InvalidValue(f"expected true or false, got {kind_of(value)}")
    text = value.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise InvalidValue(f"expected true or false, got {show(value)}")


def integer(minimum: int) -> Callable[[object], int]:
    def parse_integer(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidValue(f"expected an integer, got {kind_of(value)}")
        try:
            number = int(value)
        except ValueError:
            raise InvalidValue(f"expected an integer, got {show(value)}") from None
        if number < minimum:
            raise InvalidValue(f"must be at least {minimum}, got {number}")
        return number

    return parse_integer


def seconds(*, allow_zero: bool = False) -> Callable[[object], float]:
    def parse_seconds(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidValue(f"expected a number of seconds, got {kind_of(value)}")
        try:
            number = float(value)
        except ValueError:
            raise InvalidValue(f"expected a number of seconds, got {show(value)}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidValue(f"expected a finite number of seconds, got {show(value)}")
        if number < 0 or (number == 0 and not allow_zero):
            raise InvalidValue(f"must be {'0 or more' if allow_zero else 'more than 0'}, got {show(value)}")
        return number

    return parse_seconds


def one_of(choices: Sequence[S], text: str) -> S:
    """The choice `text` names, or the message listing every choice (one wording for every enum setting)."""
    for choice in choices:
        if text == choice:
            return choice
    raise InvalidValue(f"expected one of {', '.join(choices)}, got {show(text)}")


def list_of(parse_item: Callable[[object], T]) -> Callable[[object], tuple[T, ...]]:
    """A TOML list, or a comma-separated string; items are trimmed and empty items dropped."""

    def parse_list(value: object) -> tuple[T, ...]:
        if isinstance(value, str):
            items: list[object] = [item.strip() for item in value.split(",")]
        elif isinstance(value, list):
            items = [item.strip() if isinstance(item, str) else item for item in value]
        else:
            raise InvalidValue(f"expected a list or a comma-separated string, got {kind_of(value)}")
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
        raise InvalidValue(f"not a valid URL: {show(text)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"expected an absolute http(s) URL, got {show(text)}")
    return text


REDIS_SCHEMES = ("redis", "rediss", "unix")


def parse_redis_url(value: object) -> RedisUrl:
    """`redis://[user:password@]host[:port][/db]`, `rediss://` (TLS) or `unix:///path/to/socket[?db=N]`."""
    text = parse_text(value)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidValue(f"not a valid URL: {RedisUrl(text)}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise InvalidValue(f"expected a redis://, rediss:// or unix:// URL, got {RedisUrl(text)}")
    if parts.scheme == "unix":
        if not parts.path.startswith("/") or parts.netloc.rsplit("@", 1)[-1]:
            raise InvalidValue(f"expected unix:///absolute/path/to/redis.sock, got {RedisUrl(text)}")
        return RedisUrl(text)
    if not parts.hostname:
        raise InvalidValue(f"expected a host, as in redis://redis:6379/0, got {RedisUrl(text)}")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise InvalidValue(f"the path names the database and must be a number (/0), got {RedisUrl(text)}")
    return RedisUrl(text)


def parse_http_url_or_path(value: object) -> str:
    """An absolute http(s) URL, or a path on this host such as `/__clerk` or `/sign-in`."""
    text = parse_text(value)
    if text.startswith("/") and not text.startswith("//"):
        return text
    try:
        return parse_http_url(text)
    except InvalidValue:
        raise InvalidValue(f"expected an absolute http(s) URL or a path starting with /, got {show(text)}") from None


def parse_origin(value: object) -> str:
    """`scheme://host[:port]` exactly, as browsers send in `Origin` and Clerk puts in `azp`."""
    text = parse_text(value)
    try:
        parts = urlsplit(parse_http_url(text))
    except InvalidValue:
        raise InvalidValue(f"expected an origin such as https://app.example.com, got {show(text)}") from None
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidValue(f"expected an origin (scheme and host, no path or trailing /), got {show(text)}")
    return text


_HOST_NAME = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def parse_host_name(value: object) -> str:
    """A bare host name (`example.com`), no scheme, port or path; `*.example.com` allowed for lists."""
    text = parse_text(value).lower()
    if not _HOST_NAME.match(text):
        raise InvalidValue(f"expected a host name such as example.com (no scheme, port or path), got {show(text)}")
    return text


def parse_domain(value: object) -> str:
    """A satellite's domain as Clerk's SDKs take it: a host name, optionally with `:port` (Clerk's
    local-development docs use `localhost:3001`). A leading `http(s)://` and a trailing `/` are dropped,
    as clerk-js drops them (the backend SDK would build `clerk.https://...` from them, which can never
    match); a path, a wildcard or spaces can never name a domain and are refused."""
    text = parse_text(value)
    bare = re.sub(r"^https?://", "", text, flags=re.IGNORECASE).rstrip("/").lower()
    host, _, port = bare.rpartition(":") if bare.count(":") == 1 else (bare, "", "")
    valid_port = not port or (port.isdigit() and 1 <= int(port) <= 65535)
    try:
        ipaddress.ip_address(host.strip("[]"))
        valid_host = True
    except ValueError:
        valid_host = bool(_HOST_NAME.match(host)) and not host.startswith("*.")
    if not (valid_host and valid_port):
        raise InvalidValue(
            f"expected a domain such as example.com or localhost:3001 (a host name, optionally with :port), "
            f"got {show(text)}"
        )
    return f"{host}:{port}" if port else host


def parse_allowed_host(value: object) -> str:
    """A host name, optionally with `:port` (matched against the `Host` header)."""
    text = parse_text(value).lower()
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if port and not port.isdigit():
        raise InvalidValue(f"expected a host name with an optional :port, got {show(text)}")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        parse_host_name(host)
    return text


def parse_path_pattern(value: object) -> str:
    text = parse_text(value)
    if not text.startswith("/") or any(character.isspace() for character in text):
        raise InvalidValue(f"expected a path pattern starting with / (e.g. /public/*), got {show(text)}")
    return text


def parse_path_segment(value: object) -> str:
    text = parse_text(value)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text):
        raise InvalidValue(f"expected a single path segment such as v1, got {show(text)}")
    return text


def parse_frontend_api_path(value: object) -> str | None:
    """The path the Frontend API is proxied under; empty disables the proxy."""
    text = parse_text(value)
    if text == "":
        return None
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", text):
        raise InvalidValue(f"expected a path such as /__clerk (no trailing /), or empty to disable, got {show(text)}")
    return text


def parse_listen_address(value: object) -> ListenAddress:
    text = parse_text(value)
    host, separator, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not separator or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidValue(f"expected HOST:PORT with a port from 1 to 65535, got {show(text)}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host) or host.startswith("*."):
            raise InvalidValue(f"expected HOST:PORT with an IP address or host name, got {show(text)}") from None
    return ListenAddress(host=host, port=int(port_text))


def parse_mode(value: object) -> Mode:
    return one_of(MODES, parse_text(value).lower())


def _token_type(value: object) -> TokenType:
    return one_of(TOKEN_TYPES, parse_text(value).lower())


def parse_accepts_token(value: object) -> AcceptsToken:
    """Clerk's `acceptsToken`: one kind, `any`, or a list (a TOML array, or kinds separated by commas).

    A one-element list is kept a list: Clerk checks a list's kinds before anything else (row A1)."""
    if isinstance(value, str) and "," not in value:
        text = parse_text(value).lower()
        return "any" if text == "any" else _token_type(text)
    if not isinstance(value, str | list):
        raise InvalidValue(f"expected a token type, `any` or a list, got {kind_of(value)}")
    kinds = list_of(_token_type)(value)
    if not kinds:
        raise InvalidValue("expected at least one token type")
    return tuple(dict.fromkeys(kinds))


def parse_path_case(value: object) -> PathCase:
    return one_of(PATH_CASES, parse_text(value).lower())


def parse_network(value: object) -> IPNetwork:
    text = parse_text(value)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidValue(f"expected an IP address or CIDR such as 10.0.0.0/8, got {show(text)}") from None


def from_environment_json(value: object) -> object:
    """Tables and arrays travel through the environment as JSON text: decode a string, keep anything else."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise InvalidValue(f"invalid JSON: {error}") from None


def table_of(value: object, what: str) -> Mapping[str, object]:
    """A TOML table, or a JSON object given as a string (how tables travel through the environment)."""
    value = from_environment_json(value)
    if not isinstance(value, dict):
        raise InvalidValue(f"expected {what}, got {kind_of(value)}")
    return cast(Mapping[str, object], value)


def unknown_key_message(key: str, known: Sequence[str], where: str) -> str:
    """Name the closest known key, since an unknown key is almost always a typo."""
    suggestion = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {suggestion[0]!r}?" if suggestion else f"expected one of {', '.join(known)}"
    return f"unknown key {key!r} in {where} ({hint})"
