"""The gateway's own endpoints under `/__gateway/`: health, readiness, whoami, forward-auth, sign-out, JWKS,
Clerk's webhooks.

These are ordinary Litestar handlers (not on the proxy's hot path); forward-auth has its module
(`forward_auth.py`). Requests reach them screened like every other entrance (limits, canonical path,
`Host` allow-list), except the probes (`healthz`, `readyz`, `metrics`), which orchestrators call by IP.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast
from urllib.parse import urlsplit

from litestar import Request, Response, get
from litestar.response.base import ASGIResponse

from gateway.asgi_types import Scope
from gateway.clerk.claims import SessionClaims
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.request import RequestView
from gateway.edge.forward_auth import forward_auth
from gateway.edge.outcomes import Deny
from gateway.edge.runtime import EdgeRuntime
from gateway.edge.sign_out import sign_out
from gateway.edge.webhooks import clerk_webhook
from gateway.revocation import unless_revoked

PREFIX = "/__gateway"
NO_STORE = {"cache-control": "no-store"}


def _runtime(request: Request[Any, Any, Any]) -> EdgeRuntime:
    runtime: EdgeRuntime = request.app.state.runtime
    return runtime


def _scope(request: Request[Any, Any, Any]) -> Scope:
    return cast(Scope, request.scope)


def request_view(runtime: EdgeRuntime, scope: Scope) -> RequestView | ASGIResponse:
    """The request as the admission pipeline screens it (limits, canonical path, `Host` allow-list)."""
    view = runtime.admission.view_of(scope)
    if isinstance(view, Deny):
        return _response(view.status, {"error": view.code, "message": view.message}, [])
    return view


def identity_json(claims: SessionClaims | None) -> dict[str, Any] | None:
    if claims is None:
        return None
    return claims.as_dict()


@get(f"{PREFIX}/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> Response[dict[str, str]]:
    """Process alive and serving."""
    return Response({"status": "ok"}, headers=NO_STORE)


@get(f"{PREFIX}/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Ready to serve: settings valid (we started), verification keys loaded, the app (each app) reachable;
    Redis's state is reported beside them without changing the verdict."""
    runtime = _runtime(request)
    checks: dict[str, Any] = {"settings": "ok"}
    ready = runtime.started
    if not runtime.keys_available and runtime.authenticator.jwks is not None:
        await runtime.authenticator.jwks.refresh_if_stale()
    checks["keys"] = "ok" if runtime.keys_available else "unavailable"
    ready = ready and runtime.keys_available
    gateway = runtime.settings.gateway
    apps = [app for app in gateway.served_apps() if app.upstream]
    reachable = await asyncio.gather(
        *(_tcp_reachable(app.upstream or "", app.connect_timeout or gateway.connect_timeout) for app in apps)
    )
    if gateway.apps:
        checks["apps"] = {app.name: "ok" if up else "unreachable" for app, up in zip(apps, reachable, strict=True)}
    elif apps:
        checks["upstream"] = "ok" if reachable[0] else "unreachable"
    ready = ready and all(reachable)
    if runtime.redis is not None:
        # Reported, never a reason to leave the load balancer: a replica serves from its own state while
        # Redis is away (README, "Running several replicas"), and all replicas would leave at once.
        checks["redis"] = "ok" if runtime.redis.up else "down"
    return Response(
        {"status": "ready" if ready else "not-ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=NO_STORE,
    )


async def _tcp_reachable(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


@get(f"{PREFIX}/whoami", include_in_schema=False)
async def whoami(request: Request[Any, Any, Any]) -> ASGIResponse:
    """The identity the gateway sees for this request (JSON), or 401 with Clerk's reason."""
    runtime = _runtime(request)
    view = request_view(runtime, _scope(request))
    if isinstance(view, ASGIResponse):
        return view
    try:
        state = await runtime.authenticator.authenticate(view)
    except ClerkProtocolError as error:
        return _response(400, {"error": error.reason, "message": error.message}, [])
    state = unless_revoked(runtime.revocations.deny_list, state)
    if state.is_signed_in and state.claims is not None:
        return _response(200, {"status": "signed-in", "identity": identity_json(state.claims)}, [])
    return _response(401, {"status": state.status, "reason": state.reason, "message": state.message}, [])


def _response(status: int, body: Any, headers: list[tuple[str, str]]) -> ASGIResponse:
    """A response that may carry several `Set-Cookie` headers."""
    return ASGIResponse(
        body=b"" if body is None else json.dumps(body).encode(),
        status_code=status,
        media_type="application/json" if body is not None else "text/plain",
        headers=[*headers, ("cache-control", "no-store")],
    )


@get(f"{PREFIX}/jwks.json", include_in_schema=False, sync_to_thread=False)
def gateway_jwks(request: Request[Any, Any, Any]) -> Response[Any]:
    """The public key of the signed identity assertion, for apps that verify it."""
    runtime = _runtime(request)
    if runtime.asserter is None:
        return Response({"error": "not_found", "message": "No identity assertion key is configured."}, status_code=404)
    return Response(runtime.asserter.jwks(), headers={"cache-control": "max-age=300"})


HANDLERS = [healthz, readyz, whoami, forward_auth, sign_out, gateway_jwks, clerk_webhook]
"""Every handler Litestar serves; `GatewayApp` routes these paths (canonical) to Litestar."""
