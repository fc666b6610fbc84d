"""The demo's two apps behind one gateway, over HTTP: the sample tool (the `clerk` preset) and the team
wiki on its own host name (the `remote-user` preset and a custom header), each with its own assertion."""

from __future__ import annotations

import asyncio
import base64
import html
import http.cookiejar
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote, urlsplit

import httpx
import pytest

from gateway.demo.command import Demo, DemoPlan
from tests.integration.conftest import RunningGateway
from tests.integration.test_gateway_flows import ALICE, BOB, sign_in
from tests.support.browser import NAVIGATION, Browser
from tests.support.upstream import unused_port


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoPlan]:
    plan = DemoPlan(unused_port(), unused_port(), unused_port(), unused_port(), unused_port(), 60,
                    "sk_test_demo_" + secrets.token_urlsafe(16), wiki_port=unused_port(),
                    webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    with Demo(plan) as running:
        running.start()
        yield running.plan


@pytest.fixture
async def browser(demo: DemoPlan) -> AsyncIterator[Browser]:
    no_cookies = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    gateway = f"http://127.0.0.1:{demo.gateway_port}"
    routes = {demo.wiki_origin.removeprefix("http://"): gateway, demo.primary_origin.removeprefix("http://"): gateway,
              demo.fapi_host: f"http://127.0.0.1:{demo.fapi_port}"}
    async with httpx.AsyncClient(timeout=20, cookies=no_cookies) as client:
        yield Browser(client, routes=routes)


def shown(page: str, element: str) -> str:
    """The text of the element with that id (one without child elements)."""
    found = re.search(rf"<([a-z0-9]+) id={element}[ >][^>]*?>?(.*?)</\1>", page, re.DOTALL)
    assert found, f"no #{element} on the page"
    return html.unescape(found.group(2))


def received(page: str) -> dict[str, str]:
    """The card of headers the app received (`#received`, a list of name and value)."""
    card = re.search(r"<dl id=received>(.*?)</dl>", page, re.DOTALL)
    assert card, "no #received on the page"
    rows = re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", card.group(1))
    return {name: html.unescape(value) for name, value in rows}


def wiki(demo: DemoPlan) -> RunningGateway:
    return RunningGateway(f"http://127.0.0.1:{demo.gateway_port}", demo.wiki_origin.removeprefix("http://"),
                          None)  # type: ignore[arg-type]


def tools(demo: DemoPlan) -> RunningGateway:
    return RunningGateway(f"http://127.0.0.1:{demo.gateway_port}", demo.primary_origin.removeprefix("http://"),
                          None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("who", "groups"), [
    (ALICE, "acme,org:admin,org:sys_memberships:manage,org:sys_memberships:read,org:invoices:read,org:invoices:write"),
    (BOB, "acme,org:member,org:sys_memberships:read,org:invoices:read"),
], ids=["alice", "bob"])  # fmt: skip
async def test_the_wiki_receives_the_remote_user_headers_and_no_clerk_ones(
    demo: DemoPlan, browser: Browser, who: tuple[str, str], groups: str
) -> None:
    page = await sign_in(browser, wiki(demo), who, path="/")
    assert page.status_code == 200, page.text
    name = {"alice@example.com": "Alice Admin", "bob@example.com": "Bob Member"}[who[0]]
    assert received(page.text) == {
        "remote-user": who[0], "remote-email": who[0], "remote-name": name, "remote-groups": groups,
        "x-wiki-author": f"{name} <{who[0]}>",
    }  # fmt: skip
    assert shown(page.text, "wiki-greeting") == f"Hello, {name}"
    assert shown(page.text, "assertion-verdict") == "verified"


async def test_each_app_gets_an_assertion_for_its_own_audience_signed_with_the_published_key(
    demo: DemoPlan, browser: Browser
) -> None:
    audiences = {}
    for gateway in (wiki(demo), tools(demo)):
        page = await sign_in(browser, gateway, ALICE, path="/")
        assert shown(page.text, "assertion-verdict") == "verified", gateway.host
        audiences[gateway.host.split(".")[0]] = json.loads(shown(page.text, "assertion"))["aud"]
    assert audiences == {"wiki": "wiki", "tools": "tools"}  # verified by each app against the gateway's JWKS


async def test_the_sample_tool_keeps_the_clerk_headers(demo: DemoPlan, browser: Browser) -> None:
    page = await sign_in(browser, tools(demo), ALICE, path="/")
    headers = received(page.text)
    assert headers["x-clerk-user-id"] == "user_alice" and headers["x-clerk-org-role"] == "org:admin"
    assert not any(name.startswith("remote-") for name in headers)


async def test_the_wiki_is_only_for_signed_in_people(demo: DemoPlan, browser: Browser) -> None:
    api = await browser.fetch("GET", f"{demo.wiki_origin}/wiki/home", follow=False)
    assert api.status_code == 401
    page = await browser.navigate(f"{demo.wiki_origin}/wiki/home")
    assert str(page.request.url).startswith(f"http://127.0.0.1:{demo.fapi_port}/sign-in")


async def test_signing_out_of_the_wiki_returns_to_the_wiki_and_asks_to_sign_in(
    demo: DemoPlan, browser: Browser
) -> None:
    await sign_in(browser, wiki(demo), ALICE, path="/wiki/home")
    out = await browser.request("POST", f"{demo.wiki_origin}/__gateway/sign-out", data={"redirect_url": "/"},
                                headers={**NAVIGATION, "origin": demo.wiki_origin})
    hosts = [urlsplit(str(hop.request.url)).netloc for hop in browser.history]
    assert out.status_code == 200 and "<form" in out.text, hosts
    assert str(out.request.url).startswith(f"http://127.0.0.1:{demo.fapi_port}/sign-in")
    assert f"redirect_url={quote(demo.wiki_origin, safe='')}" in str(out.request.url), out.request.url


async def test_a_session_revoked_at_clerk_is_refused_by_the_demo_at_once(demo: DemoPlan, browser: Browser) -> None:
    """The demo wires the emulator's webhooks to its gateways: no waiting for the token to expire."""
    await sign_in(browser, tools(demo), BOB, path="/")
    whoami = await browser.fetch("GET", f"{demo.primary_origin}/__gateway/whoami")
    session_id = whoami.json()["identity"]["session_id"]
    bapi = {"Authorization": f"Bearer {demo.secret_key}"}
    async with httpx.AsyncClient(base_url=demo.bapi_url, headers=bapi, timeout=10) as clerk:
        assert (await clerk.post(f"/v1/sessions/{session_id}/revoke")).status_code == 200
        for _ in range(200):  # the emulator delivers off the request path: wait for both gateways' 2xx
            deliveries = (await clerk.get("/v1/__emulator/state")).json()["webhooks"]["deliveries"]
            revoked = [item for item in deliveries
                       if item["type"] == "session.revoked" and item["event"]["data"]["id"] == session_id]
            if len(revoked) == 2 and all(item["status"] == "delivered" for item in revoked):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the revocation webhook did not reach both gateways: {deliveries}")
    api = await browser.fetch("GET", f"{demo.primary_origin}/api/me", follow=False)
    assert api.status_code == 401
    assert api.headers.get("x-clerk-auth-reason") == "session-revoked" or "session-revoked" in api.text
