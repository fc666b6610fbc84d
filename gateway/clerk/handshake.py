"""The handshake: where the Frontend API lives for this request, and the URL we send browsers to.

PROTOCOL.md §1.1 (frontendApi), §4.1 (URL and parameter order).
"""

from __future__ import annotations

from gateway.clerk.options import CLERK_API_VERSION, ClerkOptions
from gateway.clerk.urls import edit_query, form_encode, hostname_of

HANDSHAKE_PATH = "v1/client/handshake"


def frontend_api(options: ClerkOptions, request_origin: str) -> str:
    """The Frontend API for this request: the proxy URL (resolved), `clerk.<domain>`, or the key's host."""
    if options.proxy_url:
        if options.proxy_url.startswith("/"):
            return request_origin + options.proxy_url
        return options.proxy_url
    return options.original_frontend_api


def frontend_api_base(options: ClerkOptions, request_origin: str) -> str:
    """The handshake URL's base, honouring the `frontend_api_url` override when no proxy is set."""
    api = frontend_api(options, request_origin)
    if not options.proxy_url and options.frontend_api_url:
        api = options.frontend_api_url
    base = api if api.startswith("http") else f"https://{api}"
    return base.rstrip("/") + "/"


def frontend_api_hostname(options: ClerkOptions, request_origin: str) -> str:
    api = frontend_api(options, request_origin)
    host = hostname_of(api if api.startswith("http") else f"https://{api}")
    return host or api


def handshake_url(
    *,
    options: ClerkOptions,
    clerk_url: str,
    request_origin: str,
    reason: str,
    suffixed_cookies: bool,
    session_token: str | None,
    dev_browser_token: str | None,
    organization_id: str | None,
) -> str:
    # `clerk_url` is normalised already: with no query there is nothing to remove or re-serialise.
    no_query = "?" not in clerk_url and "#" not in clerk_url
    redirect_url = clerk_url if no_query else edit_query(clerk_url, remove=("__clerk_db_jwt", "__dev_session"))
    params: list[tuple[str, str]] = [
        ("redirect_url", redirect_url),
        ("__clerk_api_version", CLERK_API_VERSION),
        ("suffixed_cookies", "true" if suffixed_cookies else "false"),
        ("__clerk_hs_reason", reason),
        ("format", "nonce"),
    ]
    if session_token:
        params.append(("__session", session_token))
    if not options.is_production and dev_browser_token:
        params.append(("__clerk_db_jwt", dev_browser_token))
    if organization_id is not None:
        params.append(("organization_id", organization_id))
    query = "&".join(f"{form_encode(k)}={form_encode(v)}" for k, v in params)
    return f"{frontend_api_base(options, request_origin)}{HANDSHAKE_PATH}?{query}"
