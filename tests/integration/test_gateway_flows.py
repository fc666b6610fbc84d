"""The gateway end to end over loopback HTTP: emulator (Clerk) + gateway + echo app, a cookie-keeping client.

Each test is one flow of the edge issue: sign-in through the handshake, identity headers (and spoofs),
route policy answers, transparent refresh (single-flight, any method), sign-out, satellite sync,
forward-auth, whoami, the Frontend API proxy, WebSockets and upstream failures.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.browser import FETCH, NAVIGATION, Browser
from tests.support.upstream import EchoUpstream, unused_port

ALICE = ("alice@example.com", "alice-password")
BOB = ("bob@example.com", "bob-password")


def echoed(response: httpx.Response) -> dict[str, str]:
    """The request headers the app received (lower-case names; the echo app answers JSON)."""
    body = response.json()
    return {name.lower(): value for name, value in body["headers"]}


async def sign_in(
    browser: Browser, gateway: RunningGateway, who: tuple[str, str] = ALICE, path: str = "/dashboard"
) -> httpx.Response:
    """Visit a protected page, land on the hosted sign-in page, submit it, come back signed in."""
    browser.think()
    page = await browser.navigate(f"{gateway.origin}{path}")
    assert page.status_code == 200 and "<form" in page.text, [r.headers.get("location") for r in browser.history]
    action = html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }
    browser.think()
    landed = await browser.request(
        "POST", action, headers=NAVIGATION, data={**fields, "identifier": who[0], "password": who[1]}
    )
    browser.think()
    return landed


@pytest.fixture
async def dev_gateway(dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]) -> Any:
    settings = gateway_settings(
        dev_clerk,
        upstream.url,
        GATEWAY_ROUTES='[{"path": "/admin/*", "org_role": "org:admin"}]',
    )
    return await run_gateway(settings)


# ------------------------------------------------------------------------------------------ sign-in


async def test_first_visit_goes_through_the_handshake_then_to_sign_in_and_back_signed_in(
    dev_gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    landed = await sign_in(browser, dev_gateway, path="/dashboard?tab=1")
    assert landed.status_code == 200
    identity = echoed(landed)
    assert identity["x-clerk-auth-status"] == "signed-in"
    assert identity["x-clerk-user-id"] == "user_alice"
    assert identity["x-clerk-org-id"] == "org_acme" and identity["x-clerk-org-role"] == "org:admin"
    assert landed.json()["path"] == "/dashboard" and landed.json()["query"] == "tab=1"
    assert browser.cookie(dev_gateway.host, "__session")
    reasons = [r.headers.get("x-clerk-auth-reason") for r in browser.history if r.status_code == 307]
    assert "dev-browser-sync" in reasons


async def test_handshake_answers_are_exactly_clerks(
    dev_gateway: RunningGateway, dev_clerk: EmulatorServer, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    first = await browser.navigate(f"{dev_gateway.origin}/x?a=1", follow=False)
    assert first.status_code == 307
    assert first.headers["x-clerk-auth-status"] == "handshake"
    assert first.headers["x-clerk-auth-reason"] == "dev-browser-missing"
    assert first.headers["cache-control"] == "no-store"
    clerks, gateways = [], []
    for cookie in first.headers.get_list("set-cookie"):
        (gateways if cookie.startswith("__gateway_loop=") else clerks).append(cookie)
    assert clerks == ["__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"]
    assert len(gateways) == 1 and gateways[0].endswith("; Max-Age=10; Path=/; HttpOnly; SameSite=Lax")  # loops.py
    location = first.headers["location"]
    assert location.startswith(f"{dev_clerk.fapi_url}/v1/client/handshake?redirect_url=http%3A%2F%2Fapp.test%3A8000")
    assert parse_qs(urlsplit(location).query)["__clerk_hs_reason"] == ["dev-browser-missing"]


async def test_identity_headers_sent_by_the_client_never_reach_the_app(
    dev_gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    await sign_in(browser, dev_gateway, BOB)
    spoofs = {
        "X-Clerk-User-Id": "user_alice",
        "x_clerk_org_role": "org:admin",
        "X-Clerk-Auth-Status": "signed-in",
        "X-Gateway-Identity-Assertion": "forged",
    }
    response = await browser.fetch("GET", f"{dev_gateway.origin}/api/me", headers=spoofs)
    identity = echoed(response)
    assert identity["x-clerk-user-id"] == "user_bob"
    assert identity["x-clerk-org-role"] == "org:member"
    assert "x_clerk_org_role" not in identity and "x-gateway-identity-assertion" not in identity
    public = await browser.fetch("GET", f"{dev_gateway.origin}/public/logo.png", headers=spoofs)
    assert "x-clerk-user-id" not in echoed(public) or echoed(public)["x-clerk-user-id"] == "user_bob"


# ------------------------------------------------------------------------------------------ policy


async def test_signed_out_answers_by_kind_of_request(
    dev_gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    await browser.navigate(f"{dev_gateway.origin}/public/x")  # gets a dev browser through the handshake
    api = await browser.fetch("GET", f"{dev_gateway.origin}/api/items")
    assert api.status_code == 401
    assert api.json()["error"] == "unauthenticated" and api.json()["reason"] == "session-token-and-uat-missing"
    assert api.headers["x-clerk-auth-status"] == "signed-out"
    page = await browser.navigate(f"{dev_gateway.origin}/reports?q=1", follow=False)
    assert page.status_code == 307
    target = urlsplit(page.headers["location"])
    assert parse_qs(target.query)["redirect_url"] == ["http://app.test:8000/reports?q=1"]
    assert "__clerk_db_jwt" in parse_qs(target.query)
    public = await browser.fetch("GET", f"{dev_gateway.origin}/public/logo.png")
    assert public.status_code == 200 and echoed(public)["x-clerk-auth-status"] == "signed-out"


async def test_admin_route_is_forbidden_to_a_member_and_open_to_an_admin(
    dev_gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    member = new_browser(dev_gateway)
    await sign_in(member, dev_gateway, BOB)
    assert (await member.navigate(f"{dev_gateway.origin}/admin/users")).status_code == 403
    admin = new_browser(dev_gateway)
    await sign_in(admin, dev_gateway, ALICE)
    assert (await admin.navigate(f"{dev_gateway.origin}/admin/users")).status_code == 200


# ------------------------------------------------------------------------------------------ refresh


async def test_expired_token_is_refreshed_transparently_for_fetch_calls_of_any_method(
    dev_gateway: RunningGateway, dev_clerk: EmulatorServer, clock: FakeClock, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    await sign_in(browser, dev_gateway)
    old_token = browser.cookie(dev_gateway.host, "__session")
    clock.advance(120)
    for method in ("GET", "POST", "DELETE"):
        response = await browser.fetch(method, f"{dev_gateway.origin}/api/save", content=b"{}")
        assert response.status_code == 200, response.text
        assert echoed(response)["x-clerk-user-id"] == "user_alice"
        clock.advance(120)
    assert browser.cookie(dev_gateway.host, "__session") != old_token
    assert dev_clerk.state.refresh_calls == 3


async def test_concurrent_requests_with_the_same_expired_token_cause_one_refresh(
    dev_gateway: RunningGateway,
    dev_clerk: EmulatorServer,
    clock: FakeClock,
    new_browser: Callable[..., Browser],
    http_client: httpx.AsyncClient,
) -> None:
    browser = new_browser(dev_gateway)
    await sign_in(browser, dev_gateway)
    clock.advance(120)
    cookie = browser.cookie_header("app.test")
    before = dev_clerk.state.refresh_calls

    async def call() -> httpx.Response:
        return await http_client.get(
            f"{dev_gateway.url}/api/items", headers={"host": dev_gateway.host, "cookie": cookie, **FETCH}
        )

    responses = await asyncio.gather(*(call() for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert {echoed(r)["x-clerk-user-id"] for r in responses} == {"user_alice"}
    assert dev_clerk.state.refresh_calls - before == 1


async def test_revoked_session_cannot_be_refreshed_and_is_signed_out(
    dev_gateway: RunningGateway, dev_clerk: EmulatorServer, clock: FakeClock, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    signed_in = await sign_in(browser, dev_gateway)
    session_id = echoed(signed_in)["x-clerk-session-id"]
    dev_clerk.state.end_session(dev_clerk.state.session(session_id), "revoked")
    clock.advance(120)
    response = await browser.fetch("GET", f"{dev_gateway.origin}/api/items")
    assert response.status_code == 401
    assert response.json()["reason"] == "session-token-expired-refresh-session_revoked"


# ------------------------------------------------------------------------------------------ sign-out


async def test_sign_out_revokes_clears_cookies_and_the_next_visit_asks_to_sign_in(
    dev_gateway: RunningGateway, dev_clerk: EmulatorServer, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    signed_in = await sign_in(browser, dev_gateway)
    session_id = echoed(signed_in)["x-clerk-session-id"]
    cross_site = await browser.request(
        "POST", f"{dev_gateway.origin}/__gateway/sign-out", headers={"origin": "https://evil.example"}, follow=False
    )
    assert cross_site.status_code == 403
    out = await browser.request(
        "POST",
        f"{dev_gateway.origin}/__gateway/sign-out",
        headers={"origin": dev_gateway.origin},
        data={"redirect_url": "https://evil.example/"},
        follow=False,
    )
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert browser.cookie(dev_gateway.host, "__session") is None
    assert dev_clerk.state.session(session_id).status == "revoked"
    again = await browser.navigate(f"{dev_gateway.origin}/dashboard")
    assert again.status_code == 200 and "<form" in again.text  # the hosted sign-in page


# ------------------------------------------------------------------------------------------ satellite


async def test_dev_satellite_syncs_through_the_primary_gateway(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser],
) -> None:
    primary = await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_ALLOWED_REDIRECT_ORIGINS="http://sat.test:9000"),
        "app.test:8000",
    )
    satellite = await run_gateway(
        gateway_settings(
            dev_clerk,
            upstream.url,
            CLERK_IS_SATELLITE="true",
            CLERK_DOMAIN="sat.test",
            CLERK_SIGN_IN_URL="http://app.test:8000/sign-in",
            GATEWAY_PUBLIC_ORIGIN="http://sat.test:9000",
        ),
        "sat.test:9000",
    )
    browser = new_browser(primary, satellite)
    await sign_in(browser, primary)
    first = await browser.navigate(f"{satellite.origin}/home?__clerk_synced=false", follow=False)
    assert first.status_code == 307 and first.headers["x-clerk-auth-reason"] == "satellite-needs-syncing"
    assert first.headers["location"].startswith("http://app.test:8000/sign-in?__clerk_redirect_url=")
    landed = await browser.navigate(f"{satellite.origin}/home?__clerk_synced=false")
    assert landed.status_code == 200, landed.text[:300]
    assert echoed(landed)["x-clerk-user-id"] == "user_alice"
    reasons = [r.headers.get("x-clerk-auth-reason") for r in browser.history if r.status_code == 307]
    assert reasons[:3] == ["satellite-needs-syncing", "primary-responds-to-syncing", "dev-browser-sync"]


async def test_a_signed_out_visitor_of_a_localhost_port_satellite_signs_in_and_comes_back_synced(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser],
) -> None:
    primary = await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_ALLOWED_REDIRECT_ORIGINS="http://localhost:9001"),
        "app.test:8000",
    )
    satellite = await run_gateway(
        gateway_settings(
            dev_clerk,
            upstream.url,
            CLERK_IS_SATELLITE="true",
            CLERK_DOMAIN="localhost:9001",  # as Clerk's local-development docs write it
            CLERK_SIGN_IN_URL="http://app.test:8000/sign-in",
            GATEWAY_PUBLIC_ORIGIN="http://localhost:9001",
        ),
        "localhost:9001",
    )
    browser = new_browser(primary, satellite)
    signed_out = await browser.navigate(f"{satellite.origin}/home?tab=2", follow=False)
    assert signed_out.status_code == 307
    target = urlsplit(signed_out.headers["location"])
    assert (target.scheme, target.netloc, target.path) == ("http", "app.test:8000", "/sign-in")
    back = parse_qs(target.query)["redirect_url"]
    assert back == ["http://localhost:9001/home?tab=2&__clerk_synced=false"]  # the satellite's return marker
    await sign_in(browser, primary)  # on the primary, as its sign-in page would
    landed = await browser.navigate(back[0])  # the primary's sign-in page sends a signed-in visitor back
    assert landed.status_code == 200, [r.headers.get("location") for r in browser.history]
    assert echoed(landed)["x-clerk-user-id"] == "user_alice"
    reasons = [r.headers.get("x-clerk-auth-reason") for r in browser.history if r.status_code == 307]
    assert reasons[:3] == ["satellite-needs-syncing", "primary-responds-to-syncing", "dev-browser-sync"]
    again = await browser.navigate(f"{satellite.origin}/home")
    assert again.status_code == 200 and echoed(again)["x-clerk-user-id"] == "user_alice"


# ------------------------------------------------------------------------------------------ endpoints


async def test_whoami_reports_the_identity_or_the_reason(
    dev_gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    anonymous = await browser.fetch("GET", f"{dev_gateway.origin}/__gateway/whoami")
    assert anonymous.status_code == 401
    await sign_in(browser, dev_gateway)
    me = await browser.fetch("GET", f"{dev_gateway.origin}/__gateway/whoami")
    assert me.status_code == 200 and me.json()["identity"]["user_id"] == "user_alice"


@pytest.mark.parametrize("style", ["traefik", "nginx"])
async def test_forward_auth_answers_as_reverse_proxies_expect(
    style: str, dev_gateway: RunningGateway, new_browser: Callable[..., Browser], http_client: httpx.AsyncClient
) -> None:
    browser = new_browser(dev_gateway)
    await sign_in(browser, dev_gateway)
    original = (
        {"x-forwarded-proto": "http", "x-forwarded-host": "app.test:8000", "x-forwarded-uri": "/reports"}
        if style == "traefik"
        else {"x-original-url": "http://app.test:8000/reports"}
    )

    async def ask(cookie: str) -> httpx.Response:
        return await http_client.get(
            f"{dev_gateway.url}/__gateway/auth", headers={**original, **NAVIGATION, "cookie": cookie}
        )

    allowed = await ask(browser.cookie_header("app.test"))
    assert allowed.status_code == 200
    assert allowed.headers["x-clerk-user-id"] == "user_alice"
    refused = await ask("")
    assert refused.status_code == (307 if style == "traefik" else 401)
    assert "location" in refused.headers


async def test_health_and_readiness(dev_gateway: RunningGateway, http_client: httpx.AsyncClient) -> None:
    assert (await http_client.get(f"{dev_gateway.url}/__gateway/healthz")).json() == {"status": "ok"}
    ready = await http_client.get(f"{dev_gateway.url}/__gateway/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"settings": "ok", "keys": "ok", "upstream": "ok"}


async def test_frontend_api_is_proxied_under_the_apps_own_domain(
    dev_gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    response = await browser.fetch("GET", f"{dev_gateway.origin}/__clerk/v1/environment")
    assert response.status_code == 200
    assert "auth_config" in response.json()
    assert "http://app.test:8000/__clerk" in response.text  # FAPI saw Clerk-Proxy-Url and answers with it


# ------------------------------------------------------------------------------------------ websockets


async def test_websocket_is_authenticated_at_the_upgrade(
    dev_gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(dev_gateway)
    ws_url = f"ws://{dev_gateway.host}/_/ws"
    real = urlsplit(dev_gateway.url)
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(ws_url, host=real.hostname, port=real.port):
            pass
    await sign_in(browser, dev_gateway)
    headers = {"cookie": browser.cookie_header("app.test")}
    async with websockets.connect(ws_url, host=real.hostname, port=real.port, additional_headers=headers) as connection:
        await connection.send("hello")
        assert await connection.recv() == "hello"


# ------------------------------------------------------------------------------------------ failures


async def test_unreachable_app_is_a_clean_502(
    dev_clerk: EmulatorServer, run_gateway: Callable[..., Any], new_browser: Callable[..., Browser]
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, f"http://127.0.0.1:{unused_port()}"))
    browser = new_browser(gateway)
    await browser.navigate(f"{gateway.origin}/public/x")
    response = await browser.fetch("GET", f"{gateway.origin}/public/x")
    assert response.status_code == 502
    assert "Traceback" not in response.text and response.json()["error"] == "bad_gateway"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"x-long": "a" * 20_000}, 431), ({}, 414)],
)
async def test_oversized_requests_get_precise_4xx(
    dev_gateway: RunningGateway, http_client: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    path = "/x?" + "q" * 9000 if status == 414 else "/x"
    response = await http_client.get(f"{dev_gateway.url}{path}", headers={"host": dev_gateway.host, **headers})
    assert response.status_code == status
