"""Settings given as tables: route rules, identity header names, organization-sync path patterns.

Why a module of its own: these parsers check a table key by key, naming the closest known key for a
typo, and report every bad entry at once (`route 2 (/admin/*): access: ...`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from gateway.clerk.options import OrganizationSyncOptions
from gateway.settings.errors import InvalidValue
from gateway.settings.parsing import (
    kind_of,
    list_of,
    parse_accepts_token,
    parse_boolean,
    parse_path_pattern,
    parse_text,
    show,
    table_of,
    unknown_key_message,
)
from gateway.settings.values import ACCESS_LEVELS, Access, IdentityHeaders, RouteRule

_ORGANIZATION_SYNC_KEYS = {
    "organizationPatterns": "organization_patterns",
    "organization_patterns": "organization_patterns",
    "personalAccountPatterns": "personal_account_patterns",
    "personal_account_patterns": "personal_account_patterns",
}


def parse_organization_sync(value: object) -> OrganizationSyncOptions:
    """`{"organizationPatterns": [...], "personalAccountPatterns": [...]}` (snake_case accepted too)."""
    table = table_of(value, "a table or JSON object with organizationPatterns / personalAccountPatterns")
    problems: list[str] = []
    patterns: dict[str, tuple[str, ...]] = {}
    for key, item in table.items():
        if key not in _ORGANIZATION_SYNC_KEYS:
            problems.append(
                unknown_key_message(key, ["organizationPatterns", "personalAccountPatterns"], "the options")
            )
            continue
        if not isinstance(item, list):
            problems.append(f"{key} must be a list of path patterns, got {kind_of(item)}")
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
        raise InvalidValue(f"not a valid HTTP header name: {show(text)}")
    return text


def parse_identity_headers(value: object) -> IdentityHeaders:
    """Overrides of the default header names, by logical name (`user_id = "X-User"`)."""
    table = table_of(value, "a table mapping names such as user_id to header names")
    known = [item.name for item in fields(IdentityHeaders)]
    problems: list[str] = []
    overrides: dict[str, str] = {}
    for key, item in table.items():
        if key not in known:
            problems.append(unknown_key_message(key, known, "identity_headers"))
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
    raise InvalidValue(f"expected one of {', '.join(ACCESS_LEVELS)}, got {show(text)}")


_ROUTE_KEY_PARSERS: dict[str, Callable[[object], object]] = {
    "path": parse_path_pattern,
    "access": parse_access,
    "org_role": parse_text,
    "org_permission": parse_text,
    "require_org": parse_boolean,
    "api": parse_boolean,
    "accepts": parse_accepts_token,
    "scopes": list_of(parse_text),
}


def _parse_route(value: object) -> RouteRule:
    table = table_of(value, "a table with path and access")
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, item in table.items():
        if key not in _ROUTE_KEY_PARSERS:
            problems.append(unknown_key_message(key, list(_ROUTE_KEY_PARSERS), "the route"))
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
    if values.get("access") == "public" and (values.get("scopes") or "accepts" in values):
        problems.append("a public route takes any request: accepts and scopes do not apply to it")
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
        raise InvalidValue(f"expected an array of tables ([[gateway.routes]]), got {kind_of(value)}")
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
