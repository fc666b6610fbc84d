"""The demo in headless Chromium: what a person does, with screenshots of the main steps.

Sign in on the hosted page, keep using the tool well past the 5-second token lifetime, admin vs member,
an API call without a session, sign out, the satellite domain, and the development-instance
dev-browser flow underneath it all.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.demo.command import DemoPlan
from tests.e2e.conftest import TOKEN_LIFETIME, shot

ALICE = ("alice@example.com", "alice-password")
BOB = ("bob@example.com", "bob-password")


def sign_in(page: Any, plan: DemoPlan, who: tuple[str, str] = ALICE, path: str = "/") -> None:
    page.goto(f"{plan.primary_origin}{path}")
    assert page.url.startswith(plan.sign_in_url), page.url
    page.fill("#identifier", who[0])
    page.fill("#password", who[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{plan.primary_origin}{path}*")


def test_sign_in_through_the_hosted_page_lands_on_the_tool_with_your_identity(page: Any, demo: DemoPlan) -> None:
    page.goto(f"{demo.primary_origin}/")
    assert page.url.startswith(demo.sign_in_url)
    shot(page, "01-hosted-sign-in")
    sign_in(page, demo)
    assert page.inner_text("#greeting") == "Signed in as user_alice."
    assert page.inner_text("#org_slug") == "acme" and page.inner_text("#org_role") == "org:admin"
    names = {cookie["name"] for cookie in page.context.cookies(demo.primary_origin)}
    assert {"__session", "__client_uat", "__clerk_db_jwt"} <= names  # the dev-browser flow ran
    shot(page, "02-dashboard-signed-in")


def test_the_tool_keeps_working_for_20_seconds_past_a_5_second_token(page: Any, demo: DemoPlan) -> None:
    sign_in(page, demo)
    first_token = next(c["value"] for c in page.context.cookies(demo.primary_origin) if c["name"] == "__session")
    deadline = time.monotonic() + 4 * TOKEN_LIFETIME
    steps = 0
    while time.monotonic() < deadline:
        page.goto(f"{demo.primary_origin}/" if steps % 2 else f"{demo.primary_origin}/files")
        assert page.url.startswith(demo.primary_origin), f"interrupted at step {steps}: {page.url}"
        status = page.evaluate(
            "fetch('/api/me', {method: 'POST', headers: {'content-type': 'application/json'}, body: '{}'})"
            ".then(r => r.json().then(b => [r.status, b.identity.user_id]))")
        assert status == [200, "user_alice"], f"fetch failed at step {steps}: {status}"
        steps += 1
        page.wait_for_timeout(1500)
    last_token = next(c["value"] for c in page.context.cookies(demo.primary_origin) if c["name"] == "__session")
    assert last_token != first_token and steps >= 8
    shot(page, "03-still-signed-in-after-20s")


def test_the_admin_page_opens_for_an_admin_and_is_forbidden_to_a_member(browser: Any, demo: DemoPlan) -> None:
    for who, expected in ((ALICE, 200), (BOB, 403)):
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, demo, who)
        response = page.goto(f"{demo.primary_origin}/admin")
        assert response.status == expected
        shot(page, f"04-admin-as-{who[0].split('@')[0]}")
        context.close()


def test_an_api_call_without_a_session_gets_401_json(page: Any, demo: DemoPlan) -> None:
    page.goto(f"{demo.primary_origin}/healthz")
    result = page.evaluate("fetch('/api/me').then(r => r.json().then(b => [r.status, b.error]))")
    assert result == [401, "unauthenticated"]


def test_sign_out_then_the_next_visit_asks_to_sign_in(page: Any, demo: DemoPlan) -> None:
    sign_in(page, demo)
    page.click("#sign-out")
    page.wait_for_url(f"{demo.sign_in_url}*")
    page.goto(f"{demo.primary_origin}/")
    assert page.url.startswith(demo.sign_in_url)
    shot(page, "05-signed-out")


def test_the_satellite_domain_is_signed_in_through_the_sync_round_trip(page: Any, demo: DemoPlan) -> None:
    sign_in(page, demo)
    page.wait_for_timeout(2500)  # a person's pause: Clerk's redirect counter lives 2 s
    reasons: list[str] = []
    page.on("response", lambda response: reasons.append(response.headers.get("x-clerk-auth-reason", "")))
    page.goto(f"{demo.satellite_origin}/")
    assert page.url.startswith(demo.satellite_origin), page.url
    assert page.inner_text("#greeting") == "Signed in as user_alice."
    assert page.inner_text("#host") == demo.satellite_origin.removeprefix("http://")
    assert [r for r in reasons if r][:3] == ["satellite-needs-syncing", "primary-responds-to-syncing",
                                              "dev-browser-sync"]
    shot(page, "06-satellite-signed-in")
