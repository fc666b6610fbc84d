"""Real servers the tests start as subprocesses: readiness by polling, clean stops (ports: `upstream.unused_port`)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it exits or never gets there."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{url}: the server exited ({process.returncode}):\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.05)
    raise AssertionError(f"{url} was not ready after {timeout:.0f} s:\n{log.read_text()}")


@contextlib.contextmanager
def running(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command`, wait for `ready_url`, stop it (SIGTERM, then SIGKILL) at the end."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        wait_until_ready(process, ready_url, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
