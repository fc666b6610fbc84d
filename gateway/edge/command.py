"""`gateway serve`: validate the settings, then run the gateway on an ASGI server with N workers.

The server is chosen by measurement (bench/): granian by default, uvicorn as the alternative. Worker
processes rebuild the app from the same settings (`GATEWAY_CONFIG` names the file for them), and
reload it on SIGHUP (`gateway.edge.reload` says how the signal reaches them under each server).
"""

from __future__ import annotations

import argparse
import os
import sys

SERVERS = ("granian", "uvicorn")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (the environment overrides it)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="listen address (overrides GATEWAY_LISTEN)")
    parser.add_argument("--upstream", metavar="URL", help="the app to protect (overrides GATEWAY_UPSTREAM)")
    parser.add_argument("--workers", type=int, help="worker processes (overrides GATEWAY_WORKERS)")
    parser.add_argument("--server", choices=SERVERS, default="granian", help="ASGI server (default: granian)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    from gateway.edge.app import CONFIG_ENV
    from gateway.edge.live import configuration_digest
    from gateway.settings_command import load_or_exit

    overrides = {
        "GATEWAY_LISTEN": args.listen,
        "GATEWAY_UPSTREAM": args.upstream,
        "GATEWAY_WORKERS": str(args.workers) if args.workers else None,
    }
    for name, value in overrides.items():
        if value:
            os.environ[name] = value
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    settings = load_or_exit(args.config, require_upstream=True)
    listen = settings.gateway.listen
    workers = settings.gateway.workers
    print(
        f"gateway: serving {settings.gateway.upstream or 'the apps below'} on http://{listen} "
        f"({workers} worker{'s' if workers > 1 else ''}, {args.server})",
        file=sys.stderr,
        flush=True,
    )
    apps = ", ".join(app.name for app in settings.gateway.served_apps())
    print(f"gateway: configuration sha256 {configuration_digest(settings)} is live (apps: {apps}); SIGHUP reloads it",
          file=sys.stderr, flush=True)  # fmt: skip
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(
            "gateway.edge.app:app_from_environment",
            factory=True,
            host=listen.host,
            port=listen.port,
            workers=workers,
            log_level=args.log_level,
            access_log=False,
            lifespan="on",
            proxy_headers=False,
            server_header=False,
        )
        return 0
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    from gateway.edge.reload import relay_hangup_to_workers

    server = Granian(
        "gateway.edge.app:app_from_environment",
        factory=True,
        address=listen.host,
        port=listen.port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_level=LogLevels(args.log_level),
        log_access=False,
        websockets=True,
        backlog=2048,
    )
    server.on_startup(relay_hangup_to_workers)  # SIGHUP reloads each worker in place (`gateway.edge.reload`)
    server.serve()
    return 0
