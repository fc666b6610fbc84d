"""`create_app(settings) -> Litestar`: the gateway's own endpoints plus the gate mounted at `/`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, asgi
from litestar.types import Receive, Scope, Send

from gateway.edge.endpoints import HANDLERS
from gateway.edge.gate import Gate
from gateway.edge.runtime import EdgeRuntime
from gateway.settings import Settings

CONFIG_ENV = "GATEWAY_CONFIG"


def create_app(settings: Settings, *, clock: Callable[[], float] | None = None) -> Litestar:
    runtime = EdgeRuntime(settings) if clock is None else EdgeRuntime(settings, clock=clock)
    gate = Gate(runtime)

    @asgi("/", is_mount=True, copy_scope=False)
    async def proxied(scope: Scope, receive: Receive, send: Send) -> None:
        await gate(scope, receive, send)  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.aclose()

    app = Litestar(route_handlers=[*HANDLERS, proxied], lifespan=[lifespan], openapi_config=None, debug=False)
    app.state.runtime = runtime
    return app


def app_from_environment() -> Litestar:
    """Factory for ASGI servers' worker processes: settings from `GATEWAY_CONFIG` and the environment."""
    from gateway.settings_command import load_or_exit

    return create_app(load_or_exit(os.environ.get(CONFIG_ENV) or None, require_upstream=True))
