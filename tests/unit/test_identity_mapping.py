"""The identity mapping: presets, templates, groups, one encoding, stripping, and the assertion's claims."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.clerk_api.identity_lookups import OrganizationProfile, UserProfile
from gateway.edge.assertion import IdentityAsserter, jwk_thumbprint
from gateway.edge.identity import ASSERTION_HEADER, IdentityHeaderWriter, every_identity_header_name
from gateway.settings import IdentityHeaders, IdentitySettings, SettingsError, load_settings, parse_identity_settings
from gateway.settings.errors import InvalidValue
from gateway.settings.identity import PRESET_HEADERS

PAYLOAD = {"sub": "user_1", "sid": "sess_1", "plan": "pro", "teams": ["red", "blue"], "level": 3}
CLAIMS = SessionClaims(
    "user_1", "sess_1", "active", "org_1", "org:admin", "acme", ("org:invoices:read", "org:invoices:write"),
    None, None, None, PAYLOAD,
)  # fmt: skip
USER = UserProfile(
    email="alice@example.com", username="alice", first_name="Alice", last_name="Admin",
    image_url="https://img.example.com/a.png", public_metadata={"department": "Platform", "floor": 4},
)  # fmt: skip
ORGANIZATION = OrganizationProfile(name="Acme Inc")
SIGNED_IN = AuthState("signed-in", token="tok", claims=CLAIMS)


def mapped(table: dict[str, Any], *, user: UserProfile | None = USER, state: AuthState = SIGNED_IN) -> dict[str, str]:
    writer = IdentityHeaderWriter(IdentityHeaders(), identity=parse_identity_settings(table))
    headers = writer.headers_for(state, user=user, organization=ORGANIZATION)
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)), names  # one line per header
    return {name.decode(): unquote(value.decode()) for name, value in headers}


# ------------------------------------------------------------------------------------------------ presets

GROUPS = "acme,org:admin,org:invoices:read,org:invoices:write"

PRESET_CASES = {
    "oauth2-proxy": {
        "x-auth-request-user": "alice@example.com",
        "x-auth-request-email": "alice@example.com",
        "x-auth-request-groups": GROUPS,
        "x-auth-request-preferred-username": "alice",
        "x-forwarded-user": "alice@example.com",
        "x-forwarded-email": "alice@example.com",
    },
    "remote-user": {
        "remote-user": "alice@example.com",
        "remote-email": "alice@example.com",
        "remote-name": "Alice Admin",
        "remote-groups": GROUPS,
    },
    "grafana": {
        "x-webauth-user": "alice@example.com",
        "x-webauth-email": "alice@example.com",
        "x-webauth-name": "Alice Admin",
    },
}


@pytest.mark.parametrize("preset", PRESET_CASES)
def test_each_preset_sends_its_documented_headers_and_nothing_else(preset: str) -> None:
    assert mapped({"presets": [preset]}) == PRESET_CASES[preset]


def test_the_presets_table_is_the_one_the_tests_document() -> None:
    documented = {name: {header.lower() for header, _ in headers} for name, headers in PRESET_HEADERS.items()}
    assert {name: set(case) for name, case in PRESET_CASES.items()} == {
        name: headers for name, headers in documented.items() if name != "clerk"
    }


def test_the_clerk_preset_is_todays_headers_and_combines_with_another() -> None:
    headers = mapped({"presets": ["clerk", "remote-user"]})
    assert headers["x-clerk-auth-status"] == "signed-in" and headers["x-clerk-user-id"] == "user_1"
    assert headers["x-clerk-org-permissions"] == "org:invoices:read,org:invoices:write"
    assert headers["remote-user"] == "alice@example.com"
    assert not any(name.startswith("x-clerk") for name in mapped({"presets": ["remote-user"]}))


@pytest.mark.parametrize(
    ("user", "expected"), [("email", "alice@example.com"), ("username", "alice"), ("user_id", "user_1")]
)
def test_the_user_header_carries_what_user_names(user: str, expected: str) -> None:
    headers = mapped({"presets": ["remote-user"], "user": user})
    assert headers["remote-user"] == expected


# ------------------------------------------------------------------------------------------------- groups


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (["org_slug", "org_role", "org_permissions"], GROUPS),
        (["org_role"], "org:admin"),
        (["org_permissions", "org_slug"], "org:invoices:read,org:invoices:write,acme"),
        ([], None),
    ],
)
def test_groups_are_the_listed_parts_comma_joined_in_order(groups: list[str], expected: str | None) -> None:
    assert mapped({"presets": ["remote-user"], "groups": groups}).get("remote-groups") == expected


def test_a_session_without_an_organization_has_no_groups_header() -> None:
    claims = SessionClaims("user_1", "sess_1", "active", None, None, None, (), None, None, None, {})
    headers = mapped({"presets": ["remote-user"]}, state=AuthState("signed-in", token="t2", claims=claims))
    assert "remote-groups" not in headers and headers["remote-user"] == "alice@example.com"


# ---------------------------------------------------------------------------------------------- templates

TEMPLATE_CASES = {
    "names": ("{first_name} {last_name}", "Alice Admin"),
    "literal text around": ("user={username};org={org_slug}", "user=alice;org=acme"),
    "escaped braces": ("{{{email}}}", "{alice@example.com}"),
    "organization name": ("{org_name}", "Acme Inc"),
    "public metadata": ("{public_metadata.department}", "Platform"),
    "a number in metadata": ("{public_metadata.floor}", "4"),
    "a custom claim": ("{claims.plan}", "pro"),
    "a list claim": ("{claims.teams}", "red,blue"),
    "a number claim": ("{claims.level}", "3"),
    "image": ("{image_url}", "https://img.example.com/a.png"),
    "full name": ("{full_name}", "Alice Admin"),
}


@pytest.mark.parametrize("case", TEMPLATE_CASES)
def test_templates_substitute_identity_fields(case: str) -> None:
    template, expected = TEMPLATE_CASES[case]
    headers = mapped({"presets": [], "public_metadata": ["department", "floor"], "headers": {"X-Out": template}})
    assert headers == {"x-out": expected}


def test_a_missing_value_renders_empty_and_an_empty_header_is_not_sent() -> None:
    table = {
        "presets": [],
        "public_metadata": ["department"],
        "headers": {
            "X-Partial": "{first_name}-{claims.absent}",
            "X-Empty": "{claims.absent} {public_metadata.department}",
        },
    }
    assert mapped(table, user=None) == {"x-partial": "-"}


def test_a_session_claim_of_a_fields_name_is_used_without_the_backend_api() -> None:
    claims = SessionClaims("user_1", "sess_1", "active", None, None, None, (), None, None, None, {"email": "c@x.io"})
    headers = mapped({"presets": ["grafana"]}, user=None, state=AuthState("signed-in", token="t3", claims=claims))
    assert headers == {"x-webauth-user": "c@x.io", "x-webauth-email": "c@x.io"}


BAD_TABLES = {
    "an unknown field": (
        {"headers": {"X-A": "{emial}"}},
        'headers."X-A": {emial}: unknown field (did you mean {email}?',
    ),
    "an unlisted metadata key": (
        {"headers": {"X-Team": "{public_metadata.team}"}},
        "headers.\"X-Team\": {public_metadata.team}: 'team' is not listed in public_metadata",
    ),
    "a format spec": ({"headers": {"X-A": "{email:>10}"}}, 'headers."X-A": {email} may not carry a conversion'),
    "an unbalanced brace": ({"headers": {"X-A": "{email"}}, 'headers."X-A": not a template'),
    "an invalid header name": ({"headers": {"X A": "{email}"}}, 'headers."X A": not a valid HTTP header name'),
    "a header the gateway owns": ({"headers": {"Host": "{email}"}}, 'headers."Host": Host is not an identity header'),
    "the assertion header": (
        {"headers": {"X-Gateway-Identity-Assertion": "{email}"}},
        'headers."X-Gateway-Identity-Assertion": ',
    ),
    "a preset's header": (
        {"presets": ["grafana"], "headers": {"x-webauth-user": "{username}"}},
        'headers."x-webauth-user": a preset already sets this header',
    ),
    "an unknown preset": ({"presets": ["shibboleth"]}, "presets: unknown preset 'shibboleth'"),
    "an unknown user source": ({"user": "name"}, "user: expected one of email, username, user_id"),
    "an unknown group part": ({"groups": ["org_name"]}, "groups: expected one of org_slug, org_role, org_permissions"),
    "a typo in a key": ({"header": {}}, "unknown key 'header' in identity (did you mean 'headers'?)"),
    "a template that is not text": ({"headers": {"X-A": 3}}, 'headers."X-A": expected a template string'),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_check_config_refuses_a_bad_mapping_naming_the_key(case: str) -> None:
    table, message = BAD_TABLES[case]
    with pytest.raises(InvalidValue) as raised:
        parse_identity_settings(table)
    assert any(item.startswith(message) for item in raised.value.messages), raised.value.messages


def test_every_problem_of_a_mapping_is_reported_at_once() -> None:
    with pytest.raises(InvalidValue) as raised:
        parse_identity_settings({"user": "nobody", "headers": {"X-A": "{a}", "X-B": "{b}"}})
    assert len(raised.value.messages) == 3


# --------------------------------------------------------------------------------------- one encoding

NON_ASCII_NAMES = {
    "accents": ("José", "Müller-Lüdenscheidt", "Jos%C3%A9 M%C3%BCller-L%C3%BCdenscheidt"),
    "CJK": ("太郎", "山田", "%E5%A4%AA%E9%83%8E %E5%B1%B1%E7%94%B0"),
    "a line break (hostile)": ("Eve\r\nX-Injected: 1", "", "Eve%0D%0AX-Injected:%201"),
    "a percent sign": ("100%", "Sure", "100%25 Sure"),
}


@pytest.mark.parametrize("case", NON_ASCII_NAMES)
def test_names_travel_as_one_ascii_line_that_url_decodes_back(case: str) -> None:
    first, last, wire = NON_ASCII_NAMES[case]
    user = UserProfile(email="e@x.io", first_name=first, last_name=last or None)
    writer = IdentityHeaderWriter(IdentityHeaders(), identity=parse_identity_settings({"presets": ["remote-user"]}))
    headers = dict(writer.headers_for(AuthState("signed-in", token=case, claims=CLAIMS), user=user))
    value = headers[b"remote-name"]
    assert value.decode("ascii").isprintable() and b"\r" not in value and b"\n" not in value
    assert value.decode().replace(" ", "%20") == wire.replace(" ", "%20")
    assert unquote(value.decode()) == " ".join(item for item in (first, last) if item)


# ------------------------------------------------------------------------------------------- stripping


def test_every_presets_names_and_the_custom_ones_are_stripped_in_both_spellings_whatever_the_preset() -> None:
    identity = parse_identity_settings({"presets": ["clerk"], "headers": {"X-Team": "{org_slug}"}})
    writer = IdentityHeaderWriter(IdentityHeaders(user_id="X-User"), identity=identity, also_strip=("X-Other-App",))
    expected = {header for headers in PRESET_HEADERS.values() for header, _ in headers} | {
        "X-Team",
        "X-Other-App",
        "X-User",
        "X-Clerk-User-Id",
        "X-Clerk-Auth-Status",
        ASSERTION_HEADER,
    }
    for name in expected:
        lowered = name.lower()
        assert lowered.encode() in writer.strip, name
        assert lowered.replace("-", "_").encode() in writer.strip, name


def test_every_identity_header_name_covers_every_apps_custom_headers() -> None:
    apps = [
        parse_identity_settings({"headers": {"X-A": "{email}"}}),
        parse_identity_settings({"headers": {"X-B": "{email}"}}),
    ]
    names = every_identity_header_name(apps)
    assert {"X-A", "X-B", "Remote-User", "X-WEBAUTH-USER", "X-Forwarded-Email", ASSERTION_HEADER} <= set(names)


# -------------------------------------------------------------------------------------------- hot path


def test_a_signed_in_tokens_headers_are_built_once_while_its_profiles_stay_the_same() -> None:
    writer = IdentityHeaderWriter(IdentityHeaders(), identity=parse_identity_settings({"presets": ["remote-user"]}))
    first = writer.headers_for(SIGNED_IN, user=USER)
    again = writer.headers_for(SIGNED_IN, user=USER)
    assert again == first and again is not first  # a copy: a caller may extend it
    assert writer._by_token["tok"].headers is writer._by_token["tok"].headers
    changed = writer.headers_for(SIGNED_IN, user=UserProfile(email="new@example.com"))
    assert (b"remote-user", b"new@example.com") in changed


# ------------------------------------------------------------------------------------------- assertion


def test_the_assertion_carries_the_mapped_identity_and_the_audience() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    asserter = IdentityAsserter(key)
    identity = parse_identity_settings(
        {
            "presets": ["remote-user"],
            "public_metadata": ["department"],
            "headers": {"X-Team": "{public_metadata.department}"},
        }
    )
    writer = IdentityHeaderWriter(IdentityHeaders(), asserter, identity=identity, audience="tools")
    headers = dict(writer.headers_for(SIGNED_IN, user=USER, organization=ORGANIZATION))
    token = headers[ASSERTION_HEADER.lower().encode()].decode()
    public = jwt.PyJWK(asserter.jwks()["keys"][0]).key
    claims = jwt.decode(token, public, algorithms=["ES256"], audience="tools", options={"verify_exp": False})
    assert {name: claims[name] for name in ("sub", "sid", "aud", "email", "full_name", "user", "groups")} == {
        "sub": "user_1",
        "sid": "sess_1",
        "aud": "tools",
        "email": "alice@example.com",
        "full_name": "Alice Admin",
        "user": "alice@example.com",
        "groups": GROUPS.split(","),
    }
    assert claims["public_metadata"] == {"department": "Platform"}
    assert "username" not in claims  # only what the mapping has
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, public, algorithms=["ES256"], audience="another-app", options={"verify_exp": False})


def test_previous_keys_are_published_by_their_rfc7638_thumbprint_and_never_sign() -> None:
    current, old = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
    )
    asserter = IdentityAsserter(current, previous_keys=[old, current])
    published = asserter.jwks()["keys"]
    assert [key["kid"] for key in published] == [jwk_thumbprint(key) for key in published]
    assert len(published) == 2 and published[0]["kid"] == asserter.kid and published[1]["alg"] == "ES256"
    token = asserter.sign({"sub": "user_1"}, None)
    assert jwt.get_unverified_header(token)["kid"] == published[0]["kid"]


def test_the_thumbprint_is_rfc7638s_example() -> None:
    # RFC 7638 §3.1
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV"
        "4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0z"
        "gdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
        "Cur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_identity_settings_default_is_todays_clerk_headers() -> None:
    assert parse_identity_settings({}) == IdentitySettings()
    assert IdentitySettings().presets == ("clerk",)


def test_the_readme_documents_every_presets_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for preset, headers in PRESET_HEADERS.items():
        assert f"| `{preset}` |" in readme, preset
        for header, field in headers:
            assert f"| `{header}` | `{field}` |" in readme, (preset, header)


# ------------------------------------------------------------------------------------------ check-config

KEYS = {"CLERK_PUBLISHABLE_KEY": "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k", "CLERK_SECRET_KEY": "sk_test_" + "x" * 24}


def problems_of(tmp_path: Path, toml: str, **environment: str) -> tuple[str, ...]:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    try:
        load_settings(path, {**KEYS, **environment})
    except SettingsError as error:
        return error.problems
    return ()


def test_the_toml_identity_table_loads_and_bad_entries_are_named_by_their_key(tmp_path: Path) -> None:
    good = '[gateway.identity]\npresets = ["remote-user"]\n[gateway.identity.headers]\n"X-Team" = "{org_slug}"\n'
    assert problems_of(tmp_path, good) == ()
    bad = '[gateway.identity]\npublic_metadata = []\n[gateway.identity.headers]\n"X-Team" = "{public_metadata.t}"\n'
    assert problems_of(tmp_path, bad) == (
        "GATEWAY_IDENTITY: headers.\"X-Team\": {public_metadata.t}: 't' is not listed in public_metadata",
    )


def test_a_custom_header_may_not_overwrite_a_clerk_preset_header_as_renamed(tmp_path: Path) -> None:
    toml = '[gateway.identity_headers]\nuser_id = "X-User"\n[gateway.identity.headers]\n"x-user" = "{email}"\n'
    assert problems_of(tmp_path, toml) == (
        'GATEWAY_IDENTITY: headers."x-user": already set by the clerk preset (see identity_headers)',
    )


def test_previous_assertion_keys_need_a_current_one(tmp_path: Path) -> None:
    key = tmp_path / "old.pem"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key.write_bytes(pem)
    assert problems_of(tmp_path, "", GATEWAY_ASSERTION_PREVIOUS_KEYS=str(key)) == (
        "GATEWAY_ASSERTION_PREVIOUS_KEYS: set GATEWAY_ASSERTION_KEY too (the previous keys never sign)",
    )
