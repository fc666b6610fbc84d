"""What the core may read of a request: method, raw URL, headers; and the public URL Clerk computes.

PROTOCOL.md §2.4. The edge decides which `X-Forwarded-*` headers are believed (trusted proxies) and
strips the rest before building the view, so the core can follow Clerk's rules literally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.clerk.cookies import parse_cookie_header
from gateway.clerk.errors import BadRequestError
from gateway.clerk.urls import InvalidUrl, first_param, has_param, normalize_url, parse_query


@dataclass(frozen=True, slots=True)
class RequestView:
    """An immutable view of one request. Build it with `RequestView.build`."""

    method: str
    url: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    query: tuple[tuple[str, str], ...]
    clerk_url: str
    clerk_origin: str
    path: str = field(default="/")

    @classmethod
    def build(cls, method: str, url: str, headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> RequestView:
        """Collect headers (lower-case names; repeats joined with `, `, cookies with `; `) and derive URLs.

        Raises `BadRequestError` when no usable absolute URL can be formed.
        """
        merged: dict[str, str] = {}
        items = headers.items() if isinstance(headers, Mapping) else headers
        for raw_name, value in items:
            name = raw_name.lower()
            if name in merged:
                merged[name] = merged[name] + ("; " if name == "cookie" else ", ") + value
            else:
                merged[name] = value
        clerk_url = compute_clerk_url(url, merged)
        parts = urlsplit(clerk_url)
        origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        return cls(
            method=method.upper(),
            url=url,
            headers=merged,
            cookies=parse_cookie_header(merged.get("cookie", "")),
            query=tuple(parse_query(parts.query)),
            clerk_url=clerk_url,
            clerk_origin=origin,
            path=parts.path or "/",
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def query_param(self, name: str) -> str | None:
        return first_param(self.query, name)

    def has_query_param(self, name: str) -> bool:
        return has_param(self.query, name)

    @property
    def is_get(self) -> bool:
        return self.method == "GET"

    @property
    def sec_fetch_dest(self) -> str:
        return self.headers.get("sec-fetch-dest", "")

    @property
    def is_handshake_eligible(self) -> bool:
        """GET navigations only (PROTOCOL.md §3.1 step 1): a fetch or a POST cannot follow a redirect dance."""
        if self.method != "GET":
            return False
        dest = self.sec_fetch_dest
        if dest in ("document", "iframe"):
            return True
        return not dest and self.headers.get("accept", "").startswith("text/html")

    @property
    def is_document_get(self) -> bool:
        return self.method == "GET" and self.sec_fetch_dest == "document"


def compute_clerk_url(raw_url: str, headers: Mapping[str, str]) -> str:
    """Clerk's `clerkUrl`: the raw path and query under the forwarded (or Host) origin."""
    try:
        raw = urlsplit(raw_url)
    except ValueError as error:
        raise BadRequestError(f"Unparsable request URL: {error}") from error
    forwarded_host = headers.get("x-forwarded-host")
    host = forwarded_host.split(",")[0] if forwarded_host is not None else headers.get("host")
    forwarded_proto = headers.get("x-forwarded-proto")
    proto = forwarded_proto.split(",")[0] if forwarded_proto is not None else raw.scheme
    path_and_query = (raw.path or "/") + (f"?{raw.query}" if raw.query else "")
    candidate = f"{proto}://{host}{path_and_query}" if host else raw_url
    try:
        return normalize_url(candidate)
    except InvalidUrl as error:
        raise BadRequestError(f"Cannot form the request's public URL: {error}") from error
