"""Real servers the tests start as subprocesses, ready when a URL answers 200 (ports: `upstream.unused_port`).

URL-shaped spellings of `forward_auth.wait_until` and `forward_auth.running`, which do the polling and
the clean stop."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.support.forward_auth import running as running_until
from tests.support.forward_auth import wait_until


def _answers_200(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2).status_code == 200


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it exits or never gets there."""
    wait_until(_answers_200(url), url, process, log, timeout)


@contextlib.contextmanager
def running(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command`, wait for `ready_url`, stop it (SIGTERM, then SIGKILL) at the end."""
    with running_until(command, ready_url, log, _answers_200(ready_url), env=env, cwd=cwd, timeout=60.0) as process:
        yield process
