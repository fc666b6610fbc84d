"""ASGI apps the benchmark serves beside the gateway (granian factories, `bench.apps:<name>`).

* `ceiling_app`: the Python ceiling, raw ASGI + the gateway's upstream client (`Http1UpstreamClient`),
  no auth, no header policy: what any Python proxy on this server and client costs at the least.
* `litestar_mount_app`: the gateway's gate behind Litestar's router as an `asgi` mount at `/`, with the
  same observability wrapper (how `create_app` was built before its thin dispatcher), to measure what
  Litestar's routing costs a proxied request.
* `gateway_app`: the gateway exactly as `gateway serve` builds it (`app_from_environment`), except that
  `BENCH_SESSION_MEMO=off` builds its gate without the session memo (`Gate.memo = None`): what the memo
  buys, measured in one run (`bench/run.py --memo`). Not a setting of the gateway: a bench-only build.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.upstream.http1 import Http1UpstreamClient

Scope = dict[str, Any]


def ceiling_app() -> Any:
    upstream = os.environ["GATEWAY_UPSTREAM"].rstrip("/")
    host = upstream.split("//", 1)[1].encode()
    client = Http1UpstreamClient(connect_timeout=5.0, read_timeout=60.0, limit=256)
    skip = frozenset({b"host", b"connection", b"content-length", b"transfer-encoding"})
    hop = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await client.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        query = scope.get("query_string", b"")
        target = upstream + scope["raw_path"].decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        headers = [(name, value) for name, value in scope["headers"] if name not in skip]
        headers.append((b"host", host))
        async with client.request(scope["method"], target, headers, None) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(n.lower(), v) for n, v in response.headers if n.lower() not in hop],
                }
            )
            ended = False
            async for chunk in response.iter_body():
                ended = response.complete  # the last chunk ends the response: one message for small answers
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def gateway_app() -> Any:
    from gateway.edge.app import app_from_environment

    app = app_from_environment()
    if os.environ.get("BENCH_SESSION_MEMO", "on") == "off":
        app.gate.memo = None
    return app


def litestar_mount_app() -> Any:
    from litestar import Litestar, asgi

    from gateway.edge.endpoints import HANDLERS
    from gateway.edge.gate import Gate
    from gateway.edge.live import Live
    from gateway.edge.observability import Observability
    from gateway.edge.runtime import EdgeRuntime
    from gateway.settings_command import load_or_exit

    settings = load_or_exit(None, require_upstream=True)
    runtime = EdgeRuntime(settings)
    gate = Gate(runtime)

    @asgi("/", is_mount=True, copy_scope=False)
    async def proxied(scope: Any, receive: Any, send: Any) -> None:
        await gate(scope, receive, send)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.aclose()

    app = Litestar(route_handlers=[*HANDLERS, proxied], lifespan=[lifespan], openapi_config=None, debug=False)
    app.state.runtime = runtime
    app.asgi_handler = Observability(app.asgi_handler, Live(runtime), access_log=settings.gateway.access_log)
    return app
