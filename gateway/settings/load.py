"""Loading: the TOML file and the environment, read once at start into an immutable `Settings`.

Sources, strongest first: the environment, the TOML file, the default; an empty environment variable
counts as unset. Every problem is collected and reported together (`SettingsError.problems`),
unknown TOML keys included. Why a module of its own: this is the only code that reads the file and
the environment; the rest of the gateway gets a `Settings` passed to it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.clerk.options import ClerkOptions
from gateway.settings.checks import clerk_problems
from gateway.settings.clerk import ClerkSettings
from gateway.settings.edge import GatewaySettings
from gateway.settings.errors import InvalidValue, SettingsError
from gateway.settings.parsing import kind_of, unknown_key_message
from gateway.settings.sections import SECTIONS, setting_specs
from gateway.settings.table import SettingSpec


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway is configured with. `clerk` is the core's view; the rest is for the edge.

    `clerk` holds the secret key in clear, so it is left out of `repr`; `clerk_settings` shows it masked.
    """

    clerk: ClerkOptions = field(repr=False)
    clerk_settings: ClerkSettings
    gateway: GatewaySettings
    config_path: Path | None = None
    app_clerk: Mapping[str, ClerkOptions] = field(default_factory=dict, repr=False)
    """The core's view of each app's own Clerk instance, by app name (apps without one use `clerk`)."""

    @property
    def masked_secret_key(self) -> str | None:
        secret = self.clerk_settings.secret_key
        return secret.masked if secret else None


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
    problems.extend(clerk_problems(clerk, gateway, failed))
    no_app = gateway.upstream is None and not gateway.apps
    if require_upstream and no_app and not failed & {"GATEWAY_UPSTREAM", "GATEWAY_APPS"}:
        problems.append("GATEWAY_UPSTREAM: missing; set the http(s) URL of the app to proxy to")
    if problems:
        raise SettingsError(problems)
    own = {app.name: _clerk_options(app.clerk, gateway) for app in gateway.apps if app.clerk is not None}
    return Settings(
        clerk=_clerk_options(clerk, gateway), clerk_settings=clerk, gateway=gateway, config_path=path, app_clerk=own
    )


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
            yield f"{section}: expected a table [{section}] in {where}, got {kind_of(content)}"
        else:
            for key in content:
                if key not in known_keys[section]:
                    yield f"{section}.{key}: {unknown_key_message(key, known_keys[section], where)}"


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
        accepts_token=gateway.accepts_token,
        allowed_redirect_origins=(
            *gateway.allowed_redirect_origins, *clerk.authorized_parties, *filter(None, [gateway.public_origin])
        ),
    )
