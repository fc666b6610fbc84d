"""Claims after verification (PROTOCOL.md §7.2): v1 flat organization claims, v2 `o` object and
`fea`/`per`/`fpm` permissions, malformed claims (row D15a, after D15) and pending sessions (row D16)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.clerk.claims import ClaimsError, parse_claims
from gateway.clerk.options import OrganizationSyncOptions
from tests.support.clerk import IAT, PK_LIVE, SESSION_ID, USER_ID, claims, options, request, run, session_token


def v2(fea: Any = None, **org: Any) -> dict[str, Any]:
    payload = claims(v=2, o={"id": "org_1", "slg": "acme", "rol": "admin", **org})
    if fea is not None:
        payload["fea"] = fea
    return payload


def test_v1_flat_organization_claims() -> None:
    parsed = parse_claims(claims(org_id="org_1", org_role="org:admin", org_slug="acme",
                                 org_permissions=["org:reports:read", "org:billing:manage"]))
    assert (parsed.org_id, parsed.org_role, parsed.org_slug, parsed.org_permissions) == (
        "org_1", "org:admin", "acme", ("org:reports:read", "org:billing:manage"))


def test_identity_claims() -> None:
    parsed = parse_claims(claims(sts="active", fva=[3, -1], act={"sub": "user_admin"}))
    assert (parsed.user_id, parsed.session_id, parsed.session_status, parsed.factor_verification_age,
            parsed.actor, parsed.is_pending) == (USER_ID, SESSION_ID, "active", (3, -1), {"sub": "user_admin"}, False)
    assert parse_claims(claims()).session_status is None
    assert parse_claims(claims()).factor_verification_age is None


def test_v2_organization_object() -> None:
    parsed = parse_claims(v2())
    assert (parsed.org_id, parsed.org_slug, parsed.org_role, parsed.org_permissions) == (
        "org_1", "acme", "org:admin", ())


def test_v2_is_ignored_without_v_2() -> None:
    parsed = parse_claims(claims(o={"id": "org_1", "rol": "admin"}, org_id="org_flat"))
    assert parsed.org_id == "org_flat"


PERMISSIONS = [
    ("lsb-first-per-org-feature",
     "o:reports,o:billing", "read,manage,delete", "5,2",
     ("org:reports:read", "org:reports:delete", "org:billing:manage")),
    ("ou-and-uo-are-org-features-u-is-ignored",
     "u:profile,o:reports,ou:billing,uo:members", "read,manage", "3,1,2",
     ("org:reports:read", "org:reports:manage", "org:billing:read", "org:members:manage")),
    ("elements-and-entries-are-trimmed",
     " o:reports , o:billing ", " read , manage ", " 2 , 1 ",
     ("org:reports:manage", "org:billing:read")),
    ("scope-is-text-before-first-colon",
     "o:a:b", "read", "1", ("org:a:b:read",)),
    ("big-integer-mask",
     "o:wide", ",".join(f"p{i}" for i in range(70)), str((1 << 69) | 1), ("org:wide:p0", "org:wide:p69")),
    ("non-digit-fpm-entry-grants-nothing",
     "o:reports,o:billing", "read,manage", "x3,3", ("org:billing:read", "org:billing:manage")),
    ("negative-fpm-entry-grants-nothing",
     "o:reports", "read", "-1", ()),
    ("fewer-masks-than-features",
     "o:reports,o:billing", "read", "1", ("org:reports:read",)),
    ("zero-mask", "o:reports", "read,manage", "0", ()),
    ("missing-per", "o:reports", None, "1", ()),
    ("missing-fpm", "o:reports", "read", None, ()),
    ("missing-fea", None, "read", "1", ()),
]


@pytest.mark.parametrize(("fea", "per", "fpm", "expected"), [row[1:] for row in PERMISSIONS],
                         ids=[row[0] for row in PERMISSIONS])
def test_v2_permissions_from_fea_per_fpm(fea: Any, per: Any, fpm: Any, expected: tuple[str, ...]) -> None:
    org: dict[str, Any] = {}
    if per is not None:
        org["per"] = per
    if fpm is not None:
        org["fpm"] = fpm
    assert parse_claims(v2(fea, **org)).org_permissions == expected


MALFORMED = [
    ("fea-element-without-colon", {"fea": "o:reports,billing"}, {"per": "read", "fpm": "1"}),
    ("fea-trailing-comma", {"fea": "o:reports,"}, {"per": "read", "fpm": "1"}),
    ("fea-only-user-features-still-checked", {"fea": "u:a,,u:b"}, {}),
    ("fea-non-string", {"fea": ["o:reports"]}, {"per": "read", "fpm": "1"}),
    ("fea-number", {"fea": 7}, {}),
    ("per-non-string", {"fea": "o:reports"}, {"per": ["read"], "fpm": "1"}),
    ("fpm-non-string", {"fea": "o:reports"}, {"per": "read", "fpm": 1}),
    # `o: {}` is truthy in JavaScript: the v2 parse (and its `fea` check) runs.
    ("empty-o-object-is-truthy", {"fea": "broken", "o": {}}, None),
]


def _malformed_payload(top: dict[str, Any], org: dict[str, Any] | None) -> dict[str, Any]:
    if org is None:
        return claims(v=2, **top)
    payload = v2(**org)
    payload.update(top)
    return payload


@pytest.mark.parametrize(("top", "org"), [row[1:] for row in MALFORMED], ids=[row[0] for row in MALFORMED])
def test_malformed_v2_claims_fail_to_parse(top: dict[str, Any], org: dict[str, Any] | None) -> None:
    with pytest.raises(ClaimsError):
        parse_claims(_malformed_payload(top, org))


def test_malformed_fea_is_not_parsed_without_o() -> None:
    parsed = parse_claims(claims(v=2, fea="broken"))
    assert (parsed.org_id, parsed.org_permissions) == (None, ())


def _cookie_state(token: str, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", {})
    url = kwargs.pop("url", "https://primary.com/dashboard")
    return run(request(url, cookies={"__client_uat": str(IAT - 10), "__session": token},
                       headers={"host": "primary.com", **headers}), options(PK_LIVE, **kwargs.pop("opts", {})))


@pytest.mark.parametrize(("top", "org"), [row[1:] for row in MALFORMED], ids=[row[0] for row in MALFORMED])
def test_malformed_claims_on_cookie_path_are_unexpected_error_with_empty_message(
    top: dict[str, Any], org: dict[str, Any] | None
) -> None:
    state = _cookie_state(session_token(**{k: v for k, v in _malformed_payload(top, org).items() if k in
                                           ("v", "o", "fea")}))
    assert (state.status, state.reason, state.message) == ("signed-out", "unexpected-error", "")
    assert state.header("x-clerk-auth-status") == "signed-out"
    assert state.header("x-clerk-auth-reason") == "unexpected-error"
    assert state.header("x-clerk-auth-message") is None
    assert state.location is None and state.set_cookies == []


def test_malformed_claims_on_header_path_stay_signed_in() -> None:
    # Row D15a: "cookie path only; the header path B2 does not parse claims and stays signed-in".
    token = session_token(v=2, o={"id": "org_1", "per": "read", "fpm": "1"}, fea="o:reports,")
    state = run(request(headers={"authorization": f"Bearer {token}"}))
    assert (state.status, state.reason, state.message, state.headers) == ("signed-in", "", "", ())
    assert state.token == token


def test_cross_origin_navigation_is_checked_before_claims_are_parsed() -> None:
    token = session_token(v=2, o={"id": "org_1", "per": "read", "fpm": "1"}, fea="o:reports,")
    state = _cookie_state(token, headers={"referer": "https://satellite.com/signin"})
    assert (state.status, state.reason, state.message) == (
        "handshake", "primary-domain-cross-origin-sync", "Cross-origin request from satellite domain requires handshake"
    )
    assert state.header("x-clerk-auth-message") == state.message
    assert state.header("cache-control") == "no-store"
    assert state.set_cookies == ["__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"]


ORG_SYNC = {"organization_sync": OrganizationSyncOptions(("/orgs/:slug",), ("/me",))}


def test_pending_session_skips_organization_sync() -> None:
    state = _cookie_state(session_token(sts="pending"), url="https://primary.com/orgs/acme", opts=ORG_SYNC)
    assert (state.status, state.reason, state.headers) == ("signed-in", "", ())
    assert state.claims is not None and state.claims.is_pending


def test_active_session_on_another_org_path_needs_a_switch() -> None:
    state = _cookie_state(session_token(sts="active"), url="https://primary.com/orgs/acme", opts=ORG_SYNC)
    assert (state.status, state.reason, state.message) == ("handshake", "active-organization-mismatch", "")
    assert state.location is not None and state.location.endswith("&organization_id=acme")


def test_v2_slug_matching_the_path_needs_no_switch() -> None:
    state = _cookie_state(session_token(v=2, o={"id": "org_1", "slg": "acme", "rol": "admin"}),
                          url="https://primary.com/orgs/acme", opts=ORG_SYNC)
    assert (state.status, state.reason) == ("signed-in", "")
    assert state.claims is not None and (state.claims.org_slug, state.claims.org_role) == ("acme", "org:admin")


def test_personal_account_path_with_active_org_needs_a_switch() -> None:
    state = _cookie_state(session_token(org_id="org_1"), url="https://primary.com/me", opts=ORG_SYNC)
    assert (state.status, state.reason) == ("handshake", "active-organization-mismatch")
    assert state.location is not None and state.location.endswith("&organization_id=")
