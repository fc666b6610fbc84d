"""`gateway check-config`: validate the settings without starting, and print every problem.

Also home of `load_or_exit`, which every command that needs settings uses, so that a bad
configuration always ends in the same clear lines on stderr and never in a traceback.
This module (with `gateway.cli`) is the only place that reads `os.environ`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from gateway.settings import Settings, SettingsError, load_settings
from gateway.settings.apps import AppSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (the environment wins over it)")
    parser.add_argument(
        "--serve", action="store_true", help="validate for `gateway serve` (GATEWAY_UPSTREAM is then required)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, os.environ, require_upstream=args.serve)
    except SettingsError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 1
    print("\n".join(summary_lines(settings)))
    return 0


def load_or_exit(
    config_path: str | Path | None,
    *,
    require_upstream: bool,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load the settings or stop with one `gateway: configuration error: ...` line per problem (exit 2)."""
    try:
        return load_settings(config_path, os.environ if environ is None else environ, require_upstream=require_upstream)
    except SettingsError as error:
        for problem in error.problems:
            print(f"gateway: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def summary_lines(settings: Settings) -> list[str]:
    """What an operator wants to confirm at a glance; never a secret in clear."""
    clerk = settings.clerk
    gateway = settings.gateway
    verification_key = settings.clerk_settings.verification_key
    rows = [
        ("config", str(settings.config_path) if settings.config_path else "(environment only)"),
        ("instance", clerk.publishable_key.instance_type),
        ("frontend API", _frontend_api(settings)),
        ("satellite", f"yes ({clerk.domain or clerk.proxy_url})" if clerk.is_satellite else "no"),
        ("upstream", gateway.upstream or "(not set)"),
        ("listen", f"{gateway.listen} ({gateway.workers} worker{'s' if gateway.workers > 1 else ''})"),
        ("mode", gateway.mode),
        ("redis", str(gateway.redis_url) if gateway.redis_url else "(not set: each process keeps its own state)"),
        ("secret key", settings.masked_secret_key or "(not set: networkless verification only)"),
        ("jwt key", verification_key.source if verification_key else "(not set: keys come from the JWKS)"),
    ]
    if gateway.apps:
        rows.insert(5, ("apps", ", ".join(_app_summary(app) for app in gateway.served_apps())))
    width = max(len(label) for label, _ in rows) + 1
    return ["configuration OK"] + [f"  {label + ':':<{width}} {value}" for label, value in rows]


def _frontend_api(settings: Settings) -> str:
    clerk = settings.clerk
    description = clerk.original_frontend_api
    if clerk.proxy_url:
        description += f" (proxied at {clerk.proxy_url})"
    if clerk.frontend_api_url:
        description += f" (served by {clerk.frontend_api_url})"
    return description


def _app_summary(app: AppSettings) -> str:
    """`prometheus (tools.localhost:8080/prom → http://127.0.0.1:9090)`."""
    where = "|".join(app.hosts) if app.hosts else "*"
    prefix = "" if app.path_prefix == "/" else app.path_prefix
    return f"{app.name} ({where}{prefix} → {app.upstream})"
