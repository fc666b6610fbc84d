"""`accepts_token` and the route keys `accepts` / `scopes`: parsing, and the rules the policy applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clerk.claims import SessionClaims
from gateway.clerk.machine import MachineIdentity
from gateway.edge.machine_rules import judge_token, route_accepts
from gateway.edge.policy import Policy
from gateway.settings import GatewaySettings, RouteRule, SettingsError, load_settings
from tests.unit.test_settings import a_config_file, an_environment

SESSION = SessionClaims("user_1", "sess_1", "active", "org_1", "org:admin", "acme", (), None, None, None)
API_KEY = MachineIdentity("api_key", "ak_1", "user_1", scopes=("read",), name="bot")
ORG_KEY = MachineIdentity("api_key", "ak_2", "org_1", scopes=("read", "write"))
M2M = MachineIdentity("m2m_token", "mt_1", "mch_1")
FETCH = {"sec-fetch-dest": "empty", "accept": "application/json"}


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("session_token", "session_token"),
        ("API_KEY", "api_key"),
        ("any", "any"),
        ("api_key,m2m_token", ("api_key", "m2m_token")),
        (" oauth_token , api_key ,", ("oauth_token", "api_key")),
        ("api_key,api_key", ("api_key",)),
    ],
)
def test_accepts_token_from_the_environment(raw: str, parsed: object) -> None:
    assert load_settings(None, an_environment(GATEWAY_ACCEPTS_TOKEN=raw)).gateway.accepts_token == parsed
    assert load_settings(None, an_environment(GATEWAY_ACCEPTS_TOKEN=raw)).clerk.accepts_token == parsed


def test_a_toml_list_stays_a_list_even_with_one_kind(tmp_path: Path) -> None:
    path = a_config_file(tmp_path, '[gateway]\naccepts_token = ["api_key"]\n')
    assert load_settings(path, an_environment()).gateway.accepts_token == ("api_key",)


def test_the_default_is_session_tokens() -> None:
    assert load_settings(None, an_environment()).gateway.accepts_token == "session_token"


@pytest.mark.parametrize("raw", ["api_keys", "any,api_key", "machine_token"])
def test_unknown_kinds_are_reported(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None, an_environment(GATEWAY_ACCEPTS_TOKEN=raw))
    assert any(problem.startswith("GATEWAY_ACCEPTS_TOKEN: expected one of") for problem in caught.value.problems)


def test_route_keys_accepts_and_scopes(tmp_path: Path) -> None:
    path = a_config_file(tmp_path, (
        '[[gateway.routes]]\npath = "/api/*"\naccepts = ["session_token", "api_key"]\nscopes = ["read"]\n'
        '[[gateway.routes]]\npath = "/hooks/*"\naccepts = "m2m_token"\n'
    ))  # fmt: skip
    routes = load_settings(path, an_environment()).gateway.routes
    assert routes == (
        RouteRule("/api/*", accepts=("session_token", "api_key"), scopes=("read",)),
        RouteRule("/hooks/*", accepts="m2m_token"),
    )


def test_a_public_route_takes_no_accepts_or_scopes() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None, an_environment(GATEWAY_ROUTES='[{"path": "/p", "access": "public", "scopes": ["a"]}]'))
    assert list(caught.value.problems) == [
        "GATEWAY_ROUTES: route 1 (/p): a public route takes any request: accepts and scopes do not apply to it"
    ]


@pytest.mark.parametrize(
    ("rule", "claims", "machine", "expected"),
    [
        (RouteRule("/*"), SESSION, None, None),
        (RouteRule("/*"), None, None, None),
        (RouteRule("/*", accepts="api_key"), SESSION, None, ("sign-in", "token-type-mismatch")),
        (RouteRule("/*", accepts="api_key"), None, API_KEY, ("allow", "")),
        (RouteRule("/*", accepts="any"), None, M2M, ("allow", "")),
        (RouteRule("/*"), None, API_KEY, ("sign-in", "token-type-mismatch")),
        (RouteRule("/*", accepts=("api_key",), scopes=("read",)), None, API_KEY, ("allow", "")),
        (RouteRule("/*", accepts="api_key", scopes=("read", "write")), None, API_KEY, ("forbidden", "missing-scopes")),
        (RouteRule("/*", accepts="api_key", scopes=("write",)), None, ORG_KEY, ("allow", "")),
        # scopes are for machine tokens only: a session the rule takes is judged by the organization rules
        (RouteRule("/*", accepts=("session_token", "api_key"), scopes=("write",)), SESSION, None, None),
        (RouteRule("/*", accepts="api_key", require_org=True), None, ORG_KEY, ("allow", "")),
        (
            RouteRule("/*", accepts="api_key", require_org=True),
            None,
            API_KEY,
            ("forbidden", "machine-token-lacks-organization-role"),
        ),
        (
            RouteRule("/*", accepts="any", org_role="org:admin"),
            None,
            ORG_KEY,
            ("forbidden", "machine-token-lacks-organization-role"),
        ),
    ],
)
def test_judge_token(
    rule: RouteRule, claims: SessionClaims | None, machine: MachineIdentity | None, expected: tuple[str, str] | None
) -> None:
    verdict = judge_token(rule, "session_token", claims, machine)
    assert (None if verdict is None else (verdict.verdict, verdict.reason)) == expected


def test_the_policy_asks_judge_token_for_every_rule_of_every_reading() -> None:
    policy = Policy(GatewaySettings(routes=(RouteRule("/api/*", accepts=("session_token", "api_key")),)))
    assert policy.decide("/api/me", FETCH, None, machine=API_KEY).verdict == "allow"
    refused = policy.decide("/other", FETCH, None, machine=API_KEY)
    assert (refused.verdict, refused.reason, refused.is_api) == ("sign-in", "token-type-mismatch", True)
    assert policy.decide(("/api/me", "/API/me"), FETCH, None, machine=API_KEY).verdict == "sign-in"  # a reading's rule
    assert policy.decide("/api/me", FETCH, SESSION).verdict == "allow"


def test_the_decision_takes_the_first_rules_kinds() -> None:
    policy = Policy(GatewaySettings(routes=(RouteRule("/api/*", accepts="any"),)))
    assert route_accepts(policy.rules_for("/api/x")[0]) == "any"
    assert route_accepts(policy.rules_for("/x")[0]) is None
