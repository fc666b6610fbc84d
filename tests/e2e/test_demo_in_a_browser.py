"""The demo in headless Chromium: what a person does, with screenshots of the main steps.

Sign in on the hosted page, keep using the tool well past the 5-second token lifetime, admin vs member,
an API call without a session, sign out, the satellite domain, the second app (the team wiki on its
own host name, with the remote-user preset), and the development-instance dev-browser flow underneath
it all.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.demo.command import DemoPlan
from tests.e2e.conftest import TOKEN_LIFETIME, shot

ALICE = ("alice@example.com", "alice-password")
BOB = ("bob@example.com", "bob-password")


def sign_in(page: Any, plan: DemoPlan, who: tuple[str, str] = ALICE, path: str = "/", origin: str = "") -> None:
    origin = origin or plan.primary_origin
    page.goto(f"{origin}{path}")
    assert page.url.startswith(plan.sign_in_url), page.url
    page.fill("#identifier", who[0])
    page.fill("#password", who[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{origin}{path}*")


def received_headers(page: Any) -> dict[str, str]:
    """The card of identity headers the app's page shows it received."""
    names = page.eval_on_selector_all("#received dt", "items => items.map(i => i.textContent)")
    values = page.eval_on_selector_all("#received dd", "items => items.map(i => i.textContent)")
    return dict(zip(names, values, strict=True))


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


def test_the_403_page_says_who_is_signed_in_and_switches_account(page: Any, demo: DemoPlan) -> None:
    sign_in(page, demo, BOB)
    response = page.goto(f"{demo.primary_origin}/admin")
    assert response.status == 403
    assert "user_bob" in page.inner_text("#signed-in-as") and "org:member" in page.inner_text("#signed-in-as")
    shot(page, "07-forbidden-names-the-user")
    page.click("#switch-account")
    page.wait_for_url(f"{demo.sign_in_url}*")
    page.fill("#identifier", ALICE[0])
    page.fill("#password", ALICE[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo.primary_origin}/admin*")
    assert page.inner_text("#admin") == "Only organization admins see this page."


def test_an_api_path_opened_signed_out_is_a_page_with_a_sign_in_link(page: Any, demo: DemoPlan) -> None:
    response = page.goto(f"{demo.primary_origin}/api/me")
    assert response.status == 401 and response.headers["content-type"].startswith("text/html")
    assert page.inner_text("#message") == "Sign in to use this API."
    shot(page, "08-api-path-signed-out")
    page.click("#sign-in")
    page.wait_for_url(f"{demo.sign_in_url}*")


def test_long_permission_lists_stay_inside_the_identity_card(browser: Any, demo: DemoPlan) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 800})
    narrow = context.new_page()
    sign_in(narrow, demo)
    items = narrow.eval_on_selector_all("#org_permissions li", "items => items.map(i => i.textContent)")
    assert "org:sys_memberships:manage" in items and len(items) == 4
    overflow = narrow.eval_on_selector(".card", "card => card.scrollWidth - card.clientWidth")
    assert overflow <= 0
    shot(narrow, "09-permissions-in-a-narrow-card")
    context.close()


def test_the_satellite_links_back_to_the_primary_not_to_itself(page: Any, demo: DemoPlan) -> None:
    sign_in(page, demo)
    assert page.get_attribute("#satellite", "href") == f"{demo.satellite_origin}/"
    page.wait_for_timeout(2500)
    page.goto(f"{demo.satellite_origin}/")
    assert page.inner_text("#greeting") == "Signed in as user_alice."
    assert page.locator("#satellite").count() == 0
    assert page.get_attribute("#primary", "href") == f"{demo.primary_origin}/"
    shot(page, "10-satellite-links-to-primary")


def test_after_signing_out_on_the_primary_the_satellite_reaches_sign_in_in_a_few_hops(
    page: Any, demo: DemoPlan
) -> None:
    sign_in(page, demo)
    page.wait_for_timeout(2500)
    page.goto(f"{demo.satellite_origin}/")
    assert page.inner_text("#greeting") == "Signed in as user_alice."
    page.goto(f"{demo.primary_origin}/")
    page.click("#sign-out")
    page.wait_for_url(f"{demo.sign_in_url}*")
    page.wait_for_timeout((TOKEN_LIFETIME + 6) * 1000)  # the satellite's token expires (and the 5 s of skew)
    hops: list[str] = []
    page.on("response", lambda response: hops.append(response.url) if 300 <= response.status < 400 else None)
    page.goto(f"{demo.satellite_origin}/")
    assert page.url.startswith(demo.sign_in_url), page.url
    assert len(hops) <= 4, hops
    shot(page, "11-satellite-signed-out-to-sign-in")


def test_the_pages_offer_sign_out_only_when_signed_in(page: Any, demo: DemoPlan) -> None:
    page.goto(f"{demo.primary_origin}/sdk")
    assert page.locator("#sign-out").count() == 0
    if page.locator("#sdk-sign-out").count():
        page.wait_for_function("document.getElementById('sdk-status').textContent !== 'Loading clerk-js…'")
        assert page.locator("#sdk-sign-out").is_hidden()
    shot(page, "12-sdk-signed-out")
    sign_in(page, demo)
    assert page.locator("#sign-out").count() == 1


def test_the_banner_names_the_token_lifetime_and_both_apps(demo: DemoPlan) -> None:
    from gateway.demo.command import banner

    assert f"session tokens last {demo.token_lifetime} s" in banner(demo)
    assert f"{demo.primary_origin}/" in banner(demo) and f"{demo.wiki_origin}/" in banner(demo)


def test_the_wiki_on_its_own_host_receives_the_remote_user_headers(page: Any, demo: DemoPlan) -> None:
    sign_in(page, demo, BOB, origin=demo.wiki_origin)
    assert page.inner_text("#host") == demo.wiki_origin.removeprefix("http://")
    assert page.inner_text("#wiki-greeting") == "Hello, Bob Member"
    headers = received_headers(page)
    assert headers["remote-user"] == "bob@example.com" and headers["remote-name"] == "Bob Member"
    assert headers["remote-groups"].split(",")[:2] == ["acme", "org:member"]
    assert headers["x-wiki-author"] == "Bob Member <bob@example.com>"
    assert not [name for name in headers if name.startswith("x-clerk-")], headers
    assert page.inner_text("#assertion-verdict") == "verified"
    assert '"aud": "wiki"' in page.inner_text("#assertion")
    shot(page, "13-wiki-remote-user-headers")
    page.click("text=on-call")
    page.wait_for_url(f"{demo.wiki_origin}/wiki/on-call")
    assert page.inner_text("#wiki-user") == "bob@example.com"


def test_the_tool_shows_its_clerk_headers_and_the_verified_assertion(page: Any, demo: DemoPlan) -> None:
    sign_in(page, demo)
    headers = received_headers(page)
    assert headers["x-clerk-user-id"] == "user_alice" and headers["x-clerk-org-role"] == "org:admin"
    assert not [name for name in headers if name.startswith("remote-")], headers
    assert page.inner_text("#assertion-verdict") == "verified"
    assert '"aud": "tools"' in page.inner_text("#assertion")
    shot(page, "14-tool-clerk-headers-and-assertion")


def test_one_gateway_serves_both_apps_each_by_its_host(page: Any, demo: DemoPlan) -> None:
    """A development instance keeps a dev browser per host, so each host signs in once; then one browser
    uses both apps through the one gateway address."""
    sign_in(page, demo, origin=demo.wiki_origin)
    assert page.inner_text("#wiki-greeting") == "Hello, Alice Admin"
    page.wait_for_timeout(2500)  # a person's pause: Clerk's redirect counter lives 2 s
    sign_in(page, demo, BOB)
    assert page.inner_text("#greeting") == "Signed in as user_bob."
    page.goto(f"{demo.wiki_origin}/wiki/home")
    assert page.inner_text("#wiki-user") == "alice@example.com"
    page.goto(f"{demo.primary_origin}/")
    assert page.inner_text("#greeting") == "Signed in as user_bob."
    shot(page, "15-two-apps-one-gateway")
