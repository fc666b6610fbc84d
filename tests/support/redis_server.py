"""A real `redis-server` for the tests: on a free loopback port, no persistence, stoppable and restartable.

Readiness is a PING that answers PONG (polled, failing at once if the process exits). Without
`redis-server` (Debian's package; `make test` installs it) the tests that need it are skipped, loudly.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.upstream import unused_port

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (Debian's redis-server; `make test` installs it)"
)


def answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(64).startswith(b"+PONG")
    return False


@dataclass
class RedisServer:
    """`url` stays the same across `stop()`/`start()`: a restart is the same Redis coming back, empty."""

    directory: Path
    port: int = field(default_factory=unused_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        assert REDIS_SERVER is not None
        log = self.directory / "redis.log"
        command = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(log),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not answers_ping(self.port):
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer PING within {timeout}s:\n{_tail(log)}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill it (no shutdown save: nothing survives, as with a Redis without persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
