"""What every forward-auth recipe must do, run against a real proxy (`front`) with `gateway serve` behind it.

The Caddy and Traefik recipe tests call these with their own proxy; the rules are the same for each.
"""

from __future__ import annotations

import time

import httpx

from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.integration.test_gateway_flows import sign_in
from tests.support.browser import Browser
from tests.support.forward_auth import (
    APP_HOST,
    EVERY_IDENTITY_HEADER,
    FORGED_IDENTITY,
    STATUS,
    Front,
    echoed_headers,
    identity_values,
)
from tests.support.upstream import EchoUpstream

CARRIERS = EVERY_IDENTITY_HEADER - set(STATUS)
"""Every header that carries who the user is: a visitor's request carries none with a value."""


def new_browser(client: httpx.AsyncClient, front: Front) -> Browser:
    return Browser(client, routes={front.host: front.url}, clock=time.time)


def signed_out_status(identity: dict[str, list[str]]) -> bool:
    """X-Clerk-Auth-Status, when the app gets one, says signed-out (in every value it was sent)."""
    values = [part.strip() for value in identity.get("x-clerk-auth-status", []) for part in value.split(",")]
    return all(value == "signed-out" for value in values)


async def signed_in_user_gets_the_page_with_their_identity(
    client: httpx.AsyncClient, front: Front, clerk: EmulatorServer, upstream: EchoUpstream
) -> None:
    browser = new_browser(client, front)
    landed = await sign_in(browser, RunningGateway(front.url, front.host, gateway_settings(clerk, upstream.url)),
                           path="/reports")
    assert landed.status_code == 200, (landed.status_code, landed.text[:300])
    identity = identity_values(landed)
    assert identity["x-clerk-user-id"] == ["user_alice"]
    assert identity["x-clerk-auth-status"] == ["signed-in"]
    assert identity["x-clerk-org-role"] == ["org:admin"]
    assert identity["x-clerk-session-id"][0].startswith("sess_")
    assert identity["remote-user"] == identity["x-auth-request-email"] == ["alice@example.com"]
    assert identity["x-webauth-name"] == ["Alice Admin"] and identity["x-auth-request-preferred-username"] == ["alice"]
    assert identity["remote-groups"][0].startswith("acme,org:admin,")
    api = await browser.fetch("GET", f"{front.origin}/api/items")
    assert api.status_code == 200 and identity_values(api)["x-clerk-user-id"] == ["user_alice"]
    forged = await browser.fetch("GET", f"{front.origin}/api/items", headers=FORGED_IDENTITY)
    assert forged.status_code == 200
    identity = identity_values(forged)
    assert identity["x-clerk-user-id"] == ["user_alice"]
    assert "forged" not in forged.text, forged.text


async def signed_out_visitor_is_sent_to_sign_in_and_api_gets_401(client: httpx.AsyncClient, front: Front) -> None:
    browser = new_browser(client, front)
    first = await browser.navigate(f"{front.origin}/reports", follow=False)
    assert first.status_code in (302, 303, 307), (first.status_code, first.text[:300])
    assert "application/json" not in first.headers.get("content-type", "") or "headers" not in first.text
    page = await browser.navigate(f"{front.origin}/reports")
    assert page.status_code == 200 and "<form" in page.text, [r.headers.get("location") for r in browser.history]
    assert not page.url.host.startswith(APP_HOST)
    api = await browser.fetch("GET", f"{front.origin}/api/items")
    assert api.status_code == 401, (api.status_code, api.text[:300])
    assert '"headers"' not in api.text


async def signed_out_visitor_to_a_public_path_carries_no_identity(client: httpx.AsyncClient, front: Front) -> None:
    browser = new_browser(client, front)
    for send in (browser.navigate, lambda url, **kw: browser.fetch("GET", url, **kw)):
        page = await send(f"{front.origin}/public/pricing")
        assert page.status_code == 200, (page.status_code, page.text[:300])
        identity = identity_values(page)
        assert "x-clerk-user-id" not in identity, identity
        assert all(value == "" for name in CARRIERS for value in identity.get(name, [])), identity
        assert all("{" not in value for values in identity.values() for value in values), identity
        assert signed_out_status(identity), identity


async def client_sent_identity_never_reaches_the_app(client: httpx.AsyncClient, front: Front) -> None:
    browser = new_browser(client, front)
    for path in ("/public/pricing", "/public/api-like"):
        page = await browser.navigate(f"{front.origin}{path}", headers=FORGED_IDENTITY)
        assert page.status_code == 200, (page.status_code, page.text[:300])
        identity = identity_values(page)
        assert "x-clerk-user-id" not in identity, identity
        assert not any(value for name in CARRIERS for value in identity.get(name, [])), identity
        assert signed_out_status(identity), identity
        assert "forged" not in page.text
    refused = await browser.fetch("GET", f"{front.origin}/api/items", headers=FORGED_IDENTITY)
    assert refused.status_code == 401 and "user_forged" not in refused.text


FORGED_UNDERSCORE_IDENTITY = {name.replace("-", "_"): value for name, value in FORGED_IDENTITY.items()}
"""The same forgery spelled with `_`: servers that map headers to CGI-style variables (`HTTP_REMOTE_USER`,
Rack, PHP, some WSGI servers) read `Remote_User` as `Remote-User`."""


async def client_sent_underscore_identity_never_reaches_the_app(client: httpx.AsyncClient, front: Front) -> None:
    browser = new_browser(client, front)
    for send in (browser.navigate, lambda url, **kw: browser.fetch("GET", url, **kw)):
        page = await send(f"{front.origin}/public/pricing", headers=FORGED_UNDERSCORE_IDENTITY)
        assert page.status_code == 200, (page.status_code, page.text[:300])
        smuggled = [
            (name, value) for name, value in echoed_headers(page)
            if "_" in name and name.replace("_", "-") in EVERY_IDENTITY_HEADER
        ]  # fmt: skip
        assert smuggled == [], smuggled
        assert "forged" not in page.text


ORIGINAL_REQUEST_SPOOFS = {
    "x-original-url-path": {"X-Original-URL": "/public/x"},
    "x-original-url-absolute": {"X-Original-URL": f"http://{APP_HOST}/public/x", "X-Original-Method": "GET"},
    "x-forwarded-uri": {"X-Forwarded-Uri": "/public/x"},
    "x-forwarded-uri-and-host": {"X-Forwarded-Uri": "/public/x", "X-Forwarded-Host": APP_HOST,
                                 "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http"},
}


async def client_cannot_choose_the_request_that_is_judged(
    client: httpx.AsyncClient, front: Front, spoof: dict[str, str]
) -> None:
    """A signed-out request for a protected page that names a public one in its own headers."""
    browser = new_browser(client, front)
    page = await browser.navigate(f"{front.origin}/reports", headers=spoof, follow=False)
    assert page.status_code in (302, 303, 307, 401), (page.status_code, page.text[:300])
    assert '"headers"' not in page.text, "the protected page reached the app"
    api = await browser.fetch("GET", f"{front.origin}/api/items", headers=spoof)
    assert api.status_code == 401, (api.status_code, api.text[:300])
    assert '"headers"' not in api.text, "the protected API reached the app"
