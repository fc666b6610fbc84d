"""How SIGHUP reaches the worker processes, and what a worker does with it (`Live.reload`).

Each worker reloads its own configuration in place (`gateway.edge.live`): it keeps its connections and
its in-flight requests, and a refused configuration changes nothing. So the signal must reach every
worker, and no server may act on it first:

* granian's main process answers SIGHUP by respawning every worker (granian/server/common.py,
  `_reload`): the new workers would read the file as it is (a broken one would end them) and the old
  ones would stop. `relay_hangup_to_workers`, installed as a granian startup hook (after granian sets
  its own signal handlers, before it spawns the workers), replaces that handler by one that sends
  SIGHUP on to each worker process.
* uvicorn with one process serves in the process that receives the signal; uvicorn installs no SIGHUP
  handler there, so the worker's own (below) answers it. uvicorn with several workers restarts them
  on SIGHUP (its supervisor's own handler): send SIGHUP to each worker process instead.
* A worker ignores SIGHUP until its lifespan starts (`ignore_hangup_until_ready`: the default action
  would end it), then reloads on it (`reload_on_hangup`).

`FileWatch` (`GATEWAY_RELOAD_WATCH` seconds) is the other way in: each worker looks at the file's size
and modification time, and a change reloads it as SIGHUP does, whatever the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from pathlib import Path
from types import FrameType

from gateway.edge.live import Live

logger = logging.getLogger("gateway")


def ignore_hangup_until_ready() -> None:
    """A SIGHUP that arrives before the app can reload is ignored, not the end of the worker."""
    with contextlib.suppress(ValueError):  # not the main thread: the server owns the signals
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


class HangupReload:
    """SIGHUP → `live.reload()` on the worker's event loop, one after the other."""

    def __init__(self, live: Live, loop: asyncio.AbstractEventLoop) -> None:
        self._live = live
        self._loop = loop
        self._tasks: set[asyncio.Task[bool]] = set()
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _reload(self) -> None:
        task = self._loop.create_task(self._live.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self._loop.remove_signal_handler(signal.SIGHUP)


def reload_on_hangup(live: Live) -> HangupReload | None:
    """Reload on SIGHUP from now on; None where signals cannot be handled (not the main thread)."""
    try:
        return HangupReload(live, asyncio.get_running_loop())
    except (RuntimeError, ValueError, NotImplementedError):
        logger.warning("SIGHUP cannot reload the configuration here (signals belong to another thread)")
        return None


def relay_hangup_to_workers() -> None:
    """In granian's main process: SIGHUP is sent on to the worker processes, which reload in place."""

    def relay(signum: int, frame: FrameType | None) -> None:
        workers = multiprocessing.active_children()
        for worker in workers:
            if worker.pid is not None:
                os.kill(worker.pid, signal.SIGHUP)

    signal.signal(signal.SIGHUP, relay)


class FileWatch:
    """Reload when the configuration file changes (size or modification time), looked at every `interval`."""

    def __init__(self, live: Live, path: Path, interval: float) -> None:
        self._live = live
        self._path = path
        self._interval = interval
        self._seen = self._look()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="configuration-watch")

    def _look(self) -> tuple[int, int] | None:
        try:
            status = self._path.stat()
        except OSError:  # being replaced, or gone: the next look decides
            return None
        return status.st_size, status.st_mtime_ns

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            seen = self._look()
            if seen is not None and seen != self._seen:
                self._seen = seen
                await self._live.reload()

    def close(self) -> None:
        self._task.cancel()
