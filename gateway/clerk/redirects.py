"""Where signed-out visitors are sent, and which redirect targets we are willing to follow.

`sign_in_url` mirrors Clerk's `redirectToSignIn`: the configured sign-in URL (or the instance's
Account Portal) with `redirect_url` back to the page (marked for a satellite's sync), plus the
dev-browser token when a development instance sends the browser to another host.
`redirect_location` keeps every redirect we build from client input on our own origins (no open
redirect) and is the only way to turn such input into a `Location`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from gateway.clerk.options import ClerkOptions
from gateway.clerk.urls import InvalidUrl, edit_query, normalize_url, parse_web_url, web_origin


def account_portal_sign_in_url(options: ClerkOptions) -> str:
    """Clerk's hosted sign-in page: `buildAccountsBaseUrl` on the publishable key's Frontend API host
    (the primary's, also for a satellite) + `/sign-in`."""
    host = options.publishable_key.frontend_api.replace("clerk.accountsstage.", "accountsstage.", 1)
    host = _CLERK_PREFIX.sub("accounts.", host, count=1)
    return f"https://{host}/sign-in"


_CLERK_PREFIX = re.compile(r"clerk\.accounts\.|clerk\.")


def sign_in_url(
    options: ClerkOptions, clerk_url: str, request_origin: str, dev_browser: str | None, *, pending: bool = False
) -> str:
    """Clerk's `createRedirect(...).redirectToSignIn` with the request's URL to come back to.

    A satellite sent to another host marks that URL `__clerk_synced=false`, so coming back it syncs
    with the primary (row D3/D4) and the round trip ends signed in; a pending session goes to the
    sign-in page's `/tasks`. Cross-origin is Clerk's `hostname:port` comparison."""
    target = options.sign_in_url or account_portal_sign_in_url(options)
    if target.startswith("/"):
        target = request_origin + target
    if pending:
        target = _with_path_suffix(target, "/tasks")
    cross_origin = _host_and_port(target) != _host_and_port(clerk_url)
    back = edit_query(clerk_url, edit=(("__clerk_synced", "false"),)) if cross_origin and options.is_satellite else (
        clerk_url
    )
    url = edit_query(target, edit=(("redirect_url", back),))
    # A development browser's token goes along to another origin's sign-in page (the Account Portal),
    # except from a satellite to its primary: they share it through the sync (rows D4, D5), and the
    # parameter would make the primary run a dev-browser handshake of its own on the way to sign-in.
    if not options.is_production and not options.is_satellite and dev_browser and cross_origin:
        url = edit_query(url, edit=(("__clerk_db_jwt", dev_browser),))
    return url


def _host_and_port(url: str) -> str:
    """`${url.hostname}:${url.port}` (the port empty when it is the scheme's default)."""
    parts = urlsplit(normalize_url(url))
    return f"{parts.hostname}:{parts.port or ''}"


def _with_path_suffix(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + suffix, parts.query, parts.fragment))


def redirect_location(
    target: str, request_origin: str, allowed_origins: Iterable[str], *, relative: bool = True
) -> str | None:
    """The `Location` to send for a client-chosen `target`, or None when it leaves our origins.

    The one gate for redirects built from client input. `target` is read as a browser reads it
    (`parse_web_url`: WHATWG parsing against `request_origin`, so `/\tevil`, `/\\evil`, `https:evil`
    and `//evil` are seen for what they are) BEFORE the origin is compared, and what comes back is
    the serialised parsed URL: always absolute, so a browser cannot read it differently. Never send
    `target` itself. `relative=False` wants an absolute URL, as `new URL(target)` does (row D5).
    """
    try:
        location = parse_web_url(target, request_origin if relative else None)
    except InvalidUrl:
        return None
    origin = web_origin(location)
    if origin == _origin(request_origin) or origin in _origins(tuple(allowed_origins)):
        return location
    return None


def is_allowed_redirect(target: str, request_origin: str, allowed_origins: Iterable[str]) -> bool:
    """Whether `redirect_location` would follow `target`; send its result, not `target`."""
    return redirect_location(target, request_origin, allowed_origins) is not None


def is_allowed_source(source: str, request_origin: str, allowed_origins: Iterable[str]) -> bool:
    """An `Origin` or `Referer` naming this or an allowed origin (`null` and relative text never do)."""
    return redirect_location(source, request_origin, allowed_origins, relative=False) is not None


@lru_cache(maxsize=64)
def _origin(origin: str) -> str | None:
    try:
        return web_origin(parse_web_url(origin))
    except InvalidUrl:
        return None


@lru_cache(maxsize=64)
def _origins(origins: tuple[str, ...]) -> frozenset[str]:
    return frozenset(filter(None, map(_origin, origins)))
