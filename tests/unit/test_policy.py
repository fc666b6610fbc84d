"""Route policy: secure by default, public paths, org/role/permission rules, browser vs API answers."""

from __future__ import annotations

import pytest

from gateway.clerk.claims import SessionClaims
from gateway.edge.policy import Policy, compile_path_pattern
from gateway.settings import GatewaySettings, RouteRule

MEMBER = SessionClaims("user_1", "sess_1", "active", "org_1", "org:member", "acme", ("org:reports:read",), None,
                       None, None)
ADMIN = SessionClaims("user_2", "sess_2", "active", "org_1", "org:admin", "acme",
                      ("org:reports:read", "org:billing:manage"), None, None, None)
NO_ORG = SessionClaims("user_3", "sess_3", "active", None, None, None, (), None, None, None)
PENDING = SessionClaims("user_4", "sess_4", "pending", None, None, None, (), None, None, None)
NAVIGATION = {"sec-fetch-dest": "document", "accept": "text/html"}
FETCH = {"sec-fetch-dest": "empty", "accept": "application/json"}

POLICY = Policy(GatewaySettings(
    public_paths=("/healthz", "/public/*"),
    api_paths=("/api/*",),
    routes=(
        RouteRule("/admin/*", org_role="org:admin"),
        RouteRule("/reports/*", org_permission="org:reports:read"),
        RouteRule("/billing/*", org_permission="billing:manage", api=True),
        RouteRule("/teams/*", require_org=True),
        RouteRule("/open/*", access="public"),
    ),
))


@pytest.mark.parametrize(
    ("path", "headers", "claims", "verdict", "is_api"),
    [
        ("/", NAVIGATION, None, "sign-in", False),
        ("/anything/at/all", FETCH, None, "sign-in", True),
        ("/", NAVIGATION, NO_ORG, "allow", False),
        ("/healthz", FETCH, None, "allow", True),
        ("/public", NAVIGATION, None, "allow", False),
        ("/public/logo.png", FETCH, None, "allow", True),
        ("/publicity", NAVIGATION, None, "sign-in", False),
        ("/api/items", NAVIGATION, None, "sign-in", True),
        ("/admin/users", NAVIGATION, MEMBER, "forbidden", False),
        ("/admin/users", NAVIGATION, ADMIN, "allow", False),
        ("/admin", NAVIGATION, NO_ORG, "forbidden", False),
        ("/reports/q3", NAVIGATION, MEMBER, "allow", False),
        ("/reports/q3", NAVIGATION, NO_ORG, "forbidden", False),
        ("/billing/invoices", NAVIGATION, MEMBER, "forbidden", True),
        ("/billing/invoices", NAVIGATION, ADMIN, "allow", True),
        ("/teams/x", NAVIGATION, NO_ORG, "forbidden", False),
        ("/teams/x", NAVIGATION, MEMBER, "allow", False),
        ("/open/door", FETCH, None, "allow", True),
        ("/", NAVIGATION, PENDING, "sign-in", False),
    ],
)
def test_route_policy(path: str, headers: dict[str, str], claims: SessionClaims | None, verdict: str,
                      is_api: bool) -> None:
    decision = POLICY.decide(path, headers, claims)
    assert (decision.verdict, decision.is_api) == (verdict, is_api)


def test_annotate_mode_lets_everything_through() -> None:
    policy = Policy(GatewaySettings(mode="annotate", routes=(RouteRule("/admin/*", org_role="org:admin"),)))
    assert policy.decide("/admin/x", NAVIGATION, None).verdict == "allow"


def test_accept_html_without_fetch_metadata_counts_as_a_navigation() -> None:
    assert POLICY.decide("/", {"accept": "text/html,application/xhtml+xml"}, None).is_api is False


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("/admin/*", "/admin", True), ("/admin/*", "/admin/", True), ("/admin/*", "/admin/a/b", True),
    ("/admin/*", "/administrator", False), ("/exact", "/exact", True), ("/exact", "/exact/x", False),
    ("/files/*.png", "/files/a/b.png", True), ("/a.b", "/aXb", False),
])
def test_path_patterns(pattern: str, path: str, matches: bool) -> None:
    assert bool(compile_path_pattern(pattern).match(path)) is matches


# ------------------------------------------------------------------------------------- readings and case

CASED = GatewaySettings(public_paths=("/public/*",), routes=(RouteRule("/admin/*", org_role="org:admin"),))


@pytest.mark.parametrize(
    ("case", "path", "claims", "verdict"),
    [
        ("strict", "/ADMIN/x", MEMBER, "forbidden"),  # a case-insensitive app routes it to /admin
        ("strict", "/PUBLIC/x", None, "sign-in"),  # a case-sensitive app does not serve /public there
        ("strict", "/public/x", None, "allow"),
        ("sensitive", "/ADMIN/x", MEMBER, "allow"),  # only for apps known to route by exact case
        ("sensitive", "/PUBLIC/x", None, "sign-in"),
        ("insensitive", "/ADMIN/x", MEMBER, "forbidden"),
        ("insensitive", "/PUBLIC/x", None, "allow"),
    ],
)
def test_letter_case_of_route_patterns(case: str, path: str, claims: SessionClaims | None, verdict: str) -> None:
    policy = Policy(GatewaySettings(public_paths=CASED.public_paths, routes=CASED.routes, path_case=case))  # type: ignore[arg-type]
    assert policy.decide(path, NAVIGATION, claims).verdict == verdict


def test_every_reading_must_pass_the_first_refusal_decides() -> None:
    policy = Policy(CASED)
    assert policy.decide(("/public/..;/admin", "/admin"), NAVIGATION, MEMBER).verdict == "forbidden"
    assert policy.decide(("/public/..;/admin", "/admin"), NAVIGATION, None).verdict == "sign-in"
    assert policy.decide(("/public/x;v=1", "/public/x"), NAVIGATION, None).verdict == "allow"


def test_a_pattern_matches_across_a_newline_it_cannot_hide() -> None:
    assert Policy(CASED).decide("/admin/a\nb", NAVIGATION, MEMBER).verdict == "forbidden"
