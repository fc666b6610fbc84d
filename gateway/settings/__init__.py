"""The gateway's one configuration: TOML file + environment, validated once, immutable afterwards.

Every setting is declared exactly once, as a field of `ClerkSettings` (`clerk.py`) or
`GatewaySettings` (`edge.py`) carrying its TOML key, environment variable, parser, default and help
text (`setting(...)`, `table.py`). Loading (`load.py`), `gateway check-config` and the README's
configuration reference (`gateway.settings_reference`) all read that one table, so adding a setting
is a one-line change.

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

The modules, each with one job:
* `errors`: `InvalidValue` (one setting's verdict) and `SettingsError` (every problem, at once).
* `values`: the value types settings hold (`Secret`, `PemKey`, `ListenAddress`, `RouteRule`, ...).
* `parsing`: parsers for single values and the combinators that build them.
* `keys`: PEM keys read at start (Clerk's public key, the assertion signing key).
* `routes`: settings given as tables (route rules, identity headers, organization sync).
* `identity`: the identity mapping (`[gateway.identity]`, an app's `identity`): presets, templates.
* `table`: `setting(...)` and `SettingSpec`, the declarative table.
* `clerk`, `edge`: the `[clerk]` and `[gateway]` sections; `sections`: their order, the whole table.
* `checks`: problems that involve more than one setting.
* `load`: `Settings` and `load_settings`, from the TOML file and the environment.

This package re-exports the names the rest of the gateway imports, so `from gateway.settings import X`
keeps working whichever module `X` lives in.
"""

from gateway.settings.edge import GatewaySettings
from gateway.settings.errors import SettingsError
from gateway.settings.identity import IdentitySettings, MappedHeader, Template, parse_identity_settings
from gateway.settings.load import Settings, load_settings
from gateway.settings.sections import setting_specs
from gateway.settings.table import SettingSpec
from gateway.settings.values import IdentityHeaders, ListenAddress, RouteRule, Secret

__all__ = [
    "GatewaySettings",
    "IdentityHeaders",
    "IdentitySettings",
    "ListenAddress",
    "MappedHeader",
    "RouteRule",
    "Secret",
    "SettingSpec",
    "Settings",
    "SettingsError",
    "Template",
    "load_settings",
    "parse_identity_settings",
    "setting_specs",
]
