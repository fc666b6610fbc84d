"""`[gateway.identity]` (and an app's own `identity` table): which headers carry who the user is.

Why a module of its own: the identity mapping is one table (presets, the `user` and `groups`
fields, custom header templates) parsed the same way for the default app and for every app of
`[[gateway.apps]]`; the writer (`gateway/edge/identity.py`) and check-config both read its values.
The presets' header tables live here, so stripping every name any preset could set needs no edge code.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from gateway.settings.errors import InvalidValue
from gateway.settings.parsing import kind_of, list_of, one_of, parse_text, show, table_of, unknown_key_message
from gateway.settings.routes import parse_header_name
from gateway.settings.values import IdentityHeaders

PresetName = Literal["clerk", "oauth2-proxy", "remote-user", "grafana"]
UserSource = Literal["email", "username", "user_id"]
GroupPart = Literal["org_slug", "org_role", "org_permissions"]

PRESET_NAMES: tuple[PresetName, ...] = get_args(PresetName)
USER_SOURCES: tuple[UserSource, ...] = get_args(UserSource)
GROUP_PARTS: tuple[GroupPart, ...] = get_args(GroupPart)

TOKEN_FIELDS = ("user_id", "session_id", "org_id", "org_role", "org_slug", "org_permissions")
"""Read from the verified session token itself: free."""
USER_FIELDS = ("email", "username", "first_name", "last_name", "full_name", "image_url")
"""Need the user from the Backend API (`GET /users/{id}`), unless a session claim of that name has it."""
ORGANIZATION_FIELDS = ("org_name",)
"""Need the active organization from the Backend API (`GET /organizations/{id}`)."""
DERIVED_FIELDS = ("groups", "user")
"""Made of other fields: `groups` per `groups =`, `user` per `user =`."""
CLAIMS_PREFIX = "claims."
PUBLIC_METADATA_PREFIX = "public_metadata."
IDENTITY_FIELDS = (*TOKEN_FIELDS, *USER_FIELDS, *ORGANIZATION_FIELDS, *DERIVED_FIELDS)

PRESET_HEADERS: Mapping[PresetName, tuple[tuple[str, str], ...]] = {
    # "clerk" is `IdentityHeaders` (today's `X-Clerk-*`, renamable by `[gateway.identity_headers]`).
    "clerk": (),
    "oauth2-proxy": (
        ("X-Auth-Request-User", "user"),
        ("X-Auth-Request-Email", "email"),
        ("X-Auth-Request-Groups", "groups"),
        ("X-Auth-Request-Preferred-Username", "username"),
        ("X-Forwarded-User", "user"),
        ("X-Forwarded-Email", "email"),
    ),
    "remote-user": (
        ("Remote-User", "user"),
        ("Remote-Email", "email"),
        ("Remote-Name", "full_name"),
        ("Remote-Groups", "groups"),
    ),
    "grafana": (
        ("X-WEBAUTH-USER", "user"),
        ("X-WEBAUTH-EMAIL", "email"),
        ("X-WEBAUTH-NAME", "full_name"),
    ),
}
"""Each preset's headers and the identity field each carries (README, "For apps behind the gateway")."""

ASSERTION_HEADER = "X-Gateway-Identity-Assertion"
"""The signed assertion's header (`gateway/edge/identity.py` signs it)."""

_RESERVED_HEADERS = frozenset(
    {
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
        "proxy-connection", "cookie", "authorization", "content-type", "content-encoding", "expect",
        "forwarded", "x-forwarded-for", "x-forwarded-host",
        "x-forwarded-proto", "x-forwarded-port", "x-real-ip", "x-request-id", ASSERTION_HEADER.lower(),
    }
)  # fmt: skip
"""Headers the gateway or the HTTP framing own: an identity header may not replace them."""

_KNOWN_KEYS = ("presets", "user", "groups", "public_metadata", "headers")


@dataclass(frozen=True, slots=True)
class Template:
    """A header value template: literal text and `{field}` substitutions, nothing else."""

    source: str
    parts: tuple[tuple[str, str | None], ...]
    """(literal text, field name or None), in order."""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.parts if name is not None)

    @classmethod
    def of_field(cls, name: str) -> Template:
        return cls("{" + name + "}", (("", name),))


@dataclass(frozen=True, slots=True)
class MappedHeader:
    """One header the mapping sets (a preset's or a custom one), and what its value is made of."""

    name: str
    template: Template


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    """The identity mapping of one app (`[gateway.identity]`, or `identity` in an app's table)."""

    presets: tuple[PresetName, ...] = ("clerk",)
    user: UserSource = "email"
    groups: tuple[GroupPart, ...] = ("org_slug", "org_role", "org_permissions")
    public_metadata: tuple[str, ...] = ()
    headers: tuple[MappedHeader, ...] = ()
    """Custom headers, in the order written."""

    @property
    def sends_clerk_headers(self) -> bool:
        return "clerk" in self.presets

    def mapped_headers(self) -> tuple[MappedHeader, ...]:
        """Every header beyond the `clerk` preset's: the presets' first (in order), then the custom ones."""
        from_presets = [
            MappedHeader(name, Template.of_field(source))
            for preset in self.presets
            for name, source in PRESET_HEADERS[preset]
        ]
        return (*from_presets, *self.headers)

    def fields_used(self) -> frozenset[str]:
        """Every field the mapped headers name, `user` and `groups` expanded to what they are made of."""
        named = {name for header in self.mapped_headers() for name in header.template.fields}
        if "user" in named:
            named.add(self.user)
        if "groups" in named:
            named.update(self.groups)
        if "full_name" in named:
            named.update(("first_name", "last_name"))
        return frozenset(named)


DEFAULT_IDENTITY = IdentitySettings()


def parse_identity_settings(value: object) -> IdentitySettings:
    """The `[gateway.identity]` table (or an app's `identity`), every problem named by its key path.

    Messages read `headers."X-Team": ...` so a caller only prefixes where the table is
    (`GATEWAY_IDENTITY`, `apps[2].identity`)."""
    table = table_of(value, "a table with presets, user, groups, public_metadata, headers")
    problems: list[str] = [unknown_key_message(key, _KNOWN_KEYS, "identity") for key in table if key not in _KNOWN_KEYS]
    parsed: dict[str, object] = {}
    for key, parse in (
        ("presets", _parse_presets),
        ("user", _parse_user),
        ("groups", list_of(_parse_group_part)),
        ("public_metadata", list_of(_parse_metadata_key)),
    ):
        if key in table:
            try:
                parsed[key] = parse(table[key])
            except InvalidValue as error:
                problems.extend(f"{key}: {message}" for message in error.messages)
    metadata_keys: tuple[str, ...] = parsed.get("public_metadata", ())  # type: ignore[assignment]
    if "headers" in table:
        try:
            parsed["headers"] = _parse_headers(table["headers"], frozenset(metadata_keys))
        except InvalidValue as error:
            problems.extend(error.messages)
    if problems:
        raise InvalidValue(*problems)
    settings = IdentitySettings(**parsed)  # type: ignore[arg-type]
    problems.extend(_duplicate_names(settings))
    if problems:
        raise InvalidValue(*problems)
    return settings


def identity_header_conflicts(identity: IdentitySettings, clerk_names: IdentityHeaders) -> Iterator[str]:
    """A custom header that would overwrite one of the `clerk` preset's (as renamed), when that preset is on."""
    if not identity.sends_clerk_headers:
        return
    taken = {name.lower() for name in clerk_names.names()}
    for header in identity.headers:
        if header.name.lower() in taken:
            yield f"headers.{_quoted(header.name)}: already set by the clerk preset (see identity_headers)"


def every_mapped_header_name() -> tuple[str, ...]:
    """Every header name any preset can set, whatever is configured: stripped from client requests."""
    return tuple(dict.fromkeys(name for headers in PRESET_HEADERS.values() for name, _ in headers))


def _parse_presets(value: object) -> tuple[PresetName, ...]:
    presets = list_of(_parse_preset)(value)
    return tuple(dict.fromkeys(presets))


def _parse_preset(value: object) -> PresetName:
    text = parse_text(value).lower()
    for preset in PRESET_NAMES:
        if text == preset:
            return preset
    raise InvalidValue(f"unknown preset {show(text)} (expected one of {', '.join(PRESET_NAMES)})")


def _parse_user(value: object) -> UserSource:
    return one_of(USER_SOURCES, parse_text(value))


def _parse_group_part(value: object) -> GroupPart:
    return one_of(GROUP_PARTS, parse_text(value))


def _parse_metadata_key(value: object) -> str:
    text = parse_text(value)
    if not text or any(character in text for character in "{}[]!:. "):
        raise InvalidValue(f"not a public-metadata key: {show(text)} (letters, digits, - and _)")
    return text


def _parse_headers(value: object, metadata_keys: frozenset[str]) -> tuple[MappedHeader, ...]:
    table = table_of(value, "a table mapping header names to templates such as \"{email}\"")
    problems: list[str] = []
    headers: list[MappedHeader] = []
    for name, template in table.items():
        where = f"headers.{_quoted(name)}"
        try:
            header_name = parse_header_name(name)
            if header_name.lower() in _RESERVED_HEADERS:
                raise InvalidValue(f"{header_name} is not an identity header (the gateway or HTTP owns it)")
            headers.append(MappedHeader(header_name, parse_template(template, metadata_keys)))
        except InvalidValue as error:
            problems.extend(f"{where}: {message}" for message in error.messages)
    if problems:
        raise InvalidValue(*problems)
    return tuple(headers)


def parse_template(value: object, metadata_keys: frozenset[str]) -> Template:
    """`"{first_name} {last_name}"`: literal text and known `{field}`s; `{{`/`}}` are literal braces."""
    if not isinstance(value, str):
        raise InvalidValue(f"expected a template string such as \"{{email}}\", got {kind_of(value)}")
    try:
        pieces = list(string.Formatter().parse(value))
    except ValueError as error:
        raise InvalidValue(f"not a template ({error}): {show(value)}") from None
    parts: list[tuple[str, str | None]] = []
    problems: list[str] = []
    for literal, name, format_spec, conversion in pieces:
        if name is None:
            parts.append((literal, None))
            continue
        if conversion or format_spec:
            problems.append(f"{{{name}}} may not carry a conversion or format (only {{field}} substitution)")
        problem = _field_problem(name, metadata_keys)
        if problem:
            problems.append(problem)
        parts.append((literal, name))
    if problems:
        raise InvalidValue(*problems)
    return Template(value, tuple(parts))


def _field_problem(name: str, metadata_keys: frozenset[str]) -> str | None:
    if name in IDENTITY_FIELDS:
        return None
    if name.startswith(CLAIMS_PREFIX):
        claim = name.removeprefix(CLAIMS_PREFIX)
        if claim and not any(character in claim for character in "[]{}. "):
            return None
        return f"{{{name}}}: not a claim name"
    if name.startswith(PUBLIC_METADATA_PREFIX):
        key = name.removeprefix(PUBLIC_METADATA_PREFIX)
        if key in metadata_keys:
            return None
        return f"{{{name}}}: {show(key)} is not listed in public_metadata"
    suggestion = difflib.get_close_matches(name, IDENTITY_FIELDS, n=1)
    hint = f"did you mean {{{suggestion[0]}}}?" if suggestion else f"known: {', '.join(IDENTITY_FIELDS)}"
    return f"{{{name}}}: unknown field ({hint}; also claims.<name>, public_metadata.<key>)"


def _duplicate_names(settings: IdentitySettings) -> Iterator[str]:
    """Two entries setting one header (case-insensitively): one would silently win."""
    seen: dict[str, str] = {}
    for header in settings.mapped_headers():
        lowered = header.name.lower()
        if lowered in seen and header in settings.headers:
            yield f"headers.{_quoted(header.name)}: {seen[lowered]} already sets this header"
        seen.setdefault(lowered, "another custom header" if header in settings.headers else "a preset")


def _quoted(name: str) -> str:
    return f'"{name}"'
