"""Route rules as settings: every key of the policy language, from TOML and JSON, and the exact line
`gateway check-config` prints for each mistake (which route, which key, why)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.clerk.authorization import REVERIFICATION_PRESETS, Reverification
from gateway.clerk.keys import make_publishable_key
from gateway.settings import RouteRule, SettingsError, load_settings
from gateway.settings.values import AllOf, AnyOf, Check, Not

ENVIRONMENT = {
    "CLERK_PUBLISHABLE_KEY": make_publishable_key("happy-hen-42.clerk.accounts.dev"),
    "CLERK_SECRET_KEY": "sk_test_0123456789abcdefghijWXYZ",
}


def routes_of(*rules: dict[str, Any]) -> tuple[RouteRule, ...]:
    return load_settings(None, {**ENVIRONMENT, "GATEWAY_ROUTES": json.dumps(list(rules))}).gateway.routes


def problems_of(*rules: Any) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        load_settings(None, {**ENVIRONMENT, "GATEWAY_ROUTES": json.dumps(list(rules))})
    return list(raised.value.problems)


def test_existing_keys_keep_their_meaning() -> None:
    (rule,) = routes_of({"path": "/admin/*", "org_role": "org:admin", "require_org": True, "api": True})
    assert rule == RouteRule("/admin/*", org_role="org:admin", require_org=True, api=True)
    assert rule.requires is None and rule.methods == () and rule.number == 1


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"methods": ["post", "PUT", "POST"]}, {"methods": ("POST", "PUT")}),
        ({"methods": "GET, HEAD"}, {"methods": ("GET", "HEAD")}),
        ({"access": "deny"}, {"access": "deny"}),
        ({"access": "DENY"}, {"access": "deny"}),
        ({"plan": "pro"}, {"requires": Check("plan", "pro")}),
        ({"feature": "org:export"}, {"requires": Check("feature", "org:export")}),
        ({"claim": "email", "suffix": "@example.com"}, {"requires": Check("claim", "email", "suffix", "@example.com")}),
        ({"claim": "public_metadata.beta", "equals": True},
         {"requires": Check("claim", "public_metadata.beta", "equals", True)}),
        ({"claim": "tier", "one_of": ["gold", 3]}, {"requires": Check("claim", "tier", "one_of", ("gold", 3))}),
        ({"claim": "flag", "exists": False}, {"requires": Check("claim", "flag", "exists", False)}),
        ({"plan": "pro", "feature": "export"}, {"requires": AllOf((Check("plan", "pro"), Check("feature", "export")))}),
        ({"any": [{"plan": "pro"}, {"org_role": "admin", "require_org": True}]},
         {"requires": AnyOf((Check("plan", "pro"), AllOf((Check("org_role", "admin"), Check("require_org")))))}),
        ({"all": [{"org_permission": "org:x:read"}]}, {"requires": AllOf((Check("org_permission", "org:x:read"),))}),
        ({"not": {"claim": "email", "suffix": "@contractor.example"}},
         {"requires": Not(Check("claim", "email", "suffix", "@contractor.example"))}),
        ({"reverification": "strict_mfa"}, {"reverification": REVERIFICATION_PRESETS["strict_mfa"]}),
        ({"reverification": {"level": "first_factor", "after_minutes": 30}},
         {"reverification": Reverification("first_factor", 30)}),
        ({"reverification": {"level": "multi_factor", "afterMinutes": 2.5}},
         {"reverification": Reverification("multi_factor", 2.5)}),
        ({"treat_pending_as_signed_out": False}, {"treat_pending_as_signed_out": False}),
        ({"cors_preflight": True}, {"cors_preflight": True}),
    ],
)  # fmt: skip
def test_each_key_of_the_policy_language(table: dict[str, Any], expected: dict[str, Any]) -> None:
    (rule,) = routes_of({"path": "/x", **table})
    assert rule == RouteRule("/x", **expected)


def test_rules_from_toml_tables(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\ntreat_pending_as_signed_out = false\n'
        '[[gateway.routes]]\npath = "/reports/*"\nmethods = ["DELETE"]\naccess = "deny"\n'
        '[[gateway.routes]]\npath = "/money/*"\nreverification = { level = "second_factor", after_minutes = 10 }\n'
        '[[gateway.routes]]\npath = "/staff/*"\n'
        '[[gateway.routes.any]]\nclaim = "email"\nsuffix = "@example.com"\n'
        '[[gateway.routes.any]]\norg_role = "admin"\n'
        '[[gateway.routes]]\npath = "/api/*"\ncors_preflight = true\n',
        encoding="utf-8",
    )
    gateway = load_settings(config, ENVIRONMENT).gateway
    assert gateway.treat_pending_as_signed_out is False
    deny, money, staff, api = gateway.routes
    assert (deny.methods, deny.access, deny.number) == (("DELETE",), "deny", 1)
    assert money.reverification == Reverification("second_factor", 10)
    assert staff.requires == AnyOf((Check("claim", "email", "suffix", "@example.com"), Check("org_role", "admin")))
    assert api.cors_preflight and api.number == 4


@pytest.mark.parametrize(
    ("name", "rule", "expected"),
    [
        ("an unknown access level", {"path": "/a", "access": "admins"},
         "route 1 (/a): access: expected one of public, signed-in, deny, got 'admins'"),
        ("a typo of a new key", {"path": "/a", "plann": "pro"},
         "route 1 (/a): unknown key 'plann' in the route (did you mean 'plan'?)"),
        ("methods that are not a list", {"path": "/a", "methods": 3},
         "route 1 (/a): methods: expected a list or a comma-separated string, got an integer"),
        ("no method at all", {"path": "/a", "methods": []}, "route 1 (/a): methods: expected at least one method, "
         "e.g. [\"POST\"]"),
        ("a method with a space", {"path": "/a", "methods": ["GE T"]}, "route 1 (/a): methods: not an HTTP method: "
         "'GE T'"),
        ("an unknown preset", {"path": "/a", "reverification": "hard"},
         "route 1 (/a): reverification: expected one of strict_mfa, strict, moderate, lax or a table "
         "{level, after_minutes}, got 'hard'"),
        ("a reverification level Clerk does not know", {"path": "/a", "reverification": {"level": "mfa",
                                                                                         "after_minutes": 5}},
         "route 1 (/a): reverification: level: expected one of first_factor, second_factor, multi_factor, got 'mfa'"),
        ("zero minutes", {"path": "/a", "reverification": {"level": "first_factor", "after_minutes": 0}},
         "route 1 (/a): reverification: after_minutes: expected a number of minutes above 0, got 0"),
        ("no minutes", {"path": "/a", "reverification": {"level": "first_factor"}},
         "route 1 (/a): reverification: after_minutes is missing (a number of minutes above 0)"),
        ("a typo inside reverification", {"path": "/a", "reverification": {"level": "first_factor",
                                                                           "after_minutes": 5, "levle": "x"}},
         "route 1 (/a): reverification: unknown key 'levle' in reverification (did you mean 'level'?)"),
        ("a plan that is not a string", {"path": "/a", "plan": 3}, "route 1 (/a): plan: expected a string, "
         "got an integer"),
        ("an empty feature", {"path": "/a", "feature": " "}, "route 1 (/a): feature: expected a name, got an empty "
         "string"),
        ("a claim without a comparison", {"path": "/a", "claim": "email"},
         "route 1 (/a): claim 'email': give exactly one of equals, one_of, suffix, exists"),
        ("a claim with two comparisons", {"path": "/a", "claim": "email", "suffix": "@x", "equals": "a@x"},
         "route 1 (/a): claim 'email': give exactly one of equals, one_of, suffix, exists (got equals, suffix)"),
        ("a comparison without a claim", {"path": "/a", "suffix": "@x"},
         "route 1 (/a): suffix: needs claim, the dotted claim path it compares"),
        ("a claim path with an empty segment", {"path": "/a", "claim": "public_metadata..beta", "exists": True},
         "route 1 (/a): claim: expected a dotted claim path such as public_metadata.beta, got "
         "'public_metadata..beta'"),
        ("equals a table", {"path": "/a", "claim": "x", "equals": {"a": 1}},
         "route 1 (/a): equals: expected a string, number or boolean, got a table"),
        ("an empty one_of", {"path": "/a", "claim": "x", "one_of": []},
         "route 1 (/a): one_of: expected a non-empty list of values, got a list"),
        ("exists as a string", {"path": "/a", "claim": "x", "exists": "yes"},
         "route 1 (/a): exists: expected true or false, got a string"),
        ("any that is not a list", {"path": "/a", "any": {"plan": "pro"}},
         "route 1 (/a): any: expected a non-empty array of condition tables, got a table"),
        ("a typo inside any", {"path": "/a", "any": [{"plan": "pro"}, {"featur": "x"}]},
         "route 1 (/a): any[2]: unknown key 'featur' in the condition (did you mean 'feature'?)"),
        ("a bad value two levels down", {"path": "/a", "all": [{"not": {"plan": 1}}]},
         "route 1 (/a): all[1]: not: plan: expected a string, got an integer"),
        ("an empty condition", {"path": "/a", "not": {}},
         "route 1 (/a): not: expected at least one condition (org_role, org_permission, require_org, plan, "
         "feature, claim, any, all, not)"),
        ("require_org = false inside a condition", {"path": "/a", "any": [{"require_org": False}]},
         "route 1 (/a): any[1]: require_org: only true is a condition (leave the key out otherwise)"),
        ("a public route with conditions", {"path": "/a", "access": "public", "plan": "pro"},
         "route 1 (/a): plan: a public route lets everyone in, so it has no conditions"),
        ("a deny route with conditions", {"path": "/a", "access": "deny", "org_role": "admin",
                                          "reverification": "strict"},
         "route 1 (/a): org_role, reverification: a deny route refuses every request it matches; narrow it with "
         "path and methods, or write the condition on a signed-in route (with not)"),
        ("a flag that is not a boolean", {"path": "/a", "cors_preflight": "sometimes"},
         "route 1 (/a): cors_preflight: expected true or false (or 1/0), got 'sometimes'"),
    ],
)  # fmt: skip
def test_check_config_names_the_route_the_key_and_why(name: str, rule: dict[str, Any], expected: str) -> None:
    assert problems_of(rule) == [f"GATEWAY_ROUTES: {expected}"], name


def test_every_bad_route_is_reported_at_once_by_its_number() -> None:
    assert problems_of({"path": "/ok"}, {"path": "/b", "plan": 1}, {"path": "/c", "access": "nobody"}) == [
        "GATEWAY_ROUTES: route 2 (/b): plan: expected a string, got an integer",
        "GATEWAY_ROUTES: route 3 (/c): access: expected one of public, signed-in, deny, got 'nobody'",
    ]


def test_the_pending_default_is_clerks_and_can_be_changed() -> None:
    assert load_settings(None, ENVIRONMENT).gateway.treat_pending_as_signed_out is True
    environment = {**ENVIRONMENT, "GATEWAY_TREAT_PENDING_AS_SIGNED_OUT": "false"}
    assert load_settings(None, environment).gateway.treat_pending_as_signed_out is False


def test_the_readme_example_of_the_policy_language_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Route rules", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "gateway.toml"
    config.write_text(example, encoding="utf-8")
    deny, writes, reads, billing, beta, api = load_settings(config, ENVIRONMENT).gateway.routes
    assert (deny.access, deny.methods, writes.org_role, reads.access) == ("deny", ("DELETE",), "admin", "public")
    assert billing.reverification == REVERIFICATION_PRESETS["strict"]
    assert beta.requires == AllOf((
        Not(Check("claim", "email", "suffix", "@contractor.example")),
        AnyOf((Check("claim", "email", "suffix", "@example.com"), Check("plan", "pro"))),
    ))  # fmt: skip
    assert api.cors_preflight and api.api
