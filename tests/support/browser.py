"""A small browser for HTTP-level flow tests: per-host cookie jars, redirects, virtual host names.

Real host names give each party its own cookie jar (the app, the satellite, the Frontend API), as in
production. Every virtual host (`app.test:8000`) is routed to a loopback server while the request
keeps its `Host` header, so no resolver or hosts file is needed. Like Chromium on loopback, cookies
marked `Secure` are kept and sent over plain http.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

NAVIGATION = {"sec-fetch-dest": "document", "sec-fetch-mode": "navigate", "accept": "text/html,*/*;q=0.8"}
FETCH = {"sec-fetch-dest": "empty", "sec-fetch-mode": "cors", "accept": "application/json"}


@dataclass
class StoredCookie:
    value: str
    domain: str
    host_only: bool
    expires: float | None = None


@dataclass
class Browser:
    """`routes` maps `host:port` as the browser sees it to the loopback base URL that serves it.

    `clock` ages cookies with a `Max-Age` (Clerk's 2-second redirect counter among them); with a test's
    fake clock, `think()` lets the time a person takes between two clicks pass.
    """

    client: httpx.AsyncClient
    routes: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    cookies: dict[tuple[str, str], StoredCookie] = field(default_factory=dict)  # (domain, name)
    history: list[httpx.Response] = field(default_factory=list)

    def think(self, seconds: float = 3.0) -> None:
        advance = getattr(self.clock, "advance", None)
        if advance is not None:
            advance(seconds)

    def _live(self) -> list[tuple[str, StoredCookie]]:
        now = self.clock()
        return [
            (name, stored)
            for (_, name), stored in self.cookies.items()
            if stored.expires is None or stored.expires > now
        ]

    def cookie(self, host: str, name: str) -> str | None:
        hostname = host.split(":")[0]
        for cookie_name, stored in self._live():
            if cookie_name == name and _matches(hostname, stored):
                return stored.value
        return None

    def cookie_header(self, hostname: str) -> str:
        return "; ".join(f"{name}={stored.value}" for name, stored in self._live() if _matches(hostname, stored))

    def set_cookie(self, hostname: str, name: str, value: str) -> None:
        self.cookies[(hostname, name)] = StoredCookie(value, hostname, True)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        follow: bool = True,
        max_hops: int = 20,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, store cookies, follow redirects (303 and 301/302 turn into GET, as browsers do)."""
        self.history = []
        for _ in range(max_hops):
            response = await self._send(method, url, headers or {}, **kwargs)
            self.history.append(response)
            location = response.headers.get("location")
            if not follow or location is None or response.status_code not in (301, 302, 303, 307, 308):
                return response
            url = urljoin(url, location)
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method, kwargs = "GET", {}
        raise AssertionError(f"more than {max_hops} redirects: {[r.headers.get('location') for r in self.history]}")

    async def navigate(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, headers={**NAVIGATION, **kwargs.pop("headers", {})}, **kwargs)

    async def fetch(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request(method, url, headers={**FETCH, **kwargs.pop("headers", {})}, **kwargs)

    async def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        parts = urlsplit(url)
        netloc = parts.netloc
        target = self.routes.get(netloc)
        real_url = (
            url
            if target is None
            else urlunsplit((urlsplit(target).scheme, urlsplit(target).netloc, parts.path or "/", parts.query, ""))
        )
        request_headers = {"user-agent": "Mozilla/5.0 (flow tests)", **headers}
        if target is not None:
            request_headers["host"] = netloc
        jar = self.cookie_header(parts.hostname or "")
        if jar:
            request_headers["cookie"] = jar
        response = await self.client.request(method, real_url, headers=request_headers, **kwargs)
        self._store(parts.hostname or "", response.headers.get_list("set-cookie"))
        return response

    def _store(self, hostname: str, headers: list[str]) -> None:
        for header in headers:
            pair, *attributes = [piece.strip() for piece in header.split(";")]
            name, _, value = pair.partition("=")
            options = {}
            for attribute in attributes:
                key, _, attribute_value = attribute.partition("=")
                options[key.lower()] = attribute_value
            domain = options.get("domain", "").lstrip(".").lower()
            host_only = not domain
            domain = domain or hostname
            key = (domain, name)
            max_age = options.get("max-age")
            if max_age is not None and max_age.lstrip("-").isdigit() and int(max_age) <= 0:
                self.cookies.pop(key, None)
                continue
            expires = self.clock() + int(max_age) if max_age is not None and max_age.isdigit() else None
            self.cookies[key] = StoredCookie(value, domain, host_only, expires)


def _matches(hostname: str, cookie: StoredCookie) -> bool:
    if cookie.host_only:
        return hostname == cookie.domain
    return hostname == cookie.domain or hostname.endswith("." + cookie.domain)
