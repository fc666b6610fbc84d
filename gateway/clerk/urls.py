"""URL helpers that behave like the WHATWG `URL` / `URLSearchParams` Clerk's SDK uses.

Clerk's URLs are compared byte for byte by the Frontend API and by tests, so serialisation follows
`application/x-www-form-urlencoded` exactly: space → `+`, everything but ASCII alphanumerics and
`*-._` percent-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_FORM_SAFE = "*-._"


_FORM_PLAIN = re.compile(r"[A-Za-z0-9*\-._]*")


@lru_cache(maxsize=4096)
def form_encode(value: str) -> str:
    """Encode one name or value as `URLSearchParams` does (tokens and reasons need nothing: kept as they are).

    Memoised: the same names, reasons and return URLs are encoded for request after request."""
    if _FORM_PLAIN.fullmatch(value):
        return value
    return quote(value, safe=_FORM_SAFE + " ").replace(" ", "+").replace("~", "%7E")


def form_decode(value: str) -> str:
    return unquote_to_bytes(value.replace("+", " ")).decode("utf-8", errors="replace")


def parse_query(query: str) -> list[tuple[str, str]]:
    """Parse a query string (without `?`) into ordered pairs, as `URLSearchParams` does."""
    pairs: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((form_decode(name), form_decode(value)))
    return pairs


def serialize_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{form_encode(name)}={form_encode(value)}" for name, value in pairs)


def first_param(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in pairs:
        if key == name:
            return value
    return None


def has_param(pairs: Iterable[tuple[str, str]], name: str) -> bool:
    return any(key == name for key, _ in pairs)


class InvalidUrl(ValueError):
    """Raised by `parse_absolute_url` for text that `new URL(text)` would reject."""


def parse_absolute_url(text: str) -> tuple[str, str, str, str, str]:
    """Split and normalise an absolute http(s)-like URL: (scheme, netloc, path, query, fragment).

    Scheme and host are lower-cased and a default port dropped, as the WHATWG parser does.
    """
    stripped = text.strip()
    try:
        parts = urlsplit(stripped)
        port = parts.port
    except ValueError as error:
        raise InvalidUrl(str(error)) from error
    if not parts.scheme or not parts.netloc or not parts.hostname:
        raise InvalidUrl(f"not an absolute URL: {text!r}")
    if any(ch in parts.netloc for ch in " <>\\^`{|}"):
        raise InvalidUrl(f"invalid host in URL: {text!r}")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host
    if port is not None and str(port) != DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        userinfo = parts.username or ""
        if parts.password is not None:
            userinfo += ":" + parts.password
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or ("/" if scheme in DEFAULT_PORTS else "")
    if scheme in DEFAULT_PORTS:
        path = _remove_dot_segments(path.replace("\\", "/"))
    return scheme, netloc, _percent_encode(path, _PATH_SAFE), _percent_encode(parts.query, _QUERY_SAFE), parts.fragment


# Characters the WHATWG URL parser leaves as they are in a path / a special URL's query (`%` too:
# existing escapes are kept verbatim); everything else is UTF-8 percent-encoded.
_PATH_SAFE = "!$%&'()*+,-./:;=@[]_|~"
_QUERY_SAFE = "!$%&()*+,-./:;=?@[\\]^_`{|}~"


def _percent_encode(text: str, safe: str) -> str:
    if text.isascii() and all(ch.isalnum() or ch in safe for ch in text):
        return text
    return quote(text, safe=safe)


def _remove_dot_segments(path: str) -> str:
    """`.` and `..` segments (also as `%2e`) resolved as the WHATWG parser does."""
    if "." not in path and "%2" not in path.lower():
        return path
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in (".", "%2e"):
            if last:
                output.append("")
            continue
        if lowered in ("..", ".%2e", "%2e.", "%2e%2e"):
            if output:
                output.pop()
            if last:
                output.append("")
            continue
        output.append(segment)
    return "/" + "/".join(output)


def normalize_url(text: str) -> str:
    scheme, netloc, path, query, fragment = parse_absolute_url(text)
    return urlunsplit((scheme, netloc, path, query, fragment))


def origin_of(text: str) -> str | None:
    """`new URL(text).origin`, or None when the text is not an absolute URL."""
    try:
        scheme, netloc, _, _, _ = parse_absolute_url(text)
    except InvalidUrl:
        return None
    return f"{scheme}://{netloc.rpartition('@')[2]}"


def hostname_of(text: str) -> str | None:
    try:
        _, netloc, _, _, _ = parse_absolute_url(text)
    except InvalidUrl:
        return None
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def edit_query(url: str, edit: Iterable[tuple[str, str | None]] = (), remove: Iterable[str] = ()) -> str:
    """Re-serialise a URL's query after removing names and setting (`name`, value) pairs.

    A set replaces the first existing occurrence in place and drops any others, else appends, like
    `URLSearchParams.set`. Re-serialisation happens even when nothing changed (as in Clerk's SDK).
    """
    scheme, netloc, path, query, fragment = parse_absolute_url(url)
    removed = set(remove)
    pairs = [(k, v) for k, v in parse_query(query) if k not in removed]
    for name, value in edit:
        if value is None:
            continue
        pairs = _set_param(pairs, name, value)
    return urlunsplit((scheme, netloc, path, serialize_query(pairs), fragment))


def append_param(url: str, name: str, value: str) -> str:
    scheme, netloc, path, query, fragment = parse_absolute_url(url)
    pairs = [*parse_query(query), (name, value)]
    return urlunsplit((scheme, netloc, path, serialize_query(pairs), fragment))


def _set_param(pairs: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    placed = False
    for key, existing in pairs:
        if key == name:
            if not placed:
                result.append((name, value))
                placed = True
            continue
        result.append((key, existing))
    if not placed:
        result.append((name, value))
    return result
