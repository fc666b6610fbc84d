"""The gateway's own endpoints under `/__gateway/`: health, readiness, whoami, forward-auth, sign-out, JWKS.

These are ordinary Litestar handlers (not on the proxy's hot path). Forward-auth lets nginx
(`auth_request`), Traefik (`forwardAuth`) and Caddy (`forward_auth`) use the same decision as the proxy.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from litestar import Request, Response, get, post, route
from litestar.response.base import ASGIResponse

from gateway.asgi_types import Scope
from gateway.clerk.claims import SessionClaims
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.redirects import is_allowed_redirect, sign_in_url
from gateway.clerk.request import RequestView
from gateway.edge.gate import decode_headers, dev_browser_token, server_host
from gateway.edge.runtime import EdgeRuntime

PREFIX = "/__gateway"
NO_STORE = {"cache-control": "no-store"}


def _runtime(request: Request[Any, Any, Any]) -> EdgeRuntime:
    runtime: EdgeRuntime = request.app.state.runtime
    return runtime


def _scope(request: Request[Any, Any, Any]) -> Scope:
    return cast(Scope, request.scope)


def request_view(
    runtime: EdgeRuntime, scope: Scope, *, method: str | None = None, url: str | None = None
) -> RequestView:
    headers = decode_headers(runtime.forwarded.believed_headers(scope))
    if url is None:
        host = headers.get("host") or server_host(scope)
        scheme = "https" if scope.get("scheme") == "https" else "http"
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        url = f"{scheme}://{host}{raw_path.split(b'?', 1)[0].decode('latin-1')}" + (
            f"?{query.decode('latin-1')}" if query else ""
        )
    return RequestView.from_merged(method or str(scope.get("method", "GET")), url, headers)


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
    """Ready to serve: settings valid (we started), verification keys loaded, the app reachable."""
    runtime = _runtime(request)
    checks: dict[str, Any] = {"settings": "ok"}
    ready = runtime.started
    if not runtime.keys_available and runtime.authenticator is not None and runtime.authenticator.jwks is not None:
        await runtime.authenticator.jwks.refresh_if_stale()
    checks["keys"] = "ok" if runtime.keys_available else "unavailable"
    ready = ready and runtime.keys_available
    upstream = runtime.settings.gateway.upstream
    if upstream:
        reachable = await _tcp_reachable(upstream, runtime.settings.gateway.connect_timeout)
        checks["upstream"] = "ok" if reachable else "unreachable"
        ready = ready and reachable
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
    try:
        state = await _authenticator(runtime).authenticate(request_view(runtime, _scope(request)))
    except ClerkProtocolError as error:
        return _response(400, {"error": error.reason, "message": error.message}, [])
    if state.is_signed_in and state.claims is not None:
        return _response(200, {"status": "signed-in", "identity": identity_json(state.claims)}, [])
    return _response(401, {"status": state.status, "reason": state.reason, "message": state.message}, [])


def _authenticator(runtime: EdgeRuntime) -> Any:
    assert runtime.authenticator is not None
    return runtime.authenticator


@route(
    f"{PREFIX}/auth", http_method=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False
)
async def forward_auth(request: Request[Any, Any, Any]) -> ASGIResponse:
    """nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`.

    The original request comes from `X-Original-URL`/`X-Original-Method` (nginx) or
    `X-Forwarded-Proto/-Host/-Uri/-Method` (Traefik, Caddy), believed only from trusted proxies.
    Allowed: 200 with the identity headers. Redirects: a 307 for Traefik and Caddy; nginx cannot pass
    a 3xx through `auth_request`, so it gets 401 with the `Location` to use in its `error_page`.
    """
    runtime = _runtime(request)
    headers = decode_headers(runtime.forwarded.believed_headers(_scope(request)))
    nginx_style = "x-original-url" in headers
    method, url = _original_request(headers)
    if url is None:
        return _response(
            400,
            {
                "error": "missing_original_request",
                "message": "Send X-Forwarded-Host/-Uri (or X-Original-URL) from a trusted proxy.",
            },
            [],
        )
    try:
        view = request_view(runtime, _scope(request), method=method, url=url)
        state = await _authenticator(runtime).authenticate(view)
    except ClerkProtocolError as error:
        return _response(400, {"error": error.reason, "message": error.message}, [])
    state_headers = [(name, value) for name, value in state.headers if name not in ("location",)]
    if state.location is not None:
        return _redirect_answer(state.location, state_headers, nginx_style)
    decision = runtime.policy.decide(view.path, view.headers, state.claims if state.is_signed_in else None)
    if decision.verdict == "allow":
        identity = [(name.decode(), value.decode("utf-8")) for name, value in runtime.identity.headers_for(state)]
        return _response(200, None, [*identity, *state_headers])
    if decision.verdict == "forbidden":
        return _response(403, {"error": "forbidden"}, state_headers)
    if decision.is_api or not view.is_get:
        return _response(401, {"error": "unauthenticated", "reason": state.reason}, state_headers)
    location = sign_in_url(runtime.settings.clerk, view.clerk_url, view.clerk_origin, dev_browser_token(view, runtime))
    return _redirect_answer(location, state_headers, nginx_style)


def _original_request(headers: dict[str, str]) -> tuple[str, str | None]:
    if "x-original-url" in headers:
        original = headers["x-original-url"]
        if original.startswith("/"):
            proto = headers.get("x-forwarded-proto", "http").split(",")[0].strip()
            host = headers.get("x-forwarded-host", headers.get("host", "")).split(",")[0].strip()
            original = f"{proto}://{host}{original}"
        return headers.get("x-original-method", "GET"), original
    forwarded_host = headers.get("x-forwarded-host")
    if not forwarded_host:
        return "GET", None
    proto = headers.get("x-forwarded-proto", "http").split(",")[0].strip()
    uri = headers.get("x-forwarded-uri", "/")
    return headers.get("x-forwarded-method", "GET"), f"{proto}://{forwarded_host.split(',')[0].strip()}{uri}"


def _redirect_answer(location: str, headers: list[tuple[str, str]], nginx_style: bool) -> ASGIResponse:
    return _response(401 if nginx_style else 307, None, [("location", location), *headers])


def _response(status: int, body: Any, headers: list[tuple[str, str]]) -> ASGIResponse:
    """A response that may carry several `Set-Cookie` headers."""
    return ASGIResponse(
        body=b"" if body is None else json.dumps(body).encode(),
        status_code=status,
        media_type="application/json" if body is not None else "text/plain",
        headers=[*headers, ("cache-control", "no-store")],
    )


@post(f"{PREFIX}/sign-out", include_in_schema=False, status_code=303)
async def sign_out(request: Request[Any, Any, Any]) -> ASGIResponse:
    """End the session (revoked at the Backend API), clear the session cookies, go back to the app.

    POST only, with an `Origin` (or `Referer`) of this app: a cross-site form cannot sign people out.
    """
    runtime = _runtime(request)
    view = request_view(runtime, _scope(request))
    allowed = runtime.settings.gateway.allowed_redirect_origins
    source = view.header("origin") or view.header("referer") or ""
    if not source or not is_allowed_redirect(source if "://" in source else "", view.clerk_origin, allowed):
        return _response(403, {"error": "origin_not_allowed", "message": "Sign-out must come from this site."}, [])
    body = await request.body()
    form = dict(parse_qsl(body.decode("utf-8", errors="replace")))
    target: str = form.get("redirect_url") or request.query_params.get("redirect_url") or "/"
    if not is_allowed_redirect(target, view.clerk_origin, allowed):
        target = "/"
    authenticator = _authenticator(runtime)
    state = await authenticator.authenticate(view)
    if state.is_signed_in and state.claims is not None and state.claims.session_id and authenticator.backend:
        await authenticator.backend.revoke_session(state.claims.session_id)
    cookies = _signed_out_cookies(runtime.settings.clerk.cookie_suffix, view.clerk_url.startswith("https"))
    return _response(303, None, [("location", target), *(("set-cookie", cookie) for cookie in cookies)])


def _signed_out_cookies(suffix: str, secure: bool) -> list[str]:
    attributes = "Path=/; SameSite=Lax" + ("; Secure" if secure else "")
    cookies = []
    for name in ("__session", f"__session_{suffix}", f"__refresh_{suffix}"):
        cookies.append(f"{name}=; Max-Age=0; {attributes}")
    for name in ("__client_uat", f"__client_uat_{suffix}"):
        cookies.append(f"{name}=0; Max-Age=315360000; {attributes}")
    return cookies


@get(f"{PREFIX}/jwks.json", include_in_schema=False, sync_to_thread=False)
def gateway_jwks(request: Request[Any, Any, Any]) -> Response[Any]:
    """The public key of the signed identity assertion, for apps that verify it."""
    runtime = _runtime(request)
    if runtime.asserter is None:
        return Response({"error": "not_found", "message": "No identity assertion key is configured."}, status_code=404)
    return Response(runtime.asserter.jwks(), headers={"cache-control": "max-age=300"})


HANDLERS = [healthz, readyz, whoami, forward_auth, sign_out, gateway_jwks]
