"""The `gateway` command: one entry point, one sub-command per job.

Each sub-command lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`,
imported only when chosen, so `gateway explain` never pays for the emulator's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gateway.edge.command", "run the gateway in front of an app"),
    "emulator": ("gateway.emulator.command", "run a local Clerk Frontend + Backend API emulator"),
    "demo": ("gateway.demo.command", "run the demo: emulator, sample app and gateways"),
    "check-config": ("gateway.settings_command", "validate the settings and print every problem"),
    "explain": ("gateway.explain", "explain the auth decision for requests read as JSON lines"),
    "doctor": ("gateway.doctor", "check the keys, clock, satellite, origins and app against the live services"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Every sub-command is listed; only the chosen one's module is imported to add its options."""
    parser = argparse.ArgumentParser(prog="gateway", description="Clerk authentication at the edge.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_chosen_command(arguments)).parse_args(arguments)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
