"""What the app receives for a machine token: headers (encoded as every identity value) and the assertion."""

from __future__ import annotations

import json
from urllib.parse import unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.clerk.decide import AuthState
from gateway.clerk.machine import MachineIdentity
from gateway.edge.assertion import IdentityAsserter
from gateway.edge.identity import ASSERTION_HEADER, IdentityHeaderWriter, spoofable_names
from gateway.settings import IdentityHeaders

API_KEY = MachineIdentity("api_key", "ak_1", "org_1", scopes=("read", "write"), claims={"tier": "gold ★"},
                          name="nightly export")
M2M = MachineIdentity("m2m_token", "mt_1", "mch_1", scopes=("mch_2",), claims={"job": "x"})
OAUTH = MachineIdentity("oauth_token", "oat_1", "user_1", scopes=("email",), client_id="client_1")


def headers_of(machine: MachineIdentity, writer: IdentityHeaderWriter | None = None) -> dict[bytes, bytes]:
    writer = writer or IdentityHeaderWriter(IdentityHeaders())
    return dict(writer.headers_for(AuthState("signed-in", token=f"token-{machine.id}", machine=machine)))


def test_an_api_key_of_an_organization() -> None:
    headers = headers_of(API_KEY)
    assert {name: value for name, value in headers.items() if name != b"x-clerk-api-key-claims"} == {
        b"x-clerk-auth-status": b"signed-in",
        b"x-clerk-token-type": b"api_key",
        b"x-clerk-token-id": b"ak_1",
        b"x-clerk-org-id": b"org_1",
        b"x-clerk-api-key-name": b"nightly export",
        b"x-clerk-scopes": b"read,write",
    }
    assert json.loads(unquote(headers[b"x-clerk-api-key-claims"].decode())) == {"tier": "gold ★"}


def test_an_m2m_token_names_its_machine_and_an_oauth_token_its_user_and_client() -> None:
    assert headers_of(M2M) == {
        b"x-clerk-auth-status": b"signed-in", b"x-clerk-token-type": b"m2m_token", b"x-clerk-token-id": b"mt_1",
        b"x-clerk-machine-id": b"mch_1", b"x-clerk-scopes": b"mch_2",
    }  # fmt: skip
    assert headers_of(OAUTH) == {
        b"x-clerk-auth-status": b"signed-in", b"x-clerk-token-type": b"oauth_token", b"x-clerk-token-id": b"oat_1",
        b"x-clerk-user-id": b"user_1", b"x-clerk-oauth-client-id": b"client_1", b"x-clerk-scopes": b"email",
    }  # fmt: skip


def test_machine_header_names_are_configurable_and_stripped_in_both_spellings() -> None:
    names = IdentityHeaders(token_type="X-Kind", scopes="X-Grants")
    headers = headers_of(M2M, IdentityHeaderWriter(names))
    assert headers[b"x-kind"] == b"m2m_token" and headers[b"x-grants"] == b"mch_2"
    stripped = spoofable_names(names)
    for name in (b"x-kind", b"x_kind", b"x-grants", b"x-clerk-machine-id", b"x_clerk_api_key_claims",
                 b"x-clerk-oauth-client-id", b"x-clerk-token-id"):
        assert name in stripped


def test_the_assertion_carries_the_machine_identity() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    asserter = IdentityAsserter(key, clock=lambda: 1_800_000_000)
    headers = headers_of(API_KEY, IdentityHeaderWriter(IdentityHeaders(), asserter))
    claims = jwt.decode(headers[ASSERTION_HEADER.lower().encode()], key.public_key(), algorithms=["ES256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["sub"] == "org_1" and claims["token_type"] == "api_key" and claims["org_id"] == "org_1"
    assert claims["scopes"] == ["read", "write"] and claims["name"] == "nightly export"
    assert claims["claims"] == {"tier": "gold ★"} and claims["exp"] - claims["iat"] == 60
