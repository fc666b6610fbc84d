"""The configuration a worker serves, and its replacement on reload (SIGHUP) without dropping a request.

A reload reads the settings again (the file and the process's environment, through the loader the
worker was given); a configuration `gateway check-config` would refuse is logged, every problem, and
ignored: the running one keeps serving. An accepted one becomes a new `EdgeRuntime`, started before
the swap; requests that started on the old runtime finish on it (each request keeps the `Serving` it
began with), and the old runtime drains and closes in the background, having handed the process-wide
revocations and Redis connection to the new one. Settings the server applies before the app exists
(`listen`, `workers`) and those of the process-wide objects cannot change here (`RESTART_ONLY`): they
are reported as needing a restart and keep their old value.

Why a module of its own: it is the only place that replaces the runtime; the rest of the edge sees one
runtime for the whole of a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.edge.gate import Gate
from gateway.edge.runtime import EdgeRuntime
from gateway.settings import Settings, SettingsError

logger = logging.getLogger("gateway")

RESTART_ONLY = ("listen", "workers", "redis_url", "revocation_retention", "reload_watch")
"""Settings a reload keeps: the server reads the first two once, before the app; the Redis connection
and the deny list live as long as the process (handed from runtime to runtime)."""


@dataclass(frozen=True, slots=True)
class Serving:
    """One configuration being served: its runtime and the gate in front of it."""

    runtime: EdgeRuntime
    gate: Gate
    sha256: str
    """Of the configuration file's bytes (of nothing without a file): which configuration is live."""


def configuration_digest(settings: Settings) -> str:
    path = settings.config_path
    content = b""
    if path is not None:
        try:
            content = path.read_bytes()
        except OSError:  # read a moment ago by the loader: a file that went away since is not this one
            content = b""
    return hashlib.sha256(content).hexdigest()


class Live:
    """The `Serving` of this worker; `reload` replaces it. `reloads` counts reloads by result."""

    def __init__(
        self,
        runtime: EdgeRuntime,
        *,
        load: Callable[[], Settings] | None = None,
        on_swap: Callable[[EdgeRuntime], None] = lambda runtime: None,
    ) -> None:
        self.current = Serving(runtime, Gate(runtime), configuration_digest(runtime.settings))
        self.load = load
        """Reads the settings again (None: this app cannot reload, e.g. built from settings in a test)."""
        self._on_swap = on_swap
        self.reloads: Counter[str] = Counter()
        self._retiring: set[asyncio.Task[None]] = set()
        self._draining: set[EdgeRuntime] = set()
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Read the settings again and serve them if they are valid; True when the new ones are live."""
        async with self._lock:  # two signals in a row: one reload after the other
            return await self._reload()

    async def _reload(self) -> bool:
        if self.load is None:
            return False
        old = self.current
        try:
            settings = self.load()
        except SettingsError as error:
            for problem in error.problems:
                logger.error("configuration reload refused: %s", problem)
            logger.error("configuration reload refused; still serving sha256 %s", old.sha256)
            self.reloads["refused"] += 1
            return False
        except Exception:  # never the end of the signal handler's task: the old configuration stays
            logger.exception("configuration reload failed; still serving sha256 %s", old.sha256)
            self.reloads["failed"] += 1
            return False
        settings = _keep_restart_only(old.runtime.settings, settings)
        runtime: EdgeRuntime | None = None
        try:
            runtime = old.runtime.successor(settings)
            await runtime.start()
        except Exception:  # a collaborator that cannot be built: the old configuration stays
            logger.exception("configuration reload failed; still serving sha256 %s", old.sha256)
            self.reloads["failed"] += 1
            if runtime is not None:
                runtime.hand_over_shared()  # they stay the old runtime's
                await runtime.aclose()
            return False
        old.runtime.hand_over_shared()
        self.current = Serving(runtime, Gate(runtime), configuration_digest(settings))
        self._on_swap(runtime)
        self.reloads["applied"] += 1
        apps = ", ".join(app.name for app in runtime.apps.apps)
        logger.warning("configuration reloaded: sha256 %s is live (apps: %s)", self.current.sha256, apps)
        task = asyncio.create_task(self._retire(old.runtime))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return True

    async def _retire(self, runtime: EdgeRuntime) -> None:
        """The old runtime: its in-flight requests finish, then its connections close."""
        self._draining.add(runtime)
        try:
            await runtime.drain(runtime.settings.gateway.shutdown_timeout)
        finally:
            self._draining.discard(runtime)
            await runtime.aclose()

    @property
    def in_flight(self) -> int:
        """Requests being answered, by the current runtime and by those still draining."""
        return self.current.runtime.in_flight + sum(runtime.in_flight for runtime in self._draining)

    async def aclose(self, timeout: float) -> None:
        """At shutdown: the current runtime drains and closes, and so do runtimes still retiring."""
        runtime = self.current.runtime
        await runtime.drain(timeout)
        await runtime.aclose()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


def _keep_restart_only(running: Settings, loaded: Settings) -> Settings:
    """The loaded settings, with the running values of what only a restart can change (logged)."""
    kept = {}
    for name in RESTART_ONLY:
        before, after = getattr(running.gateway, name), getattr(loaded.gateway, name)
        if before != after:
            logger.warning(
                "configuration reload: %s needs a restart; keeping %s (not %s)", name, _shown(before), _shown(after)
            )
            kept[name] = before
    return replace(loaded, gateway=replace(loaded.gateway, **kept)) if kept else loaded


def _shown(value: object) -> object:
    """A value as a log line may show it: a URL's password masked (`RedisUrl.masked`)."""
    masked = getattr(value, "masked", None)
    return masked if isinstance(masked, str) else value
