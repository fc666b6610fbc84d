"""Identity headers for the app, spoof removal, and the signed identity assertion."""

from __future__ import annotations

from urllib.parse import unquote

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.edge.assertion import IdentityAsserter
from gateway.edge.identity import ASSERTION_HEADER, IdentityHeaderWriter, encode_identity_value, spoofable_names
from gateway.settings import IdentityHeaders

CLAIMS = SessionClaims("user_1", "sess_1", "active", "org_1", "org:admin", "acme", ("org:a:read", "org:a:write"),
                       None, None, None)


def test_signed_in_identity_headers() -> None:
    writer = IdentityHeaderWriter(IdentityHeaders())
    headers = dict(writer.headers_for(AuthState("signed-in", token="t", claims=CLAIMS)))
    assert headers == {
        b"x-clerk-auth-status": b"signed-in",
        b"x-clerk-user-id": b"user_1",
        b"x-clerk-session-id": b"sess_1",
        b"x-clerk-org-id": b"org_1",
        b"x-clerk-org-role": b"org:admin",
        b"x-clerk-org-slug": b"acme",
        b"x-clerk-org-permissions": b"org:a:read,org:a:write",
    }


def test_signed_out_identity_headers_carry_only_status_and_reason() -> None:
    writer = IdentityHeaderWriter(IdentityHeaders())
    headers = writer.headers_for(AuthState("signed-out", "session-token-and-uat-missing"))
    assert headers == [(b"x-clerk-auth-status", b"signed-out"),
                       (b"x-clerk-auth-reason", b"session-token-and-uat-missing")]


def test_a_pending_session_is_signed_out_to_the_app_unless_a_rule_lets_it_in() -> None:
    writer = IdentityHeaderWriter(IdentityHeaders())
    pending = AuthState("signed-in", token="t", claims=SessionClaims("user_1", "sess_1", "pending", None, None,
                                                                     None, (), None, None, None))  # fmt: skip
    assert writer.headers_for(pending) == [(b"x-clerk-auth-status", b"signed-out"),
                                           (b"x-clerk-auth-reason", b"session-pending")]  # fmt: skip
    let_in = dict(writer.headers_for(pending, pending_signed_in=True))
    assert let_in == {
        b"x-clerk-auth-status": b"signed-in",
        b"x-clerk-auth-reason": b"session-pending",
        b"x-clerk-user-id": b"user_1",
        b"x-clerk-session-id": b"sess_1",
    }
    assert writer.headers_for(pending)[0] == (b"x-clerk-auth-status", b"signed-out")  # nothing cached across


def test_renamed_headers_are_used_and_both_spellings_are_stripped() -> None:
    names = IdentityHeaders(user_id="X-User")
    writer = IdentityHeaderWriter(names)
    assert (b"x-user", b"user_1") in writer.headers_for(AuthState("signed-in", token="t", claims=CLAIMS))
    stripped = spoofable_names(names)
    assert {b"x-user", b"x_user", b"x-clerk-org-role", b"x_clerk_org_role",
            ASSERTION_HEADER.lower().encode()} <= stripped


def test_identity_assertion_is_a_short_lived_jwt_verifiable_with_the_gateway_jwks() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = 1_800_000_000
    asserter = IdentityAsserter(key, clock=lambda: now)
    writer = IdentityHeaderWriter(IdentityHeaders(), asserter)
    headers = dict(writer.headers_for(AuthState("signed-in", token="tok", claims=CLAIMS)))
    assertion = headers[ASSERTION_HEADER.lower().encode()].decode()
    jwk = asserter.jwks()["keys"][0]
    public = jwt.PyJWK(jwk).key
    claims = jwt.decode(assertion, public, algorithms=["ES256"], options={"verify_exp": False, "verify_iat": False})
    assert (claims["sub"], claims["org_role"], claims["exp"] - claims["iat"]) == ("user_1", "org:admin", 60)
    again = dict(writer.headers_for(AuthState("signed-in", token="tok", claims=CLAIMS)))
    assert again[ASSERTION_HEADER.lower().encode()].decode() == assertion  # one signature per token


# ----------------------------------------------------------------------------------- one encoding of values

HOSTILE_SLUGS = {
    "an emoji": "acme 😀",
    "a line separator": "a\u2028b",
    "NUL": "a\x00b",
    "a vertical tab": "a\x0bb",
    "DEL": "a\x7fb",
    "CR LF": "a\r\nX-Injected: 1",
    "a percent sign": "100%",
    "an outer space": " acme ",
    "non-ASCII letters": "café",
    "a lone surrogate (JSON allows it)": "a\ud800b",
}


@pytest.mark.parametrize("name", HOSTILE_SLUGS)
def test_every_identity_value_is_one_printable_ascii_line_that_decodes_back(name: str) -> None:
    value = HOSTILE_SLUGS[name]
    claims = SessionClaims("user_1", "sess_1", "active", "org_1", "org:admin", value, (value,), None, None, None)
    writer = IdentityHeaderWriter(IdentityHeaders())
    headers = dict(writer.headers_for(AuthState("signed-in", token=name, claims=claims)))
    for encoded in (headers[b"x-clerk-org-slug"], headers[b"x-clerk-org-permissions"]):
        assert all(0x21 <= byte < 0x7F for byte in encoded.strip()) and encoded == encoded.strip(), name
        assert unquote(encoded.decode("ascii"), errors="surrogatepass") == value, name


@given(st.text(max_size=40))
def test_plain_values_travel_as_they_are_and_any_value_round_trips(value: str) -> None:
    encoded = encode_identity_value(value)
    assert encoded.isascii() and b"\r" not in encoded and b"\n" not in encoded and b"\x00" not in encoded
    if value.isascii() and value.isprintable() and "%" not in value and value == value.strip(" "):
        assert encoded == value.encode("ascii")
    else:
        assert unquote(encoded.decode("ascii"), errors="surrogatepass") == value
