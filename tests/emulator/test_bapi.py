"""Backend API: secret-key auth, users, organizations, sessions, clients and session refresh."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.emulator.conftest import APP_ORIGIN
from tests.emulator.flows import bapi_headers, dev_sign_in, jwks, mint_token, prod_sign_in
from tests.emulator.support import Browser, OpenAPISpec, SetCookie, client_schema_validator, verify_with_jwks


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk_test_wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "other-scheme", "empty"],
)
def test_wrong_or_missing_secret_key_is_401_clerk_key_invalid(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec, headers: dict[str, str]
) -> None:
    response = http.get(f"{dev_emulator.bapi_url}/v1/users/user_alice", headers=headers)
    assert response.status_code == 401
    body = bapi_openapi.validate_response("/users/{user_id}", "get", response)
    assert body["errors"][0]["code"] == "clerk_key_invalid"


def test_jwks_users_and_organizations_follow_the_spec(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec
) -> None:
    base, headers = dev_emulator.bapi_url, bapi_headers(dev_emulator)
    key_set = bapi_openapi.validate_response("/jwks", "get", http.get(f"{base}/v1/jwks", headers=headers))
    assert key_set["keys"][0]["kid"] == dev_emulator.signing_key.kid
    users = bapi_openapi.validate_response("/users", "get", http.get(f"{base}/v1/users", headers=headers))
    assert [u["id"] for u in users] == ["user_alice", "user_bob"]
    filtered = http.get(f"{base}/v1/users", params={"email_address": "bob@example.com"}, headers=headers).json()
    assert [u["id"] for u in filtered] == ["user_bob"]
    user = bapi_openapi.validate_response(
        "/users/{user_id}", "get", http.get(f"{base}/v1/users/user_alice", headers=headers)
    )
    assert user["email_addresses"][0]["email_address"] == "alice@example.com"
    org = http.get(f"{base}/v1/organizations/acme", headers=headers)
    assert bapi_openapi.validate_response("/organizations/{organization_id}", "get", org)["id"] == "org_acme"
    members = http.get(f"{base}/v1/organizations/org_acme/memberships", headers=headers)
    body = bapi_openapi.validate_response("/organizations/{organization_id}/memberships", "get", members)
    assert body["total_count"] == 2
    assert {(m["public_user_data"]["user_id"], m["role"]) for m in body["data"]} == {
        ("user_alice", "org:admin"),
        ("user_bob", "org:member"),
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/users/user_nobody", 404),
        ("/v1/organizations/nope", 404),
        ("/v1/organizations/nope/memberships", 404),
        ("/v1/sessions/sess_nope", 404),
        ("/v1/clients/client_nope", 404),
        ("/v1/users?limit=0", 400),
        ("/v1/users?limit=abc", 400),
        ("/v1/organizations/org_acme/memberships?offset=-1", 400),
    ],
)
def test_unknown_ids_and_bad_pagination_are_4xx_envelopes(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec, path: str, status: int
) -> None:
    response = http.get(f"{dev_emulator.bapi_url}{path}", headers=bapi_headers(dev_emulator))
    assert response.status_code == status
    bapi_openapi.validate_component("ClerkErrors", response.json())


def test_session_and_client_lookups_follow_the_spec_and_client_schema(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec
) -> None:
    _, signed_in = dev_sign_in(dev_emulator, http)
    session_id = signed_in["response"]["created_session_id"]
    headers = bapi_headers(dev_emulator)
    session = http.get(f"{dev_emulator.bapi_url}/v1/sessions/{session_id}", headers=headers)
    body = bapi_openapi.validate_response("/sessions/{session_id}", "get", session)
    assert body["status"] == "active" and body["user_id"] == "user_alice"
    client = http.get(f"{dev_emulator.bapi_url}/v1/clients/{body['client_id']}", headers=headers)
    client_body = bapi_openapi.validate_response("/clients/{client_id}", "get", client)
    client_schema_validator().validate(client_body)
    assert client_body["session_ids"] == [session_id]
    revoked = http.post(f"{dev_emulator.bapi_url}/v1/sessions/{session_id}/revoke", headers=headers)
    assert bapi_openapi.validate_response("/sessions/{session_id}/revoke", "post", revoked)["status"] == "revoked"


# -- refresh ---------------------------------------------------------------------------------------


def refresh(
    server: EmulatorServer, http: httpx.Client, session_id: str, suffixed: bool = True, **body: Any
) -> httpx.Response:
    return http.post(
        f"{server.bapi_url}/v1/sessions/{session_id}/refresh",
        params={"suffixed_cookies": "true" if suffixed else "false"},
        json={"format": "cookie", "request_origin": APP_ORIGIN, "request_headers": {"accept": ["text/html"]}, **body},
        headers={**bapi_headers(server), "Clerk-API-Version": "2026-05-12"},
    )


def signed_in_prod(server: EmulatorServer, http: httpx.Client) -> tuple[str, str, str]:
    """(session id, a session token, the refresh token) as the app's cookies would hold them."""
    browser = Browser(http)
    session_id = prod_sign_in(server, browser)["response"]["created_session_id"]
    token = http.post(
        f"{server.fapi_url}/v1/client/sessions/{session_id}/tokens",
        headers={"Cookie": f"__client={browser.jars[next(iter(browser.jars))]['__client']}"},
    ).json()["jwt"]
    session = server.state.session(session_id)
    assert session is not None
    return session_id, token, session.refresh_token


@pytest.mark.parametrize(("suffixed", "names"), [(True, ["__session_{s}", "__session"]), (False, ["__session"])])
def test_refresh_answers_cookies_with_a_fresh_token(
    prod_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec, suffixed: bool, names: list[str]
) -> None:
    session_id, token, refresh_token = signed_in_prod(prod_emulator, http)
    before = prod_emulator.state.refresh_calls
    response = refresh(prod_emulator, http, session_id, suffixed, expired_token=token, refresh_token=refresh_token)
    body = bapi_openapi.validate_response("/sessions/{session_id}/refresh", "post", response)
    assert body["object"] == "cookies"
    cookies = [SetCookie.parse(c) for c in body["cookies"]]
    assert [c.name for c in cookies] == [n.format(s=prod_emulator.cookie_suffix) for n in names]
    assert body["cookies"][0].endswith("; Path=/; Secure; SameSite=Lax")
    claims = verify_with_jwks(cookies[0].value, jwks(prod_emulator, http))
    assert claims["sid"] == session_id and claims["azp"] == APP_ORIGIN
    assert prod_emulator.state.refresh_calls == before + 1


def test_refresh_accepts_an_expired_token(start_emulator: Any, http: httpx.Client) -> None:
    clock = FakeClock(time.time() - 7200)  # moved forward below, still in the past for PyJWT's iat check
    server = start_emulator(production=True, clock=clock, token_lifetime=5)
    session_id, token, refresh_token = signed_in_prod(server, http)
    clock.advance(3600)
    response = refresh(server, http, session_id, expired_token=token, refresh_token=refresh_token)
    assert response.status_code == 200
    claims = verify_with_jwks(
        SetCookie.parse(response.json()["cookies"][0]).value, jwks(server, http), verify_exp=False
    )
    assert claims["iat"] == int(clock()) and claims["exp"] == claims["iat"] + 5


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("revoked", 401, "session_revoked"),
        ("ended", 401, "session_ended"),
        ("wrong-refresh-token", 401, "refresh_token_invalid"),
        ("garbage-token", 401, "expired_token_invalid"),
        ("other-session-token", 401, "expired_token_invalid"),
        ("missing-refresh-token", 400, "form_param_missing"),
        ("unknown-session", 404, "resource_not_found"),
        ("bad-format", 400, "form_param_format_invalid"),
    ],
)
def test_refresh_failures_use_clerk_errors(
    prod_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec, case: str, status: int, code: str
) -> None:
    session_id, token, refresh_token = signed_in_prod(prod_emulator, http)
    body: dict[str, Any] = {"expired_token": token, "refresh_token": refresh_token}
    session = prod_emulator.state.session(session_id)
    assert session is not None
    if case in ("revoked", "ended"):
        prod_emulator.state.end_session(session, case)
    elif case == "wrong-refresh-token":
        body["refresh_token"] = "nope"
    elif case == "garbage-token":
        body["expired_token"] = "not.a.jwt"
    elif case == "other-session-token":
        body["expired_token"] = signed_in_prod(prod_emulator, http)[1]
    elif case == "missing-refresh-token":
        del body["refresh_token"]
    elif case == "unknown-session":
        session_id = "sess_unknown"
    elif case == "bad-format":
        body["format"] = "xml"
    response = refresh(prod_emulator, http, session_id, **body)
    assert response.status_code == status
    bapi_openapi.validate_component("ClerkErrors", response.json())
    assert response.json()["errors"][0]["code"] == code


def test_refresh_with_malformed_json_is_400(prod_emulator: EmulatorServer, http: httpx.Client) -> None:
    response = http.post(
        f"{prod_emulator.bapi_url}/v1/sessions/sess_x/refresh",
        content=b"{oops",
        headers={**bapi_headers(prod_emulator), "content-type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "malformed_request_body"


def test_token_lifetime_is_configurable(start_emulator: Any, http: httpx.Client) -> None:
    server = start_emulator(token_lifetime=2)
    token, signed_in = dev_sign_in(server, http)
    claims = verify_with_jwks(
        mint_token(server, http, token, signed_in["response"]["created_session_id"]), jwks(server, http)
    )
    assert claims["exp"] - claims["iat"] == 2
