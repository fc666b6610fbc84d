"""Clerk's authorization checks at the edge, through a running gateway over loopback HTTP with the
emulator: reverification (Clerk's 403 JSON for API calls, a page for navigations), a deny rule, a
method rule and CORS preflights; and the session memo never answers one method for another."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.integration.test_gateway_flows import ALICE, BOB, echoed, sign_in
from tests.support.browser import FETCH, Browser
from tests.support.upstream import EchoUpstream

ROUTES = [
    {"path": "/money/*", "reverification": "strict"},
    {"path": "/reports/*", "methods": ["DELETE"], "access": "deny"},
    {"path": "/reports/*", "methods": ["POST", "PUT", "PATCH"], "org_role": "org:admin"},
    {"path": "/api/*", "cors_preflight": True},
]
PREFLIGHT = {"origin": "https://web.example", "access-control-request-method": "POST", "accept": "*/*"}


@pytest.fixture
async def gateway(dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]) -> Any:
    return await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_ROUTES=json.dumps(ROUTES)))


async def test_an_old_verification_gets_clerks_reverification_error_or_a_page_that_says_what_to_do(
    gateway: RunningGateway, clock: FakeClock, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(gateway)
    await sign_in(browser, gateway, ALICE)
    fresh = await browser.fetch("POST", f"{gateway.origin}/money/transfer", content=b"{}")
    assert fresh.status_code == 200 and echoed(fresh)["x-clerk-user-id"] == "user_alice"
    clock.advance(11 * 60)  # the token is refreshed on the way; its fva now says 11 minutes
    api = await browser.fetch("POST", f"{gateway.origin}/money/transfer", content=b"{}")
    assert api.status_code == 403
    assert api.headers["content-type"] == "application/json"
    assert api.content == (
        b'{"clerk_error":{"type":"forbidden","reason":"reverification-error","metadata":{"reverification":"strict"}}}'
    )
    page = await browser.navigate(f"{gateway.origin}/money/overview")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "Confirm it&#x27;s you" in page.text and "second factor verified in the last 10 minutes" in page.text
    assert "Sign out and sign in again" in page.text
    elsewhere = await browser.navigate(f"{gateway.origin}/dashboard")
    assert elsewhere.status_code == 200  # only the rule's paths ask for a recent verification


async def test_a_deny_rule_refuses_its_method_whoever_asks(
    gateway: RunningGateway, new_browser: Callable[..., Browser], http_client: httpx.AsyncClient
) -> None:
    admin = new_browser(gateway)
    await sign_in(admin, gateway, ALICE)
    denied = await admin.fetch("DELETE", f"{gateway.origin}/reports/q3")
    assert denied.status_code == 403 and denied.json()["error"] == "denied"
    anonymous = await http_client.request(
        "DELETE", f"{gateway.url}/reports/q3", headers={"host": gateway.host, **FETCH}
    )
    assert anonymous.status_code == 403 and anonymous.json()["error"] == "denied"
    spelled = await admin.fetch("DELETE", f"{gateway.origin}/public/..%2Freports/q3")
    assert spelled.status_code == 400  # an escaped slash is refused before any rule
    dotted = await admin.fetch("DELETE", f"{gateway.origin}/REPORTS/./q3")
    assert dotted.status_code == 403  # the other letter case is judged too
    assert (await admin.fetch("GET", f"{gateway.origin}/reports/q3")).status_code == 200


async def test_a_method_rule_asks_more_of_writes_than_of_reads(
    gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    member = new_browser(gateway)
    await sign_in(member, gateway, BOB)
    assert (await member.fetch("GET", f"{gateway.origin}/reports/q3")).status_code == 200
    write = await member.fetch("POST", f"{gateway.origin}/reports/q3", content=b"{}")
    assert write.status_code == 403 and write.json()["error"] == "forbidden"
    admin = new_browser(gateway)
    await sign_in(admin, gateway, ALICE)
    assert (await admin.fetch("POST", f"{gateway.origin}/reports/q3", content=b"{}")).status_code == 200


async def test_a_cors_preflight_reaches_the_app_unauthenticated_where_a_route_says_so(
    gateway: RunningGateway, http_client: httpx.AsyncClient, upstream: EchoUpstream
) -> None:
    headers = {"host": gateway.host, **PREFLIGHT}
    preflight = await http_client.options(f"{gateway.url}/api/items", headers=headers)
    assert preflight.status_code == 200, preflight.text
    assert echoed(preflight)["x-clerk-auth-status"] == "signed-out"
    assert echoed(preflight)["access-control-request-method"] == "POST"
    elsewhere = await http_client.options(f"{gateway.url}/reports/q3", headers=headers)
    assert elsewhere.status_code == 401  # no route says so there
    not_a_preflight = await http_client.options(f"{gateway.url}/api/items", headers={"host": gateway.host, **FETCH})
    assert not_a_preflight.status_code == 401
    call = await http_client.post(f"{gateway.url}/api/items", headers={"host": gateway.host, **FETCH}, content=b"{}")
    assert call.status_code == 401  # the request itself still needs a session


async def test_a_remembered_session_is_judged_afresh_for_each_method(
    gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    admin = new_browser(gateway)
    await sign_in(admin, gateway, ALICE)
    for _ in range(3):  # the session memo now holds GET /reports/q3
        assert (await admin.fetch("GET", f"{gateway.origin}/reports/q3")).status_code == 200
    assert (await admin.fetch("DELETE", f"{gateway.origin}/reports/q3")).status_code == 403
    preflight = await admin.request("OPTIONS", f"{gateway.origin}/reports/q3", headers=PREFLIGHT)
    assert preflight.status_code == 200  # signed in (cookies sent): the route lets her in anyway
    assert (await admin.fetch("GET", f"{gateway.origin}/reports/q3")).status_code == 200
