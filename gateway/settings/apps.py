"""`[[gateway.apps]]`: several apps behind one gateway, each chosen by host and/or path prefix.

Why a module of its own: an app is a table of its own settings (upstream, route rules, timeouts, ...),
checked key by key like a route rule, and the apps are checked together (unique names, no two apps on
the same host and prefix). Every problem names its app: `apps[2] (prometheus): upstream is missing`
(apps are counted from 1, as routes are). Without `[[gateway.apps]]` the top-level settings are the
one app; `effective_apps` turns either shape into the list the edge builds its apps from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.clerk.token_types import AcceptsToken
from gateway.settings.clerk import ClerkSettings
from gateway.settings.errors import InvalidValue
from gateway.settings.identity import IdentitySettings, parse_identity_settings
from gateway.settings.parsing import (
    from_environment_json,
    kind_of,
    list_of,
    parse_accepts_token,
    parse_allowed_host,
    parse_boolean,
    parse_http_url,
    parse_path_pattern,
    parse_text,
    seconds,
    show,
    table_of,
    unknown_key_message,
)
from gateway.settings.routes import parse_routes
from gateway.settings.table import section_specs
from gateway.settings.values import RouteRule

DEFAULT_APP = "default"
"""The name of the app the top-level settings describe (`upstream`, `routes`, ...)."""

_NAME = re.compile(r"[a-z0-9-]+")
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")


@dataclass(frozen=True, slots=True)
class AppSettings:
    """One app. None: the top-level setting of the same name applies (`preserve_host`, timeouts,
    `accepts_token`, `identity`, `assertion_audience`)."""

    name: str
    upstream: str | None
    hosts: tuple[str, ...] = ()
    path_prefix: str = "/"
    strip_prefix: bool = False
    preserve_host: bool | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    websockets: bool = True
    public_paths: tuple[str, ...] = ()
    api_paths: tuple[str, ...] = ()
    routes: tuple[RouteRule, ...] = ()
    accepts_token: AcceptsToken | None = None
    assertion_audience: str | None = None
    identity: IdentitySettings | None = None
    clerk: ClerkSettings | None = field(default=None, repr=False)
    """The app's own Clerk instance; None: the `[clerk]` one."""
    implicit: bool = False
    """The default app, made of the top-level settings."""


def parse_app_name(value: object) -> str:
    text = parse_text(value)
    if not _NAME.fullmatch(text):
        raise InvalidValue(f"expected a name of a-z, 0-9 and -, got {show(text)}")
    return text


def parse_path_prefix(value: object) -> str:
    """`/` or a clean absolute path: no trailing `/`, no `.`/`..` segment, nothing that needs escaping,
    so the prefix is the same whether read on the raw or on the canonical path."""
    text = parse_text(value)
    if text == "/":
        return text
    if not _PREFIX.fullmatch(text) or any(segment in (".", "..") for segment in text.split("/")):
        raise InvalidValue(
            f"expected / or a clean absolute path such as /prom (letters, digits, . _ ~ -, no trailing /, "
            f"no . or .. segment), got {show(text)}"
        )
    return text


def parse_app_host(value: object) -> str:
    """A `Host` value the app answers: `host[:port]` or `*.example.com[:port]`; lower-case, no trailing dot."""
    text = parse_text(value)
    if text.endswith("."):
        raise InvalidValue(f"expected a host without a trailing dot (it is matched either way), got {show(text)}")
    try:
        return parse_allowed_host(text)
    except InvalidValue:
        raise InvalidValue(
            f"expected a host such as tools.example.com or *.example.com:8080, got {show(text)}"
        ) from None


def matched_host(host: str) -> str:
    """A configured host as requests are matched against it (`edge.app_choice`): its port as a number,
    and `:80` or `:443` as no port."""
    name, colon, port = host.rpartition(":") if not host.endswith("]") and ":" in host else (host, "", "")
    if port.isdigit() and port.isascii():
        port = str(int(port))
    return name if port in ("80", "443") else f"{name}{colon}{port}"


def _parse_audience(value: object) -> str:
    text = parse_text(value)
    if not text:
        raise InvalidValue("expected a non-empty audience")
    return text


def parse_app_clerk(value: object) -> ClerkSettings:
    """An app's own Clerk instance: the `[clerk]` keys, each parsed as there (nothing is inherited from
    `[clerk]`: an instance's keys and URLs belong together)."""
    table = table_of(value, "a table of [clerk] keys such as {publishable_key = \"pk_...\", secret_key = \"sk_...\"}")
    specs = {spec.key: spec for spec in section_specs("clerk", ClerkSettings)}
    problems: list[str] = []
    values: dict[str, object] = {}
    for key, item in table.items():
        spec = specs.get(key)
        if spec is None:
            problems.append(unknown_key_message(key, list(specs), "the app's clerk table"))
            continue
        if isinstance(item, str) and not item.strip() and spec.empty_is_unset:
            continue
        try:
            values[key] = spec.parse(item)
        except InvalidValue as error:
            problems.extend(f"{key}: {message}" for message in error.messages)
    if "publishable_key" not in table:
        problems.append("publishable_key is missing (an app's own instance names its own keys)")
    if problems:
        raise InvalidValue(*problems)
    return ClerkSettings(**values)  # type: ignore[arg-type]


_APP_KEY_PARSERS: dict[str, Callable[[object], object]] = {
    "name": parse_app_name,
    "hosts": list_of(parse_app_host),
    "path_prefix": parse_path_prefix,
    "upstream": parse_http_url,
    "strip_prefix": parse_boolean,
    "preserve_host": parse_boolean,
    "connect_timeout": seconds(),
    "read_timeout": seconds(),
    "websockets": parse_boolean,
    "public_paths": list_of(parse_path_pattern),
    "api_paths": list_of(parse_path_pattern),
    "routes": parse_routes,
    "accepts_token": parse_accepts_token,
    "assertion_audience": _parse_audience,
    "identity": parse_identity_settings,
    "clerk": parse_app_clerk,
}
APP_KEYS = tuple(_APP_KEY_PARSERS)


def _parse_app(value: object) -> AppSettings:
    table = table_of(value, "a table with name and upstream")
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, item in table.items():
        parser = _APP_KEY_PARSERS.get(key)
        if parser is None:
            problems.append(unknown_key_message(key, list(APP_KEYS), "the app"))
            continue
        try:
            values[key] = parser(item)
        except InvalidValue as error:
            problems.extend(f"{key}: {message}" for message in error.messages)
    for required in ("name", "upstream"):
        if required not in table:
            problems.append(f"{required} is missing")
    if values.get("strip_prefix") and values.get("path_prefix", "/") == "/":
        problems.append("strip_prefix: needs a path_prefix other than /")
    if problems:
        raise InvalidValue(*problems)
    return AppSettings(**values)


def parse_apps(value: object) -> tuple[AppSettings, ...]:
    """An array of tables (`[[gateway.apps]]`), or a JSON array in the environment; each problem names
    its app, and names and host+prefix pairs must be unique."""
    value = from_environment_json(value)
    if not isinstance(value, list):
        raise InvalidValue(f"expected an array of tables ([[gateway.apps]]), got {kind_of(value)}")
    apps: list[AppSettings] = []
    problems: list[str] = []
    for number, item in enumerate(value, start=1):
        label = f"apps[{number}]"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            label += f" ({item['name']})"
        try:
            apps.append(_parse_app(item))
        except InvalidValue as error:
            problems.extend(f"{label}: {message}" for message in error.messages)
            continue
    problems.extend(overlap_problems(apps, numbers=_numbers(value)))
    if problems:
        raise InvalidValue(*problems)
    return tuple(apps)


def _numbers(value: list[object]) -> dict[str, int]:
    return {item["name"]: number for number, item in enumerate(value, start=1) if isinstance(item, dict)
            and isinstance(item.get("name"), str)}  # fmt: skip


def overlap_problems(apps: list[AppSettings], *, numbers: Mapping[str, int]) -> list[str]:
    """Two apps with one name, or two apps answering the same host and prefix (neither could be chosen)."""
    problems: list[str] = []
    seen_names: dict[str, AppSettings] = {}
    seen_places: dict[tuple[str, str], AppSettings] = {}
    for app in apps:
        label = f"apps[{numbers[app.name]}] ({app.name})" if app.name in numbers else app.name
        if app.name in seen_names:
            problems.append(f"{label}: name: another app is already named {app.name!r}")
        seen_names.setdefault(app.name, app)
        for host in app.hosts or ("",):
            place = (matched_host(host), app.path_prefix)
            other = seen_places.get(place)
            if other is not None and other.name != app.name:
                where = f"host {host!r}" if host else "any host"
                problems.append(
                    f"{label}: {where} with path_prefix {app.path_prefix!r} is already {other.name!r}'s"
                )
            seen_places.setdefault(place, app)
    return problems


def effective_apps(
    apps: tuple[AppSettings, ...],
    *,
    upstream: str | None,
    routes: tuple[RouteRule, ...],
    public_paths: tuple[str, ...],
    api_paths: tuple[str, ...],
) -> tuple[AppSettings, ...]:
    """The apps the gateway serves: the configured ones, then the default app of the top-level settings
    (the only one without `[[gateway.apps]]`; after them, a catch-all, when they are configured and a
    top-level upstream is set)."""
    default = AppSettings(
        name=DEFAULT_APP, upstream=upstream, routes=routes, public_paths=public_paths, api_paths=api_paths,
        implicit=True,
    )  # fmt: skip
    if not apps:
        return (default,)
    return (*apps, default) if upstream is not None else apps
