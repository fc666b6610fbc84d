"""`/__gateway/sign-out` over loopback HTTP: the confirmation page, its CSRF token, hostile redirects.

A POST signs out when its `Origin`/`Referer` is this app, or when it carries a token from our own
confirmation page for this session (or, signed out, for this browser's own random value).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from gateway.edge.sign_out import BROWSER_COOKIE, CSRF_MAX_AGE, csrf_serializer
from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.integration.test_gateway_flows import echoed, sign_in
from tests.support.browser import Browser

HOST = "app.test:8000"


@pytest.fixture
async def gateway(dev_clerk: EmulatorServer, upstream: Any, run_gateway: Callable[..., Any]) -> Any:
    return await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_ALLOWED_REDIRECT_ORIGINS="https://partner.example")
    )


def hidden_fields(page: httpx.Response) -> dict[str, str]:
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }


def tampered(token: str) -> str:
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")


def _mint(gateway: RunningGateway, clock: FakeClock, binding: str, salt: str | None = None) -> str:
    serializer = csrf_serializer(gateway.settings.clerk.secret_key, clock)
    if salt is not None:
        serializer = URLSafeTimedSerializer(serializer.secret_key, salt=salt)
    token: str = serializer.dumps(binding)
    return token


# How the POST's token is produced from the token on the page, and which Origin it sends.
CSRF_CASES = [
    ("valid_token_no_origin", lambda page, ctx: page, None, 303),
    ("valid_token_foreign_origin", lambda page, ctx: page, "https://evil.example", 303),
    ("expired_token", "expire", None, 403),
    ("token_of_another_session", lambda page, ctx: _mint(ctx[0], ctx[1], "session:sess_someone_else"), None, 403),
    ("token_of_a_browser_value", lambda page, ctx: _mint(ctx[0], ctx[1], "browser:" + "x" * 32), None, 403),
    ("tampered_token", lambda page, ctx: tampered(page), None, 403),
    ("token_with_another_purpose", lambda page, ctx: _mint(ctx[0], ctx[1], ctx[2], salt="other purpose"), None, 403),
    ("token_signed_with_another_key", "other_key", None, 403),
    ("no_token_good_origin", lambda page, ctx: "", "http://app.test:8000", 303),
    ("no_token_good_referer", lambda page, ctx: "", "referer:http://app.test:8000/page", 303),
    ("no_token_foreign_origin", lambda page, ctx: "", "https://evil.example", 403),
    ("no_token_null_origin", lambda page, ctx: "", "null", 403),
    ("no_token_no_origin", lambda page, ctx: "", None, 403),
]


@pytest.mark.parametrize(("make_token", "origin", "status"), [pytest.param(*c[1:], id=c[0]) for c in CSRF_CASES])
async def test_signed_in_sign_out_needs_our_origin_or_a_token_for_this_session(
    make_token: Any,
    origin: str | None,
    status: int,
    gateway: RunningGateway,
    dev_clerk: EmulatorServer,
    clock: FakeClock,
    new_browser: Callable[..., Browser],
) -> None:
    browser = new_browser(gateway)
    session_id = echoed(await sign_in(browser, gateway))["x-clerk-session-id"]
    page = await browser.navigate(f"{gateway.origin}/__gateway/sign-out")
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    token = hidden_fields(page)["csrf"]
    if make_token == "expire":
        serializer = csrf_serializer(gateway.settings.clerk.secret_key, clock)
        assert serializer.loads(token, max_age=CSRF_MAX_AGE) == f"session:{session_id}"  # good until now
        clock.advance(CSRF_MAX_AGE + 1)
    elif make_token == "other_key":
        token = URLSafeTimedSerializer(b"k" * 32, salt="session-gateway sign-out csrf").dumps(f"session:{session_id}")
    else:
        token = make_token(token, (gateway, clock, f"session:{session_id}"))
    headers: dict[str, str] = {}
    if origin and origin.startswith("referer:"):
        headers["referer"] = origin.removeprefix("referer:")
    elif origin:
        headers["origin"] = origin
    data = {"csrf": token} if token else {}
    out = await browser.request(
        "POST", f"{gateway.origin}/__gateway/sign-out", headers=headers, data=data, follow=False
    )
    assert out.status_code == status, out.text
    session = dev_clerk.state.session(session_id)
    if status == 303:
        assert out.headers["location"] == "/"
        assert browser.cookie(gateway.host, "__session") is None
        assert session.status == "revoked"
    else:
        assert "location" not in out.headers and out.json()["error"] == "origin_not_allowed"
        assert session.status == "active"
        assert browser.cookie(gateway.host, "__session") is not None


async def test_a_session_signed_out_here_is_refused_at_once_even_with_a_copy_of_its_token(
    gateway: RunningGateway, new_browser: Callable[..., Browser], http_client: httpx.AsyncClient
) -> None:
    """Clerk revoked it at our request: the gateway knows, so a token copied before (another tab's
    script, a stolen one) is not let in for the rest of its lifetime, with or without webhooks."""
    browser = new_browser(gateway)
    await sign_in(browser, gateway)
    token = browser.cookie(gateway.host, "__session")
    assert token is not None
    api = {"host": HOST, "authorization": f"Bearer {token}", "accept": "application/json"}
    assert (await http_client.get(f"{gateway.url}/api/items", headers=api)).status_code == 200
    out = await browser.request(
        "POST", f"{gateway.origin}/__gateway/sign-out", headers={"origin": gateway.origin}, follow=False
    )
    assert out.status_code == 303, out.text
    after = await http_client.get(f"{gateway.url}/api/items", headers=api)
    assert (after.status_code, after.json()["reason"]) == (401, "session-revoked")


@pytest.mark.parametrize(
    ("cookie", "status"),
    [
        pytest.param("own", 303, id="token_and_this_browsers_cookie"),
        pytest.param(None, 403, id="token_without_the_cookie"),
        pytest.param("y" * 32, 403, id="token_with_another_browsers_cookie"),
    ],
)
async def test_signed_out_browsers_token_is_bound_to_their_own_random_value(
    cookie: str | None, status: int, gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(gateway)
    page = await browser.navigate(f"{gateway.origin}/__gateway/sign-out")
    assert page.status_code == 200
    own = browser.cookie(gateway.host, BROWSER_COOKIE)
    assert own and re.fullmatch(r"[A-Za-z0-9_-]{32}", own)
    [set_cookie] = page.headers.get_list("set-cookie")
    assert "HttpOnly" in set_cookie and "Path=/__gateway/sign-out" in set_cookie and "Max-Age=600" in set_cookie
    again = await browser.navigate(f"{gateway.origin}/__gateway/sign-out")
    assert browser.cookie(gateway.host, BROWSER_COOKIE) == own  # one value per browser, kept
    token = hidden_fields(again)["csrf"]
    if cookie is None:
        browser.cookies.pop((gateway.host.split(":")[0], BROWSER_COOKIE))
    elif cookie != "own":
        browser.set_cookie(gateway.host.split(":")[0], BROWSER_COOKIE, cookie)
    out = await browser.request("POST", f"{gateway.origin}/__gateway/sign-out", data={"csrf": token}, follow=False)
    assert out.status_code == status
    if status == 303:
        assert f"{BROWSER_COOKIE}=; Max-Age=0" in " ".join(out.headers.get_list("set-cookie"))


async def test_the_confirmation_page_round_trips_redirect_url_escaped(
    gateway: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(gateway)
    hostile = '"><script>alert(1)</script>'
    page = await browser.navigate(f"{gateway.origin}/__gateway/sign-out", params={"redirect_url": hostile})
    assert "<script>" not in page.text
    fields = hidden_fields(page)
    assert fields["redirect_url"] == hostile and fields["csrf"]
    out = await browser.request("POST", f"{gateway.origin}/__gateway/sign-out", data=fields, follow=False)
    assert out.status_code == 303
    assert out.headers["location"] == f"{gateway.origin}/%22%3E%3Cscript%3Ealert(1)%3C/script%3E"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        pytest.param("/\t/evil.example/x", "/", id="tab_between_slashes"),
        pytest.param("/\n/evil.example/x", "/", id="newline_between_slashes"),
        pytest.param("/%09/evil.example/x", "http://app.test:8000/%09/evil.example/x", id="encoded_tab_stays_a_path"),
        pytest.param("//evil.example/x", "/", id="scheme_relative"),
        pytest.param("/\\evil.example", "/", id="slash_backslash"),
        pytest.param("\\\\evil.example", "/", id="two_backslashes"),
        pytest.param(" //evil.example", "/", id="leading_space"),
        pytest.param("https:evil.example", "/", id="scheme_without_slashes"),
        pytest.param("http:\\\\evil.example", "/", id="own_scheme_backslashes"),
        pytest.param("HTTPS://EVIL.EXAMPLE", "/", id="upper_case"),
        pytest.param("http://app.test:8000@evil.example/", "/", id="userinfo"),
        pytest.param("https://partner.example.evil.example/", "/", id="suffix"),
        pytest.param("http://2130706433/", "/", id="ipv4_number"),
        pytest.param("javascript:alert(1)", "/", id="javascript"),
        pytest.param("data:text/html,x", "/", id="data"),
        pytest.param("/.//evil.example/x", "http://app.test:8000//evil.example/x", id="dot_double_slash_stays_a_path"),
        pytest.param("/bye?x=1", "http://app.test:8000/bye?x=1", id="own_path"),
        pytest.param("HTTPS://PARTNER.EXAMPLE/bye", "https://partner.example/bye", id="allowed_upper_case"),
        pytest.param("https:partner.example/bye", "https://partner.example/bye", id="allowed_without_slashes"),
    ],
)
async def test_sign_out_sends_only_parsed_redirects_on_allowed_origins(
    target: str, location: str, gateway: RunningGateway, http_client: httpx.AsyncClient
) -> None:
    for where in ("form", "query"):
        out = await http_client.post(
            f"{gateway.url}/__gateway/sign-out",
            headers={"host": HOST, "origin": f"http://{HOST}"},
            data={"redirect_url": target} if where == "form" else None,
            params={"redirect_url": target} if where == "query" else None,
        )
        assert out.status_code == 303 and out.headers["location"] == location, where


async def test_behind_tls_the_browser_value_lives_in_a_host_only_cookie_a_sibling_cannot_set(
    gateway: RunningGateway, http_client: httpx.AsyncClient
) -> None:
    tls = {"host": gateway.host, "x-forwarded-proto": "https", "accept": "text/html"}
    page = await http_client.get(f"{gateway.url}/__gateway/sign-out", headers=tls)
    [cookie] = [value for value in page.headers.get_list("set-cookie") if "gateway_sign_out" in value]
    assert cookie.startswith("__Host-gateway_sign_out=") and "; Path=/;" in cookie and "; Secure" in cookie
    assert "Domain" not in cookie
    tossed = {**tls, "cookie": "__gateway_sign_out=chosen-by-a-sibling-subdomain-000000"}  # the http name
    again = await http_client.get(f"{gateway.url}/__gateway/sign-out", headers=tossed)
    fresh = [value for value in again.headers.get_list("set-cookie") if value.startswith("__Host-gateway_sign_out=")]
    assert fresh and "chosen-by-a-sibling" not in fresh[0]  # the tossed value is not what the token binds
