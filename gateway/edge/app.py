"""`create_app(settings)`: the gateway as one ASGI callable, the gate in front and Litestar at the rim.

Most requests are proxied, so they go straight to the `Gate` (raw ASGI); only the lifespan and the
gateway's own endpoints (`/__gateway/healthz`, `/auth`, ...) go through Litestar's router. Measured
(bench/RESULTS.md, "Litestar `asgi` mount" row; py-spy): Litestar's router, exception middleware and
`asgi` mount cost 10-15 % of a proxied signed-in GET.
`Observability` wraps the whole (`GatewayApp.handler`): the one place where the app is wrapped.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from litestar import Litestar
from litestar.datastructures import State

from gateway.asgi_types import Receive, Scope, Send
from gateway.edge import answers
from gateway.edge.endpoints import HANDLERS
from gateway.edge.gate import Gate
from gateway.edge.live import Live
from gateway.edge.observability import SERVING_KEY, Observability, configure_access_log
from gateway.edge.paths import AmbiguousPath, canonical_path
from gateway.edge.record import record_of, stamp
from gateway.edge.reload import FileWatch, ignore_hangup_until_ready, reload_on_hangup
from gateway.edge.runtime import EdgeRuntime
from gateway.settings import Settings, load_settings

CONFIG_ENV = "GATEWAY_CONFIG"

logger = logging.getLogger("gateway")


class GatewayApp:
    """What ASGI servers run: the observability wrapper around a two-way dispatch (Litestar or the gate).

    `state` is the Litestar app's state (`state.runtime`), as the endpoints and the tests read it.
    """

    def __init__(self, litestar: Litestar, live: Live, *, access_log: bool) -> None:
        self.litestar = litestar
        self.live = live
        self.state: State = litestar.state
        self._litestar_paths = frozenset(path for handler in HANDLERS for path in handler.paths)
        self.handler = Observability(self.dispatch, live, access_log=access_log)

    @property
    def gate(self) -> Gate:
        """The gate of the configuration being served now."""
        return self.live.current.gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self._is_gateway_endpoint(scope):
            await self.litestar(scope, receive, send)  # type: ignore[arg-type]
            return
        try:
            await scope[SERVING_KEY].gate(scope, receive, send)  # the gate the request started on
        except Exception:
            # What Litestar's exception middleware did for the mounted gate: log, answer 500 if still possible.
            logger.exception("unhandled error in the gate")
            if scope["type"] == "http":
                with suppress(Exception):  # the response had started: the server closes the connection
                    headers = stamp(record_of(scope), [], 500)
                    await answers.error(
                        send, 500, "internal_error", "The gateway failed to handle the request.", headers=headers
                    )


    def _is_gateway_endpoint(self, scope: Scope) -> bool:
        """Routed by the canonical path, as the gate judges it: `/__gateway/%61uth` is `/__gateway/auth`."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        try:
            path = canonical_path(raw_path.split(b"?", 1)[0])
        except AmbiguousPath:
            return False  # the gate refuses it
        if path.judged not in self._litestar_paths:
            return False
        scope["path"], scope["raw_path"] = path.judged, path.forwarded
        return True


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] | None = None,
    reload_settings: Callable[[], Settings] | None = None,
) -> GatewayApp:
    """The gateway for `settings`; with `reload_settings` (how to read them again), SIGHUP reloads them."""
    runtime = EdgeRuntime(settings) if clock is None else EdgeRuntime(settings, clock=clock)
    live = Live(runtime, load=reload_settings, on_swap=lambda new: setattr(litestar.state, "runtime", new))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        reloading = reload_on_hangup(live) if reload_settings is not None else None
        path, every = settings.config_path, settings.gateway.reload_watch
        watching = FileWatch(live, path, every) if reload_settings is not None and path and every > 0 else None
        # What exists now (settings, routes, keys, pools) lives as long as the process: out of the
        # collector's generations, full collections stay short and so do the slowest requests (p99).
        # A request's objects die by reference counting; collecting every 5,000 allocations instead
        # of 700 measured +5 % requests/s (bench/, signed-in GET) with the same p99.
        gc.freeze()
        gc.set_threshold(5_000, 10, 10)
        try:
            yield
        finally:
            if reloading is not None:
                reloading.close()
            if watching is not None:
                watching.close()
            await live.aclose(settings.gateway.shutdown_timeout)

    litestar = Litestar(route_handlers=HANDLERS, lifespan=[lifespan], openapi_config=None, debug=False)
    litestar.state.runtime = runtime
    return GatewayApp(litestar, live, access_log=settings.gateway.access_log)


def app_from_environment() -> GatewayApp:
    """Factory for ASGI servers' worker processes: settings from `GATEWAY_CONFIG` and the environment."""
    from gateway.settings_command import load_or_exit

    configure_access_log()
    ignore_hangup_until_ready()
    path = os.environ.get(CONFIG_ENV) or None
    return create_app(
        load_or_exit(path, require_upstream=True),
        reload_settings=lambda: load_settings(path, os.environ, require_upstream=True),
    )
