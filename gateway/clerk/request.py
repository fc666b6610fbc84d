"""What the core may read of a request: method, raw URL, headers; and the public URL Clerk computes.

PROTOCOL.md §2.4. The edge decides which `X-Forwarded-*` headers are believed (trusted proxies) and
strips the rest before building the view, so the core can follow Clerk's rules literally.
"""

from __future__ import annotations

import re
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
        return cls.from_merged(method, url, merged)

    @classmethod
    def from_merged(cls, method: str, url: str, merged: dict[str, str]) -> RequestView:
        """`build` for headers already merged under lower-case names (the edge decodes them once)."""
        clerk_url, origin, path, query = public_url(url, merged)
        return cls(
            method=method.upper(),
            url=url,
            headers=merged,
            cookies=parse_cookie_header(merged.get("cookie", "")),
            query=tuple(parse_query(query)) if query else (),
            clerk_url=clerk_url,
            clerk_origin=origin,
            path=path or "/",
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
    def carries_session_token(self) -> bool:
        """A session token was sent at all (header or any `__session` cookie), valid or not."""
        return bool(self.headers.get("authorization")) or any(name.startswith("__session") for name in self.cookies)

    def dev_browser_token(self, cookie_suffix: str) -> str | None:
        """The development browser's `__clerk_db_jwt` cookie (suffixed first), for cross-origin sign-in."""
        return self.cookies.get(f"__clerk_db_jwt_{cookie_suffix}") or self.cookies.get("__clerk_db_jwt") or None

    @property
    def is_document_get(self) -> bool:
        return self.method == "GET" and self.sec_fetch_dest == "document"


# What the WHATWG parser leaves untouched: plain host names, and paths/queries with no character it
# would percent-encode, no dot segment and no backslash. Such URLs skip the general parser.
_SIMPLE_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::([0-9]{1,5}))?")
_SIMPLE_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")
_SIMPLE_QUERY = re.compile(r"[A-Za-z0-9\-._~!$&()*+,;=:@%/?]*")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def is_plain_path(path: str) -> bool:
    """A raw path the WHATWG parser leaves as it is (so `RequestView.path` is the path itself): no dot
    segment, also none spelled `%2e` (the parser resolves those too, and so may the app)."""
    return _SIMPLE_PATH.fullmatch(path) is not None and "/." not in path and "%2e" not in path.lower()


def public_url(raw_url: str, headers: Mapping[str, str]) -> tuple[str, str, str, str]:
    """(`clerkUrl`, its origin, path, query) for a request, as Clerk's SDK computes `clerkUrl`."""
    scheme, separator, rest = raw_url.partition("://")
    forwarded_host = headers.get("x-forwarded-host")
    host = forwarded_host.split(",")[0] if forwarded_host is not None else headers.get("host")
    forwarded_proto = headers.get("x-forwarded-proto")
    proto = forwarded_proto.split(",")[0] if forwarded_proto is not None else scheme.lower()
    if separator and host and proto in _DEFAULT_PORTS and "#" not in rest:
        slash = rest.find("/")
        target = rest[slash:] if slash != -1 else "/"
        path, _, query = target.partition("?")
        lowered = host.lower()
        simple = _SIMPLE_HOST.fullmatch(lowered)
        if (
            simple is not None
            and is_plain_path(path)
            and _SIMPLE_QUERY.fullmatch(query)
            and (simple.group(1) is None or int(simple.group(1)) <= 65535)
        ):
            port = simple.group(1)
            if port is not None and port.lstrip("0") == _DEFAULT_PORTS[proto]:
                lowered = lowered.rpartition(":")[0]
            elif port is not None:
                lowered = f"{lowered.rpartition(':')[0]}:{int(port)}"
            origin = f"{proto}://{lowered}"
            return f"{origin}{path}{'?' + query if query else ''}", origin, path, query
    return _general_public_url(raw_url, host, (forwarded_proto is not None and proto) or None)


def _general_public_url(raw_url: str, host: str | None, proto: str | None) -> tuple[str, str, str, str]:
    try:
        raw = urlsplit(raw_url)
    except ValueError as error:
        raise BadRequestError(f"Unparsable request URL: {error}") from error
    scheme = proto if proto is not None else raw.scheme
    path_and_query = (raw.path or "/") + (f"?{raw.query}" if raw.query else "")
    candidate = f"{scheme}://{host}{path_and_query}" if host else raw_url
    try:
        clerk_url = normalize_url(candidate)
    except InvalidUrl as error:
        raise BadRequestError(f"Cannot form the request's public URL: {error}") from error
    parts = urlsplit(clerk_url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return clerk_url, origin, parts.path or "/", parts.query
