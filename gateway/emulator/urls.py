"""Small URL helpers: validation of redirect targets and query editing that keeps the rest intact."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from gateway.emulator.errors import param_invalid, param_missing


def absolute_http_url(value: str | None, name: str) -> str:
    """The value if it is an absolute http(s) URL with a host; a Clerk 400 error otherwise."""
    if value is None or value == "":
        raise param_missing(name, 400)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as error:
        raise param_invalid(name, "not a URL") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise param_invalid(name, "must be an absolute http(s) URL")
    return value


def origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def with_query_param(url: str, name: str, value: str) -> str:
    """Append `name=value` to the query, leaving existing parameters (and the fragment) untouched."""
    parts = urlsplit(url)
    pair = f"{quote(name, safe='')}={quote(value, safe='')}"
    query = f"{parts.query}&{pair}" if parts.query else pair
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
