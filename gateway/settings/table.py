"""The declarative table: each setting is declared once, as a dataclass field carrying its spec.

Why a module of its own: `setting(...)` is how `ClerkSettings` and `GatewaySettings` describe their
fields (TOML key, environment variable, parser, default, help), and `SettingSpec` is the row that
loading, `gateway check-config` and the README's reference all read back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import TypeVar

T = TypeVar("T")

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


def section_specs(section: str, section_class: type) -> Iterator[SettingSpec]:
    """The rows declared by one section's dataclass, in declaration order."""
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
