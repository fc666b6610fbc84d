"""Instance keys, cookie suffix and the packing of organization permissions into session claims."""

from __future__ import annotations

import pytest

from gateway.emulator.claims import OrganizationClaims, pack_permissions, session_claims
from gateway.emulator.instance_keys import cookie_suffix, publishable_key
from gateway.emulator.seed import SeedError, load_seed, parse_seed
from tests.emulator.support import b64decode_unpadded, unpack_org_permissions

PROTOCOL_FAPI_HOST = "clerk.inspired.puma-74.lcl.dev"


@pytest.mark.parametrize(
    ("production", "expected_key", "expected_suffix"),
    [
        (False, "pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA", "vWCgMp3A"),
        (True, "pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA", "MqCvchyS"),
    ],
)
def test_publishable_key_and_suffix_match_protocol_examples(
    production: bool, expected_key: str, expected_suffix: str
) -> None:
    key = publishable_key(PROTOCOL_FAPI_HOST, production=production)
    assert key == expected_key
    assert cookie_suffix(key) == expected_suffix


def test_publishable_key_is_valid_by_protocol_rule() -> None:
    key = publishable_key("127.0.0.1:4500", production=False)
    parts = key.split("_")
    decoded = b64decode_unpadded(parts[2]).decode()
    assert len(parts) == 3 and not key.endswith("=")
    assert decoded == "127.0.0.1:4500$" and decoded.count("$") == 1 and "." in decoded


@pytest.mark.parametrize("host", ["localhost:4500", "bad$host.test"])
def test_publishable_key_rejects_hosts_the_protocol_would_reject(host: str) -> None:
    with pytest.raises(ValueError, match="must contain"):
        publishable_key(host, production=False)


@pytest.mark.parametrize(
    "permissions",
    [
        ("org:invoices:read",),
        ("org:invoices:read", "org:invoices:write", "org:sys_memberships:manage", "org:sys_memberships:read"),
        ("org:a:x", "org:b:y", "org:c:x", "org:c:y", "org:c:z"),
    ],
)
def test_org_permissions_round_trip_through_fea_per_fpm(permissions: tuple[str, ...]) -> None:
    claims = session_claims(
        issuer="https://clerk.example.test",
        user_id="user_1",
        session_id="sess_1",
        authorized_party="https://app.example.test",
        issued_at=1_000,
        lifetime=60,
        factor_verification_age_minutes=0,
        organization=OrganizationClaims("org_1", "acme", "org:admin", permissions),
    )
    assert sorted(unpack_org_permissions(claims)) == sorted(permissions)
    assert claims["o"]["rol"] == "admin"
    assert (claims["nbf"], claims["exp"], claims["v"], claims["sts"]) == (990, 1_060, 2, "active")


def test_org_without_permissions_has_no_fea_claim() -> None:
    assert pack_permissions(()) == ([], [], [])
    claims = session_claims(
        issuer="i",
        user_id="u",
        session_id="s",
        authorized_party=None,
        issued_at=0,
        lifetime=60,
        factor_verification_age_minutes=0,
        organization=OrganizationClaims("org_1", "acme", "org:member", ()),
    )
    assert "fea" not in claims and "azp" not in claims and claims["o"]["per"] == ""


def test_default_seed_has_two_users_and_one_organization() -> None:
    seed = load_seed()
    assert [u.email for u in seed.users] == ["alice@example.com", "bob@example.com"]
    assert [o.slug for o in seed.organizations] == ["acme"]
    alice = seed.membership("user_alice", "org_acme")
    assert alice is not None and alice.role == "org:admin" and "org:invoices:write" in alice.permissions


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"users": [{"id": "u", "email": "e@x"}]}, "password"),
        ({"memberships": [{"user": "nobody", "organization": "o", "role": "admin"}]}, "unknown user"),
        (
            {"users": [{"id": "u", "email": "e@x", "password": "p"}, {"id": "u", "email": "f@x", "password": "p"}]},
            "duplicate user id",
        ),
        ({"roles": {"org:x": {"permissions": "org:a:b"}}}, "list of strings"),
    ],
)
def test_bad_seed_is_rejected_with_a_message_naming_the_entry(data: dict[str, object], message: str) -> None:
    with pytest.raises(SeedError, match=message):
        parse_seed(data)
