"""Settings given as tables: route rules, identity header names, organization-sync path patterns.

Why a module of its own: these parsers check a table key by key, naming the closest known key for a
typo, and report every bad entry at once (`route 2 (/admin/*): access: ...`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import Any

from gateway.clerk.authorization import REVERIFICATION_LEVELS, REVERIFICATION_PRESETS, Reverification
from gateway.clerk.options import OrganizationSyncOptions
from gateway.settings.errors import InvalidValue
from gateway.settings.parsing import (
    from_environment_json,
    kind_of,
    list_of,
    one_of,
    parse_accepts_token,
    parse_boolean,
    parse_path_pattern,
    parse_text,
    show,
    table_of,
    unknown_key_message,
)
from gateway.settings.values import (
    ACCESS_LEVELS,
    Access,
    AllOf,
    AnyOf,
    Check,
    CheckKind,
    ClaimOperator,
    ClaimScalar,
    Condition,
    IdentityHeaders,
    Not,
    RouteRule,
)

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
    return one_of(ACCESS_LEVELS, parse_text(value).lower())


def parse_methods(value: object) -> tuple[str, ...]:
    """HTTP method names (`["GET", "POST"]`), upper-cased; at least one."""
    methods = list_of(_parse_method)(value)
    if not methods:
        raise InvalidValue("expected at least one method, e.g. [\"POST\"]")
    return tuple(dict.fromkeys(methods))


def _parse_method(value: object) -> str:
    text = parse_text(value)
    if not _HEADER_NAME.match(text):
        raise InvalidValue(f"not an HTTP method: {show(text)}")
    return text.upper()


def parse_reverification(value: object) -> Reverification:
    """A preset name (`strict_mfa`, `strict`, `moderate`, `lax`) or `{level, after_minutes}`."""
    presets = ", ".join(REVERIFICATION_PRESETS)
    if isinstance(value, str):
        preset = REVERIFICATION_PRESETS.get(value.strip())
        if preset is None:
            raise InvalidValue(f"expected one of {presets} or a table {{level, after_minutes}}, got {show(value)}")
        return preset
    if not isinstance(value, dict):
        raise InvalidValue(f"expected one of {presets} or a table {{level, after_minutes}}, got {kind_of(value)}")
    problems: list[str] = []
    level: object = None
    minutes: object = None
    for key, item in value.items():
        if key == "level":
            level = item
        elif key in ("after_minutes", "afterMinutes"):
            minutes = item
        else:
            problems.append(unknown_key_message(key, ["level", "after_minutes"], "reverification"))
    levels = ", ".join(REVERIFICATION_LEVELS)
    if level is None:
        problems.append(f"level is missing (one of {levels})")
    elif level not in REVERIFICATION_LEVELS:
        problems.append(f"level: expected one of {levels}, got {show(level)}")
    if minutes is None:
        problems.append("after_minutes is missing (a number of minutes above 0)")
    elif isinstance(minutes, bool) or not isinstance(minutes, int | float) or not minutes > 0:
        problems.append(f"after_minutes: expected a number of minutes above 0, got {show(minutes)}")
    if problems:
        raise InvalidValue(*problems)
    assert isinstance(minutes, int | float)
    after = int(minutes) if float(minutes).is_integer() else minutes
    return Reverification(level, after)  # type: ignore[arg-type]


_CLAIM_OPERATORS: tuple[ClaimOperator, ...] = ("equals", "one_of", "suffix", "exists")
_CLAIM_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_NAMED_CHECKS: tuple[CheckKind, ...] = ("org_role", "org_permission", "plan", "feature")
CONDITION_KEYS = ("org_role", "org_permission", "require_org", "plan", "feature", "claim", *_CLAIM_OPERATORS,
                  "any", "all", "not")  # fmt: skip


def _claim_scalar(value: object, key: str) -> ClaimScalar:
    if isinstance(value, str | int | float | bool):
        return value
    raise InvalidValue(f"{key}: expected a string, number or boolean, got {kind_of(value)}")


def _claim_check(table: Mapping[str, object]) -> Check:
    """`claim` with exactly one of `equals`, `one_of`, `suffix`, `exists`."""
    path = table.get("claim")
    if not isinstance(path, str) or not _CLAIM_PATH.match(path.strip()):
        raise InvalidValue(f"claim: expected a dotted claim path such as public_metadata.beta, got {show(path)}")
    operators = [operator for operator in _CLAIM_OPERATORS if operator in table]
    if len(operators) != 1:
        given = f" (got {', '.join(operators)})" if operators else ""
        raise InvalidValue(f"claim {path.strip()!r}: give exactly one of equals, one_of, suffix, exists{given}")
    operator = operators[0]
    raw = table[operator]
    operand: ClaimScalar | tuple[ClaimScalar, ...]
    if operator == "equals":
        operand = _claim_scalar(raw, "equals")
    elif operator == "one_of":
        if not isinstance(raw, list) or not raw:
            raise InvalidValue(f"one_of: expected a non-empty list of values, got {kind_of(raw)}")
        operand = tuple(_claim_scalar(item, "one_of") for item in raw)
    elif operator == "suffix":
        if not isinstance(raw, str) or not raw:
            raise InvalidValue(f"suffix: expected a non-empty string, got {show(raw)}")
        operand = raw
    else:
        if not isinstance(raw, bool):
            raise InvalidValue(f"exists: expected true or false, got {kind_of(raw)}")
        operand = raw
    return Check("claim", path.strip(), operator, operand)


def parse_condition(value: object) -> Condition:
    """A condition table: every key in it must hold (`any`, `all`, `not` nest tables)."""
    table = table_of(value, "a table of conditions such as {plan = \"pro\"}")
    parts, problems = _condition_parts(table, top_level=False)
    if problems:
        raise InvalidValue(*problems)
    if not parts:
        raise InvalidValue(f"expected at least one condition ({', '.join(CONDITION_KEYS[:6])}, any, all, not)")
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _condition_list(value: object, key: str) -> tuple[Condition, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidValue(f"expected a non-empty array of condition tables, got {kind_of(value)}")
    conditions: list[Condition] = []
    problems: list[str] = []
    for position, item in enumerate(value, start=1):
        try:
            conditions.append(parse_condition(item))
        except InvalidValue as error:
            problems.extend(f"{key}[{position}]: {message}" for message in error.messages)
    if problems:
        raise InvalidValue(*problems)
    return tuple(conditions)


_RULE_OWN_CHECKS = frozenset({"org_role", "org_permission", "require_org"})


def _condition_parts(table: Mapping[str, object], *, top_level: bool) -> tuple[list[Condition], list[str]]:
    """The conditions a table's condition keys write, and the problems with them, each naming its key.
    At the top level of a rule, `org_role`, `org_permission` and `require_org` stay the rule's own
    fields (parsed with the rule) and other keys are the rule's, not conditions."""
    parts: list[Condition] = []
    problems: list[str] = []
    for key, item in table.items():
        if key not in CONDITION_KEYS:
            if not top_level:
                problems.append(unknown_key_message(key, list(CONDITION_KEYS), "the condition"))
            continue
        if top_level and key in _RULE_OWN_CHECKS:
            continue
        try:
            condition = _condition_of(key, item, table)
        except InvalidValue as error:
            for message in error.messages:
                problems.append(message if key == "claim" or message.startswith(f"{key}[") else f"{key}: {message}")
            continue
        if condition is not None:
            parts.append(condition)
    return parts, problems


def _condition_of(key: str, item: object, table: Mapping[str, object]) -> Condition | None:
    """The condition one key writes (None for a claim operator: `claim` reads it)."""
    if key in _NAMED_CHECKS:
        name = parse_text(item)
        if not name:
            raise InvalidValue("expected a name, got an empty string")
        return Check(key, name)
    if key == "require_org":
        if parse_boolean(item) is not True:
            raise InvalidValue("only true is a condition (leave the key out otherwise)")
        return Check("require_org")
    if key == "claim":
        return _claim_check(table)
    if key in _CLAIM_OPERATORS:
        if "claim" not in table:
            raise InvalidValue("needs claim, the dotted claim path it compares")
        return None
    if key == "not":
        return Not(parse_condition(item))
    conditions = _condition_list(item, key)
    return AnyOf(conditions) if key == "any" else AllOf(conditions)


_ROUTE_KEY_PARSERS: dict[str, Callable[[object], object]] = {
    "path": parse_path_pattern,
    "methods": parse_methods,
    "access": parse_access,
    "org_role": parse_text,
    "org_permission": parse_text,
    "require_org": parse_boolean,
    "reverification": parse_reverification,
    "treat_pending_as_signed_out": parse_boolean,
    "cors_preflight": parse_boolean,
    "api": parse_boolean,
    "accepts": parse_accepts_token,
    "scopes": list_of(parse_text),
}
ROUTE_KEYS = (*_ROUTE_KEY_PARSERS, *(key for key in CONDITION_KEYS if key not in _ROUTE_KEY_PARSERS))


def _parse_route(value: object, number: int) -> RouteRule:
    table = table_of(value, "a table with path and access")
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, item in table.items():
        if key not in ROUTE_KEYS:
            problems.append(unknown_key_message(key, list(ROUTE_KEYS), "the route"))
            continue
        if key not in _ROUTE_KEY_PARSERS:
            continue  # a condition key: below
        try:
            parsed = _ROUTE_KEY_PARSERS[key](item)
        except InvalidValue as error:
            problems.extend(f"{key}: {message}" for message in error.messages)
            continue
        if parsed != "":
            values[key] = parsed
    parts, condition_problems = _condition_parts(table, top_level=True)
    problems.extend(condition_problems)
    if parts:
        values["requires"] = parts[0] if len(parts) == 1 else AllOf(tuple(parts))
    if "path" not in values and not any(message.startswith("path:") for message in problems):
        problems.append("path is missing")
    access = values.get("access", "signed-in")
    requires_identity = values.get("org_role") or values.get("org_permission") or values.get("require_org")
    if access == "public" and requires_identity:
        problems.append("a public route cannot require an organization, role or permission")
    if access == "public" and (values.get("scopes") or "accepts" in values):
        problems.append("a public route takes any request: accepts and scopes do not apply to it")
    conditional = [
        key
        for key in table
        if (key in CONDITION_KEYS and (key not in _RULE_OWN_CHECKS or access == "deny"))
        or key in ("reverification", "treat_pending_as_signed_out")
    ]
    if access == "public" and conditional:
        problems.append(f"{', '.join(conditional)}: a public route lets everyone in, so it has no conditions")
    if access == "deny" and conditional:
        problems.append(
            f"{', '.join(conditional)}: a deny route refuses every request it matches; narrow it with path and "
            "methods, or write the condition on a signed-in route (with not)"
        )
    if problems:
        raise InvalidValue(*problems)
    return RouteRule(**values, number=number)


def parse_routes(value: object) -> tuple[RouteRule, ...]:
    """An array of tables (`[[gateway.routes]]`), or a JSON array in the environment."""
    value = from_environment_json(value)
    if not isinstance(value, list):
        raise InvalidValue(f"expected an array of tables ([[gateway.routes]]), got {kind_of(value)}")
    routes: list[RouteRule] = []
    problems: list[str] = []
    for number, item in enumerate(value, start=1):
        try:
            routes.append(_parse_route(item, number))
        except InvalidValue as error:
            label = f"route {number}"
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                label += f" ({item['path']})"
            problems.extend(f"{label}: {message}" for message in error.messages)
    if problems:
        raise InvalidValue(*problems)
    return tuple(routes)
