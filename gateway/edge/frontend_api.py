"""Clerk's Frontend API proxy under `/__clerk`, as Clerk's own `clerkFrontendApiProxy` does it.

PROTOCOL.md §8, header by header: clerk-js (configured with `proxyUrl`) talks to the Frontend API
through the app's own origin, so first-party cookies and ad-blockers are not an issue. The request goes
on with `Clerk-Proxy-Url` (where the proxy lives, so FAPI writes redirect URLs through it) and
`Clerk-Secret-Key` (proving we are allowed to proxy this instance); the answer comes back with its
cookies, and redirects pointing at FAPI are rewritten to go through the proxy again.

Differences from Clerk's proxy, on purpose:
* Upstream base: `CLERK_FAPI_URL` (`ClerkSettings.frontend_api_url`, e.g. an emulator at
  `http://127.0.0.1:4500`) or else `https://<Frontend API host from the publishable key>`, not
  Clerk's `frontend-api.clerk.dev` default: a real instance answers on the host its key names (the
  same host clerk-js would call without a proxy), and the emulator answers where it listens. See
  `frontend_api_base_url`.
* `Clerk-Proxy-Url` comes from the settings (`CLERK_PROXY_URL`, else `GATEWAY_PUBLIC_ORIGIN` + the
  prefix), never from a client's `Host` when those are set (`configured_proxy_url`).
* Only believed forwarding headers are used (`forwarded.py`): the client IP is `cf-connecting-ip` ‖
  `x-real-ip` ‖ the believed client of `X-Forwarded-For` ‖ the socket peer, and untrusted
  `X-Forwarded-*` never reach FAPI.

Runs on the shared `httpx.AsyncClient` (few requests per page load, not the hot path).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote_from_bytes, urljoin, urlsplit, urlunsplit

import httpx

from gateway.asgi_types import Receive, Scope, Send
from gateway.clerk.errors import ConfigurationError
from gateway.clerk.keys import PublishableKey, parse_publishable_key
from gateway.edge.http_errors import send_bytes
from gateway.forwarded import ForwardedPolicy, is_forwarding_twin
from gateway.settings import Secret
from gateway.upstream.client import ClientDisconnected
from gateway.upstream.headers import HOP_BY_HOP, filter_headers

logger = logging.getLogger("gateway.frontend_api")

Headers = list[tuple[bytes, bytes]]

DEFAULT_PREFIX = "/__clerk"
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"accept-encoding", b"clerk-proxy-url", b"clerk-secret-key", b"expect"}
_NOT_RETURNED = HOP_BY_HOP | {b"content-encoding", b"content-length"}


def frontend_api_base_url(publishable_key: str | PublishableKey, fapi_url: str | None = None) -> str:
    """`fapi_url` when configured (`CLERK_FAPI_URL`), else `https://<Frontend API host from the key>`.

    Deliberately not PROTOCOL.md §8's `https://frontend-api.clerk.dev` default: the host in the key is
    where a real instance's Frontend API answers too, and it keeps one rule for Clerk and the emulator.
    """
    if fapi_url:
        return fapi_url.rstrip("/")
    key = publishable_key if isinstance(publishable_key, PublishableKey) else parse_publishable_key(publishable_key)
    return f"https://{key.frontend_api}"


def configured_proxy_url(proxy_url: str | None, public_origin: str | None, prefix: str) -> str | None:
    """The proxy's public URL from the settings: an absolute `CLERK_PROXY_URL` as it is, a relative one
    under the public origin, else the public origin + the prefix; None when the settings name no origin."""
    if proxy_url and "://" in proxy_url:
        return proxy_url
    if public_origin:
        return public_origin.rstrip("/") + (proxy_url if proxy_url and proxy_url.startswith("/") else prefix)
    return None


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


def _host_port(url: str) -> str:
    """`host[:port]` with the scheme's default port dropped, lower-cased (WHATWG `URL.host`)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return host
    return host if port is None or port == default else f"{host}:{port}"


class FrontendApiProxy:
    """Proxy `<prefix>` and `<prefix>/...` to the Frontend API (PROTOCOL.md §8)."""

    def __init__(
        self,
        prefix: str,
        fapi_url: str | None,
        secret_key: str | Secret | None,
        publishable_key: str | PublishableKey | None,
        forwarded: ForwardedPolicy,
        client: httpx.AsyncClient,
        proxy_url: str | None = None,
    ) -> None:
        self.prefix = prefix.rstrip("/") or DEFAULT_PREFIX
        self.proxy_url = proxy_url.rstrip("/") if proxy_url else None
        """Where browsers reach this proxy (`Clerk-Proxy-Url`, rewritten `Location`s), from the settings;
        only when none is configured is it the request's own (allow-listed) origin + the prefix."""
        self._prefix_bytes = self.prefix.encode("latin-1")
        self.forwarded = forwarded
        self.client = client
        self._secret_key = secret_key.value if isinstance(secret_key, Secret) else secret_key
        self._configuration_error: str | None = None
        self.base_url = ""
        try:
            if not publishable_key:
                raise ValueError("Missing publishable key")
            if not self._secret_key:
                raise ValueError("Missing secret key")
            self.base_url = frontend_api_base_url(publishable_key, fapi_url)
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("The Frontend API URL must be an http(s) URL")
            if parts.username or parts.password or parts.query or parts.fragment:
                raise ValueError("The Frontend API URL must not contain credentials, a query or a fragment")
        except (ValueError, ConfigurationError) as error:  # reported at request time, as Clerk's proxy does
            self._configuration_error = str(error)
        self._fapi_host = _host_port(self.base_url) if self.base_url else ""

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # clerk-js never opens WebSockets to FAPI
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
            return
        if self._configuration_error is not None:
            await self._error(send, 500, "proxy_configuration_error", self._configuration_error)
            return
        path = scope["path"]
        if not self.matches(path):
            message = f'Request path "{path}" does not match proxy path "{self.prefix}"'
            await self._error(send, 400, "proxy_path_mismatch", message)
            return
        target = self._target(scope)
        if _host_port(target) != self._fapi_host:
            await self._error(send, 400, "proxy_request_failed", "Proxy target host does not match Frontend API")
            return
        info = self.forwarded.client_info(scope)
        believed = self.forwarded.believed_headers(scope)
        proxy_url = self.proxy_url or f"{info.origin or ''}{self.prefix}"
        headers = [pair for pair in filter_headers(believed, _NOT_FORWARDED) if not is_forwarding_twin(pair[0])]
        present = {name for name, _ in headers}
        headers.append((b"clerk-proxy-url", proxy_url.encode("latin-1")))
        headers.append((b"clerk-secret-key", (self._secret_key or "").encode("latin-1")))
        headers.append((b"host", self._fapi_host.encode("latin-1")))
        headers.append((b"accept-encoding", b"identity"))
        if b"x-forwarded-host" not in present and info.host:
            headers.append((b"x-forwarded-host", info.host.encode("latin-1")))
        if b"x-forwarded-proto" not in present:
            headers.append((b"x-forwarded-proto", info.proto.encode("latin-1")))
        headers = [(name, value) for name, value in headers if name != b"x-forwarded-for"]
        client_ip = self.forwarded.frontend_api_client_ip(info, believed)
        if client_ip:
            headers.append((b"x-forwarded-for", client_ip.encode("latin-1")))

        has_body = any(
            (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding"
            for name, value in scope["headers"]
        )
        request = httpx.Request(
            scope["method"],
            _connect_url(target),
            headers=headers,
            content=_request_body(receive) if has_body else None,
            extensions={"timeout": self.client.timeout.as_dict()},
        )
        try:
            response = await self.client.send(request, stream=True, follow_redirects=False)
        except ClientDisconnected:
            return
        except httpx.HTTPError as error:
            if isinstance(error.__cause__, ClientDisconnected):
                return
            message = str(error) or type(error).__name__
            logger.warning("Frontend API proxy request failed: %s", message)
            await self._error(send, 502, "proxy_request_failed", f"Failed to proxy request to Clerk FAPI: {message}")
            return
        try:
            await self._relay_response(response, proxy_url, send)
        finally:
            await response.aclose()

    def _target(self, scope: Scope) -> str:
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is None or not raw_path.startswith(self._prefix_bytes):
            raw_path = quote_from_bytes(scope["path"].encode("utf-8"), safe="/").encode("ascii")
        rest = raw_path[len(self._prefix_bytes) :] or b"/"
        query: bytes = scope.get("query_string", b"")
        rest_text = rest.decode("ascii") if rest.isascii() else quote_from_bytes(rest, safe=bytes(range(0x21, 0x7F)))
        url = self.base_url + rest_text
        return f"{url}?{query.decode('latin-1')}" if query else url

    async def _relay_response(self, response: httpx.Response, proxy_url: str, send: Send) -> None:
        headers = filter_headers(response.headers.raw, _NOT_RETURNED)
        for index, (name, value) in enumerate(headers):
            if name == b"location":
                headers[index] = (name, self._rewrite_location(value.decode("latin-1"), proxy_url).encode("latin-1"))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        try:
            async for chunk in response.aiter_bytes():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as error:  # mid-body: too late for a 502, close the client connection
            logger.warning("Frontend API response broke off: %s", error)
            return
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _rewrite_location(self, location: str, proxy_url: str) -> str:
        """Resolved against the FAPI base; on the FAPI host → `<Clerk-Proxy-Url><path><query><fragment>`."""
        resolved = urljoin(self.base_url + "/", location)
        if _host_port(resolved) != self._fapi_host:
            return location
        parts = urlsplit(resolved)
        query = f"?{parts.query}" if parts.query else ""
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        return f"{proxy_url}{parts.path or '/'}{query}{fragment}"

    @staticmethod
    async def _error(send: Send, status: int, code: str, message: str) -> None:
        await send_bytes(send, status, b"application/json", _error_body(code, message))


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("client disconnected during the request body")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _connect_url(url: str) -> str:
    """Where to connect: `localhost` and `*.localhost` are loopback by definition (RFC 6761 §6.3).

    Browsers resolve them so, the system resolver often does not; the `Host` header keeps the name.
    """
    parts = urlsplit(url)
    hostname = (parts.hostname or "").lower()
    if hostname != "localhost" and not hostname.endswith(".localhost"):
        return url
    netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
