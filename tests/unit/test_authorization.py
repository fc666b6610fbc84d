"""Clerk's `has()` checks at the edge, claims in and verdict out: reverification, plans and features,
claim matches, `any`/`all`/`not`, methods, deny rules, pending sessions and CORS preflights."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.clerk.authorization import (
    REVERIFICATION_PRESETS,
    Reverification,
    has_billing_entry,
    is_reverified,
    reverification_error,
)
from gateway.clerk.claims import SessionClaims, parse_claims
from gateway.edge.outcomes import reverification_error_body
from gateway.edge.policy import Policy
from gateway.settings import GatewaySettings
from gateway.settings.routes import parse_routes

NAVIGATION = {"sec-fetch-dest": "document", "accept": "text/html"}
FETCH = {"sec-fetch-dest": "empty", "accept": "application/json"}
PREFLIGHT = {"origin": "https://web.example", "access-control-request-method": "POST", "accept": "*/*"}


def claims(**payload: Any) -> SessionClaims:
    return parse_claims({"sub": "user_1", "sid": "sess_1", "sts": "active", "v": 2, **payload})


def policy(*routes: dict[str, Any], **settings: Any) -> Policy:
    return Policy(GatewaySettings(routes=parse_routes(list(routes)), **settings))


# ------------------------------------------------------------------------------------------ reverification


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("strict_mfa", ("multi_factor", 10)),
        ("strict", ("second_factor", 10)),
        ("moderate", ("second_factor", 60)),
        ("lax", ("second_factor", 1440)),
    ],
)
def test_reverification_presets_are_clerks(name: str, values: tuple[str, int]) -> None:
    preset = REVERIFICATION_PRESETS[name]
    assert (preset.level, preset.after_minutes) == values


@pytest.mark.parametrize(
    ("level", "after", "fva", "verified"),
    [
        ("first_factor", 10, (9, -1), True),
        ("first_factor", 10, (10, -1), False),  # strictly less than afterMinutes
        ("first_factor", 10, (11, 0), False),
        ("second_factor", 10, (0, 11), False),
        ("second_factor", 10, (20, 5), True),  # only the second factor's age counts when it is enabled
        ("second_factor", 10, (5, -1), True),  # no second factor enabled: the first factor's age
        ("second_factor", 10, (15, -1), False),
        ("multi_factor", 10, (5, 5), True),
        ("multi_factor", 10, (5, 15), False),
        ("multi_factor", 10, (15, 5), False),
        ("multi_factor", 10, (5, -1), True),  # no second factor: the first alone
        ("first_factor", 10, (-1, 3), False),  # first factor "not enabled": never verified
        ("second_factor", 10, None, False),  # no fva claim: has() answers false
        ("first_factor", 10, (-1, -1), False),  # no factor enabled at all
        ("first_factor", 10, (-5, -1), False),  # an age that is neither -1 nor 0 or more
        ("second_factor", 10, (-1, 3), True),  # only a second factor: it alone counts
        ("multi_factor", 10, (-1, 3), False),
    ],
)
def test_reverification_by_factor_age(level: str, after: int, fva: tuple[int, int] | None, verified: bool) -> None:
    assert is_reverified(Reverification(level, after), fva) is verified  # type: ignore[arg-type]


def test_the_reverification_error_is_clerks_body_exactly() -> None:
    assert reverification_error(REVERIFICATION_PRESETS["strict"]) == {
        "clerk_error": {"type": "forbidden", "reason": "reverification-error", "metadata": {"reverification": "strict"}}
    }
    custom = Reverification("first_factor", 30)
    assert reverification_error_body(custom) == (
        b'{"clerk_error":{"type":"forbidden","reason":"reverification-error",'
        b'"metadata":{"reverification":{"level":"first_factor","afterMinutes":30}}}}'
    )


# ------------------------------------------------------------------------------------- plans and features


@pytest.mark.parametrize(
    ("claim", "wanted", "held"),
    [
        ("u:pro", "pro", True),
        ("u:pro", "user:pro", True),
        ("u:pro", "org:pro", False),
        ("o:pro", "org:pro", True),
        ("o:pro", "user:pro", False),
        ("o:pro", "pro", True),
        ("ou:pro", "user:pro", True),
        ("uo:pro", "org:pro", True),
        ("u:free, o:pro", "org:pro", True),
        ("u:free,o:team", "pro", False),
        ("", "pro", False),
        (None, "pro", False),
        ("u:pro", "pr", False),
        ("o:pro", "organization:pro", True),
        ("u:pro", "u:pro", True),
        ("u:pro", "team:pro", False),  # an unknown scope: Clerk's check throws, so it fails
        ("pro", "pro", False),  # an entry without a scope: likewise
        ("u:pro", "user:pro:monthly", True),  # only the first two pieces count, as in JavaScript
    ],
)
def test_plan_and_feature_entries_by_scope(claim: str | None, wanted: str, held: bool) -> None:
    assert has_billing_entry(claim, wanted) is held


# --------------------------------------------------------------------------------------------- the policy

RULES = policy(
    {"path": "/pro/*", "plan": "pro"},
    {"path": "/export/*", "feature": "org:export"},
    {"path": "/staff/*", "claim": "email", "suffix": "@example.com"},
    {"path": "/beta/*", "claim": "public_metadata.beta", "equals": True},
    {"path": "/tier/*", "claim": "public_metadata.tier", "one_of": ["gold", "platinum", 3]},
    {"path": "/flagged/*", "claim": "public_metadata.flag", "exists": True},
    {"path": "/clean/*", "claim": "public_metadata.flag", "exists": False},
    {"path": "/either/*", "any": [{"plan": "pro"}, {"org_role": "admin"}]},
    {"path": "/both/*", "all": [{"plan": "pro"}, {"feature": "export"}]},
    {"path": "/no-contractors/*", "not": {"claim": "email", "suffix": "@contractor.example"}},
    {"path": "/money/*", "reverification": "strict"},
    {"path": "/billing/*", "org_role": "admin", "reverification": {"level": "first_factor", "after_minutes": 5}},
    {"path": "/reports/*", "methods": ["DELETE"], "access": "deny"},
    {"path": "/reports/*", "methods": ["POST", "PUT"], "org_role": "admin"},
    {"path": "/reports/*", "access": "public"},
    {"path": "/api/*", "cors_preflight": True},
    {"path": "/onboarding/*", "treat_pending_as_signed_out": False},
    {"path": "/closed/*", "access": "deny"},
)
ALICE = claims(email="alice@example.com", pla="u:pro", fea="o:export", public_metadata={"beta": True, "tier": "gold"},
               fva=[2, -1], o={"id": "org_1", "rol": "admin", "slg": "acme"})  # fmt: skip
EVE = claims(email="eve@evil-example.com", pla="o:pro", public_metadata={"beta": 1, "tier": 3, "flag": None},
             fva=[30, -1])  # fmt: skip
CONTRACTOR = claims(email="carl@contractor.example", public_metadata={"beta": "true", "tier": "Gold"}, fva=[2, 20])
PENDING = claims(sts="pending")


@pytest.mark.parametrize(
    ("path", "method", "headers", "who", "verdict", "because"),
    [
        ("/pro/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/pro/x", "GET", NAVIGATION, EVE, "allow", "signed in"),  # o:pro is held by her organization
        ("/pro/x", "GET", NAVIGATION, CONTRACTOR, "forbidden", "not met: plan = 'pro'"),
        ("/export/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/export/x", "GET", NAVIGATION, EVE, "forbidden", "not met: feature = 'org:export'"),
        ("/staff/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/staff/x", "GET", NAVIGATION, EVE, "forbidden", "not met: claim 'email' suffix \"@example.com\""),
        ("/beta/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/beta/x", "GET", NAVIGATION, EVE, "forbidden", "not met: claim 'public_metadata.beta' equals true"),
        ("/beta/x", "GET", NAVIGATION, CONTRACTOR, "forbidden", "not met: claim 'public_metadata.beta' equals true"),
        ("/tier/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/tier/x", "GET", NAVIGATION, EVE, "allow", "signed in"),
        ("/tier/x", "GET", NAVIGATION, CONTRACTOR, "forbidden",
         "not met: claim 'public_metadata.tier' one_of [\"gold\", \"platinum\", 3]"),
        ("/flagged/x", "GET", NAVIGATION, EVE, "allow", "signed in"),  # present, even as null
        ("/flagged/x", "GET", NAVIGATION, ALICE, "forbidden", "not met: claim 'public_metadata.flag' exists true"),
        ("/clean/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/clean/x", "GET", NAVIGATION, EVE, "forbidden", "not met: claim 'public_metadata.flag' exists false"),
        ("/either/x", "GET", NAVIGATION, EVE, "allow", "signed in"),
        ("/either/x", "GET", NAVIGATION, CONTRACTOR, "forbidden",
         "not met: any [plan = 'pro', org_role = 'admin']"),
        ("/both/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/both/x", "GET", NAVIGATION, EVE, "forbidden", "not met: feature = 'export'"),
        ("/no-contractors/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/no-contractors/x", "GET", NAVIGATION, CONTRACTOR, "forbidden",
         "not met: not (claim 'email' suffix \"@contractor.example\")"),
        ("/money/x", "POST", FETCH, ALICE, "allow", "signed in"),
        ("/money/x", "POST", FETCH, EVE, "reverify",
         "reverification needed: second factor verified in the last 10 minutes"),
        ("/money/x", "GET", NAVIGATION, CONTRACTOR, "reverify",
         "reverification needed: second factor verified in the last 10 minutes"),
        ("/billing/x", "GET", NAVIGATION, EVE, "forbidden", "not met: org_role (no active organization)"),
        ("/billing/x", "GET", NAVIGATION, ALICE, "allow", "signed in"),
        ("/reports/q3", "GET", NAVIGATION, None, "allow", "a public route"),
        ("/reports/q3", "HEAD", NAVIGATION, None, "allow", "a public route"),
        ("/reports/q3", "DELETE", FETCH, ALICE, "deny", "a deny route"),
        ("/reports/q3", "delete", FETCH, ALICE, "deny", "a deny route"),  # apps may upper-case it
        ("/reports/q3", "DELETE", FETCH, None, "deny", "a deny route"),
        ("/reports/q3", "POST", FETCH, None, "sign-in", "not signed in"),
        ("/reports/q3", "PUT", FETCH, EVE, "forbidden", "not met: org_role (no active organization)"),
        ("/reports/q3", "POST", FETCH, ALICE, "allow", "signed in"),
        ("/api/items", "OPTIONS", PREFLIGHT, None, "allow", "a CORS preflight (cors_preflight = true)"),
        ("/api/items", "OPTIONS", {"origin": "https://web.example"}, None, "sign-in", "not signed in"),
        ("/api/items", "OPTIONS", {"access-control-request-method": "GET"}, None, "sign-in", "not signed in"),
        ("/api/items", "GET", PREFLIGHT, None, "sign-in", "not signed in"),
        ("/pro/x", "OPTIONS", PREFLIGHT, None, "sign-in", "not signed in"),  # only where a route says so
        ("/onboarding/x", "GET", NAVIGATION, PENDING, "allow", "signed in (pending session let in)"),
        ("/pro/x", "GET", NAVIGATION, PENDING, "sign-in", "the session is pending (treat_pending_as_signed_out)"),
        ("/closed/x", "GET", NAVIGATION, ALICE, "deny", "a deny route"),
        ("/elsewhere", "GET", NAVIGATION, None, "sign-in", "not signed in"),
    ],
)
def test_route_rules_claims_in_verdict_out(
    path: str, method: str, headers: dict[str, str], who: SessionClaims | None, verdict: str, because: str
) -> None:
    decision = RULES.decide(path, headers, who, method)
    assert (decision.verdict, decision.because) == (verdict, because)


def test_a_pending_session_can_be_let_in_everywhere_or_kept_out_by_one_rule() -> None:
    lenient = policy({"path": "/strict/*", "treat_pending_as_signed_out": True}, treat_pending_as_signed_out=False)
    anywhere = lenient.decide("/x", NAVIGATION, PENDING, "GET")
    assert (anywhere.verdict, anywhere.pending_signed_in) == ("allow", True)
    assert lenient.decide("/strict/x", NAVIGATION, PENDING, "GET").verdict == "sign-in"
    assert policy().decide("/x", NAVIGATION, PENDING, "GET").verdict == "sign-in"  # Clerk's default


def test_a_reverify_verdict_names_what_to_reverify_and_whether_to_answer_json() -> None:
    api = RULES.decide("/money/x", FETCH, EVE, "POST")
    page = RULES.decide("/money/x", NAVIGATION, EVE, "GET")
    assert api.reverification == REVERIFICATION_PRESETS["strict"] and api.is_api
    assert not page.is_api


def test_every_reading_is_judged_with_the_method_rules_too() -> None:
    # /reports;x/q3 is /reports/q3 to Tomcat: the DELETE deny rule holds for that reading as well
    decision = RULES.decide(("/reports;x/q3", "/reports/q3"), FETCH, ALICE, "DELETE")
    assert decision.verdict == "deny"
    # and in the other letter case (path_case = strict judges both)
    assert RULES.decide("/REPORTS/q3", FETCH, ALICE, "DELETE").verdict == "deny"


def test_methods_no_rule_names_share_one_memo_entry() -> None:
    rules = policy({"path": "/x", "methods": ["POST"], "access": "deny"})
    for method in ("GET", "PATCH", "BREW", "PROPFIND", "get"):
        rules.decide("/x", FETCH, ALICE, method)
    rules.decide("/x", FETCH, ALICE, "POST")
    assert len(rules._memo) == 2


def test_annotate_mode_lets_a_deny_rule_through_with_a_reason() -> None:
    rules = policy({"path": "/x", "access": "deny"}, mode="annotate")
    assert rules.decide("/x", FETCH, None, "GET").verdict == "allow"


@pytest.mark.parametrize("role", ["admin", "org:admin", "org:org:admin"])
def test_roles_are_prefixed_as_clerks_prefix_with_org_does(role: str) -> None:
    rules = policy({"path": "/own/*", "org_role": role}, {"path": "/nested/*", "any": [{"org_role": role}]})
    assert rules.decide("/own/x", NAVIGATION, ALICE, "GET").verdict == "allow"
    assert rules.decide("/nested/x", NAVIGATION, ALICE, "GET").verdict == "allow"
    assert rules.decide("/own/x", NAVIGATION, EVE, "GET").verdict == "forbidden"
