"""Where signed-out visitors are sent, and which redirect targets we are willing to follow.

`sign_in_url` mirrors Clerk's `redirectToSignIn`: the configured sign-in URL (or the instance's
Account Portal) with `redirect_url` back to the page, plus the dev-browser token when a development
instance sends the browser to another origin. `is_allowed_redirect` keeps every redirect we build
from user input on our own origins (no open redirect).
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.clerk.options import ClerkOptions
from gateway.clerk.urls import InvalidUrl, append_param, origin_of


def account_portal_sign_in_url(options: ClerkOptions) -> str:
    """Clerk's hosted sign-in page for the instance: `clerk.` → `accounts.` on the Frontend API host."""
    host = options.original_frontend_api
    if ".clerk.accounts" in host:
        host = host.replace(".clerk.accounts", ".accounts", 1)
    elif host.startswith("clerk."):
        host = "accounts." + host[len("clerk.") :]
    return f"https://{host}/sign-in"


def sign_in_url(options: ClerkOptions, clerk_url: str, request_origin: str, dev_browser: str | None) -> str:
    target = options.sign_in_url or account_portal_sign_in_url(options)
    if target.startswith("/"):
        target = request_origin + target
    url = append_param(target, "redirect_url", clerk_url)
    if not options.is_production and dev_browser and origin_of(target) != request_origin:
        url = append_param(url, "__clerk_db_jwt", dev_browser)
    return url


def is_allowed_redirect(target: str, request_origin: str, allowed_origins: Iterable[str]) -> bool:
    """A relative path on this origin, or an absolute URL on this or an allowed origin."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return True
    try:
        origin = origin_of(target)
    except InvalidUrl:
        return False
    return origin is not None and (origin == request_origin or origin in set(allowed_origins))
