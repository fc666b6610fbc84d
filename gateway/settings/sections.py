"""The configuration's TOML sections in order, and the whole table read from them.

Why a module of its own: the order here is the order of the README's reference and of
`gateway check-config`; loading and the reference both start from `setting_specs()`.
"""

from __future__ import annotations

from gateway.settings.clerk import ClerkSettings
from gateway.settings.edge import GatewaySettings
from gateway.settings.table import SettingSpec, section_specs

SECTIONS: tuple[tuple[str, type[ClerkSettings] | type[GatewaySettings]], ...] = (
    ("clerk", ClerkSettings),
    ("gateway", GatewaySettings),
)


def setting_specs() -> tuple[SettingSpec, ...]:
    """The whole configuration table, in declaration order."""
    return tuple(spec for section, section_class in SECTIONS for spec in section_specs(section, section_class))
