"""Forward-auth (`/__gateway/auth`): nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`.

The reverse proxy in front describes the original request; the gateway admits it through the same
pipeline as a proxied request and renders the outcome in the proxies' format. The app is chosen from
the original request's host and URI as for a proxied request; its rules judge it and its identity
mapping writes the headers.

Which request is judged, believed only from a peer in `trusted_proxies` (anyone else gets 403):
* `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto`: Traefik and Caddy set them on every auth request
  (replacing a client's), and the shipped nginx recipe sets them too;
* `X-Original-URL` / `X-Original-Method` (nginx's convention) when there is no `X-Forwarded-Uri`.
When both spellings are present they must describe the same request (path, query, host, method), or
the answer is 400: a client can add either header, and each proxy replaces only its own, so a
disagreement means one of them came from the client.

Answers: allowed, 200 with the identity headers that have a value (an absent one stays absent: the
shipped recipes make sure the proxy does not fill it in, see `config/`); a redirect, 307 with
`Location` for Traefik and Caddy, and for nginx (which cannot pass a 3xx through `auth_request`)
401 with the `Location` its `error_page` uses; refusals keep their status, except that nginx only
understands 401 and 403, so its other 4xx answers become 403.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from litestar import Request, route
from litestar.response.base import ASGIResponse

from gateway.edge.admission import Incoming, server_host
from gateway.edge.outcomes import Deny, Outcome, Proceed, Redirect
from gateway.edge.record import note_outcome, record_of
from gateway.edge.runtime import EdgeRuntime

PATH = "/__gateway/auth"

Headers = list[tuple[bytes, bytes]]


@route(PATH, http_method=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False)
async def forward_auth(request: Request[Any, Any, Any]) -> ASGIResponse:
    """The outcome of the original request the trusted proxy describes."""
    runtime: EdgeRuntime = request.app.state.runtime
    scope = cast(dict[str, Any], request.scope)
    client = scope.get("client")
    if client is None or not runtime.forwarded.is_trusted(str(client[0])):
        return _json(403, "untrusted_forward_auth", "Forward-auth answers only proxies listed in trusted_proxies.")
    headers: Headers = list(scope["headers"])
    original = original_request(headers)
    if isinstance(original, Deny):
        return _json(original.status, original.code, original.message)
    method, target, forwarded_headers = original
    path, _, query = target.partition(b"?")
    incoming = Incoming(
        method=method,
        raw_path=path,
        query=query,
        headers=forwarded_headers,
        scheme="https" if scope.get("scheme") == "https" else "http",
        server_host=server_host(scope),
        trusted_peer=True,
    )
    screened, outcome = await runtime.admission.admit(incoming)
    record = record_of(scope)
    note_outcome(record, outcome)
    app = screened.app if screened is not None else None
    if app is not None:
        record.app = app.name
    nginx = any(name == b"x-original-url" for name, _ in headers)
    identity = (
        await app.identity.headers(outcome.state, pending_signed_in=outcome.pending_signed_in)
        if isinstance(outcome, Proceed) and app is not None
        else []
    )
    return render(outcome, identity, nginx=nginx)


def original_request(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, bytes, Headers] | Deny:
    """(method, request target, the headers with the original host and scheme as forwarding headers)."""
    picked: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _ORIGINAL_HEADERS and name not in picked and value.strip():  # an empty value describes nothing
            picked[name] = value.strip()
    forwarded_uri = picked.get(b"x-forwarded-uri")
    original_url = picked.get(b"x-original-url")
    if forwarded_uri is None and original_url is None:
        return Deny(400, "missing_original_request", "Send X-Forwarded-Method/-Uri/-Host/-Proto (or X-Original-URL).")
    method = (picked.get(b"x-forwarded-method") or picked.get(b"x-original-method") or b"GET").decode("latin-1")
    if (
        b"x-forwarded-method" in picked
        and b"x-original-method" in picked
        and (picked[b"x-forwarded-method"].upper() != picked[b"x-original-method"].upper())
    ):
        return _conflict()
    extra: Headers = []
    target = forwarded_uri
    if original_url is not None:
        try:
            original_target, original_host, original_proto = _split_original_url(original_url)
        except ValueError:  # `urlsplit` on a bracketed host that is no IP literal (nginx writes the client's Host)
            return Deny(400, "bad_original_request", "X-Original-URL is not a URL.")
        if target is not None and target != original_target:
            return _conflict()
        target = original_target
        if original_host is not None:
            host = picked.get(b"x-forwarded-host")
            if host is not None and host.split(b",")[0].strip().lower() != original_host.lower():
                return _conflict()
            if host is None:
                extra.append((b"x-forwarded-host", original_host))
            if b"x-forwarded-proto" not in picked and original_proto is not None:
                extra.append((b"x-forwarded-proto", original_proto))
    assert target is not None
    if not method.isalpha() or not method.isascii():
        return Deny(400, "bad_original_request", "X-Forwarded-Method is not an HTTP method.")
    kept = [(name, value) for name, value in headers if name not in _ORIGINAL_HEADERS or name in _KEPT]
    return method.upper(), target or b"/", [*kept, *extra]


_ORIGINAL_HEADERS = frozenset(
    {
        b"x-forwarded-uri",
        b"x-forwarded-method",
        b"x-original-url",
        b"x-original-method",
        b"x-forwarded-host",
        b"x-forwarded-proto",
    }
)
_KEPT = frozenset({b"x-forwarded-host", b"x-forwarded-proto"})  # what the decision reads of the original


def _split_original_url(value: bytes) -> tuple[bytes, bytes | None, bytes | None]:
    """`X-Original-URL`: a path, or an absolute URL (nginx: `$scheme://$http_host$request_uri`)."""
    if value.startswith(b"/"):
        return value, None, None
    parts = urlsplit(value.decode("latin-1"))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target.encode("latin-1"), parts.netloc.encode("latin-1") or None, parts.scheme.encode("latin-1") or None


def _conflict() -> Deny:
    return Deny(400, "conflicting_original_request", "X-Forwarded-Uri and X-Original-URL describe different requests.")


def render(outcome: Outcome, identity: Headers, *, nginx: bool) -> ASGIResponse:
    """An outcome in the format the proxies understand (see the module docstring); `identity`: the
    app's identity headers when it proceeds."""
    if isinstance(outcome, Proceed):
        named = {name for name, _ in identity}  # the decision's own status headers would come twice
        return _answer(200, None, [*identity, *((n, v) for n, v in outcome.response_headers if n not in named)])
    if isinstance(outcome, Redirect):
        return _answer(401 if nginx else 307, None, [(b"location", outcome.location.encode()), *outcome.headers])
    status = outcome.status
    if nginx and status not in (401, 403) and status < 500:
        status = 403
    if outcome.body is not None:
        return _answer(status, outcome.body, list(outcome.headers))
    body = {"error": outcome.code, "message": outcome.message, **(outcome.extra or {})}
    return _answer(status, body, list(outcome.headers))


def _json(status: int, code: str, message: str) -> ASGIResponse:
    return _answer(status, {"error": code, "message": message}, [])


def _answer(status: int, body: dict[str, str] | bytes | None, headers: Headers) -> ASGIResponse:
    """A response that may carry several `Set-Cookie` headers; header values are bytes as given."""
    return ASGIResponse(
        body=b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode(),
        status_code=status,
        media_type="application/json" if body is not None else "text/plain",
        headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]  # bytes kept as sent
        + [("cache-control", "no-store")],
    )
