"""Frontend API: environment, client, sign-in, sessions and token minting (development instance)."""

from __future__ import annotations

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from tests.emulator.flows import bapi_headers, dev_sign_in, jwks, mint_token, new_dev_browser
from tests.emulator.support import (
    SESSION_CLAIMS,
    OpenAPISpec,
    unpack_org_permissions,
    verify_with_jwks,
)


def test_health_and_environment_follow_the_spec(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    health = http.get(f"{dev_emulator.fapi_url}/v1/health")
    assert fapi_openapi.validate_response("/v1/health", "get", health) == {"status": "healthy"}
    environment = http.get(f"{dev_emulator.fapi_url}/v1/environment", params={"_clerk_js_version": "5.0.0"})
    body = fapi_openapi.validate_response("/v1/environment", "get", environment)
    assert body["display_config"]["instance_environment_type"] == "development"
    assert body["display_config"]["sign_in_url"] == f"{dev_emulator.fapi_url}/sign-in"


def test_client_requires_a_dev_browser_on_development_instances(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    response = http.get(f"{dev_emulator.fapi_url}/v1/client")
    assert response.status_code == 401
    assert fapi_openapi.validate_response("/v1/client", "get", response)["errors"][0]["code"] == (
        "dev_browser_unauthenticated"
    )


def test_new_dev_browser_has_a_signed_out_client(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    token = new_dev_browser(dev_emulator, http)
    response = http.get(f"{dev_emulator.fapi_url}/v1/client", params={"__clerk_db_jwt": token})
    body = fapi_openapi.validate_response("/v1/client", "get", response)
    assert body["response"]["sessions"] == [] and body["response"]["last_active_session_id"] is None


def test_sign_in_with_identifier_and_password_completes_and_creates_a_session(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    token = new_dev_browser(dev_emulator, http)
    response = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sign_ins",
        params={"__clerk_db_jwt": token, "_clerk_js_version": "5.99.0", "__clerk_api_version": "2099-01-01"},
        data={"strategy": "password", "identifier": "alice@example.com", "password": "alice-password"},
    )
    body = fapi_openapi.validate_response("/v1/client/sign_ins", "post", response)
    assert body["response"]["status"] == "complete"
    session_id = body["response"]["created_session_id"]
    assert body["client"]["last_active_session_id"] == session_id
    [session] = body["client"]["sessions"]
    assert session["user"]["id"] == "user_alice" and session["last_active_organization_id"] == "org_acme"


def test_two_step_sign_in_accepts_json_and_the_attempt_step(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    token = new_dev_browser(dev_emulator, http)
    first = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sign_ins",
        params={"__clerk_db_jwt": token},
        json={"identifier": "bob"},
    )
    started = fapi_openapi.validate_response("/v1/client/sign_ins", "post", first)["response"]
    assert started["status"] == "needs_first_factor"
    assert started["supported_first_factors"] == [{"strategy": "password"}]
    attempt = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sign_ins/{started['id']}/attempt_first_factor",
        params={"__clerk_db_jwt": token},
        data={"strategy": "password", "password": "bob-password"},
    )
    path = "/v1/client/sign_ins/{sign_in_id}/attempt_first_factor"
    assert fapi_openapi.validate_response(path, "post", attempt)["response"]["status"] == "complete"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ({"identifier": "nobody@example.com", "password": "x"}, 422, "form_identifier_not_found"),
        ({"identifier": "alice@example.com", "password": "wrong"}, 422, "form_password_incorrect"),
        ({"identifier": "alice@example.com", "strategy": "email_code"}, 422, "strategy_for_user_invalid"),
    ],
)
def test_failed_sign_ins_answer_with_clerk_errors(
    dev_emulator: EmulatorServer,
    http: httpx.Client,
    fapi_openapi: OpenAPISpec,
    data: dict[str, str],
    status: int,
    code: str,
) -> None:
    token = new_dev_browser(dev_emulator, http)
    response = http.post(f"{dev_emulator.fapi_url}/v1/client/sign_ins", params={"__clerk_db_jwt": token}, data=data)
    assert response.status_code == status
    assert fapi_openapi.validate_response("/v1/client/sign_ins", "post", response)["errors"][0]["code"] == code


def test_minted_token_verifies_with_both_jwks_and_carries_clerk_claims(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    token, signed_in = dev_sign_in(dev_emulator, http)
    session_id = signed_in["response"]["created_session_id"]
    response = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sessions/{session_id}/tokens",
        params={"__clerk_db_jwt": token},
        headers={"Origin": "http://app.test:3000"},
    )
    jwt_text = fapi_openapi.validate_response("/v1/client/sessions/{session_id}/tokens", "post", response)["jwt"]
    fapi_jwks = http.get(f"{dev_emulator.fapi_url}/.well-known/jwks.json")
    fapi_openapi.validate_response("/.well-known/jwks.json", "get", fapi_jwks)
    for key_set in (fapi_jwks.json(), jwks(dev_emulator, http)):
        claims = verify_with_jwks(jwt_text, key_set)
        assert set(SESSION_CLAIMS) <= set(claims)
    assert claims["sub"] == "user_alice" and claims["sid"] == session_id
    assert claims["azp"] == "http://app.test:3000"
    assert claims["iss"] == f"https://{dev_emulator.config.fapi_host}"
    assert claims["exp"] - claims["iat"] == 60 and claims["iat"] - claims["nbf"] == 10
    assert (claims["v"], claims["sts"], claims["fva"]) == (2, "active", [0, -1])
    assert claims["o"]["id"] == "org_acme" and claims["o"]["slg"] == "acme" and claims["o"]["rol"] == "admin"
    membership = dev_emulator.state.seed.membership("user_alice", "org_acme")
    assert membership is not None
    assert sorted(unpack_org_permissions(claims)) == sorted(membership.permissions)


def test_token_for_personal_account_has_no_org_claims_and_touch_switches_back(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    token, signed_in = dev_sign_in(dev_emulator, http, "bob@example.com", "bob-password")
    session_id = signed_in["response"]["created_session_id"]
    personal = verify_with_jwks(
        mint_token(dev_emulator, http, token, session_id, organization_id=""), jwks(dev_emulator, http)
    )
    assert "o" not in personal and "fea" not in personal
    touched = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sessions/{session_id}/touch",
        params={"__clerk_db_jwt": token},
        data={"active_organization_id": "acme"},
    )
    body = fapi_openapi.validate_response("/v1/client/sessions/{session_id}/touch", "post", touched)
    assert body["response"]["last_active_organization_id"] == "org_acme"
    claims = verify_with_jwks(mint_token(dev_emulator, http, token, session_id), jwks(dev_emulator, http))
    assert claims["o"]["rol"] == "member"
    assert sorted(unpack_org_permissions(claims)) == ["org:invoices:read", "org:sys_memberships:read"]


def test_ended_session_gets_no_new_token(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    token, signed_in = dev_sign_in(dev_emulator, http)
    session_id = signed_in["response"]["created_session_id"]
    ended = http.post(f"{dev_emulator.fapi_url}/v1/client/sessions/{session_id}/end", params={"__clerk_db_jwt": token})
    body = fapi_openapi.validate_response("/v1/client/sessions/{session_id}/end", "post", ended)
    assert body["response"]["status"] == "ended" and body["client"]["sessions"] == []
    refused = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sessions/{session_id}/tokens", params={"__clerk_db_jwt": token}
    )
    assert refused.status_code == 401
    path = "/v1/client/sessions/{session_id}/tokens"
    assert fapi_openapi.validate_response(path, "post", refused)["errors"][0]["code"] == "signed_out"


@pytest.mark.parametrize("tunnelled", [False, True], ids=["DELETE", "POST _method=DELETE"])
def test_sign_out_of_all_sessions(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec, tunnelled: bool
) -> None:
    token, signed_in = dev_sign_in(dev_emulator, http)
    url = f"{dev_emulator.fapi_url}/v1/client/sessions"
    if tunnelled:
        response = http.post(url, params={"__clerk_db_jwt": token, "_method": "DELETE"})
    else:
        response = http.delete(url, params={"__clerk_db_jwt": token})
    body = fapi_openapi.validate_response("/v1/client/sessions", "delete", response)
    assert body["response"]["sessions"] == [] and body["response"]["last_active_session_id"] is None
    session = dev_emulator.state.session(signed_in["response"]["created_session_id"])
    assert session is not None and session.status == "ended"


def test_second_sign_in_on_a_signed_in_client_is_refused(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    token, _ = dev_sign_in(dev_emulator, http)
    again = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sign_ins",
        params={"__clerk_db_jwt": token},
        data={"identifier": "alice@example.com", "password": "alice-password"},
    )
    assert again.status_code == 400 and again.json()["errors"][0]["code"] == "session_exists"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "POST",
            "/v1/client/sign_ins",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "malformed_request_body",
        ),
        (
            "POST",
            "/v1/client/sign_ins",
            {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
            400,
            "malformed_request_body",
        ),
        ("POST", "/v1/client/sign_ins", {"json": {"identifier": {"nested": True}}}, 400, "form_param_format_invalid"),
        ("GET", "/v1/client/sessions/sess_unknown", {}, 404, "resource_not_found"),
        ("POST", "/v1/client/sessions/sess_unknown/tokens", {}, 404, "resource_not_found"),
        (
            "POST",
            "/v1/client/sign_ins/sia_unknown/attempt_first_factor",
            {"data": {"strategy": "password"}},
            404,
            "resource_not_found",
        ),
        ("GET", "/v1/no/such/endpoint", {}, 404, "resource_not_found"),
        ("PATCH", "/v1/client/sign_ins", {}, 405, "method_not_allowed"),
    ],
)
def test_malformed_input_is_a_4xx_with_clerk_envelope(
    dev_emulator: EmulatorServer,
    http: httpx.Client,
    fapi_openapi: OpenAPISpec,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str,
) -> None:
    token = new_dev_browser(dev_emulator, http)
    response = http.request(method, f"{dev_emulator.fapi_url}{path}", params={"__clerk_db_jwt": token}, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    body = response.json()
    fapi_openapi.validate_component("ClerkErrors", body)
    assert body["errors"][0]["code"] == code


def test_cors_preflight_and_credentials_for_browser_origins(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    preflight = http.options(
        f"{dev_emulator.fapi_url}/v1/client",
        headers={"Origin": "http://app.test:3000", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://app.test:3000"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    actual = http.get(f"{dev_emulator.fapi_url}/v1/environment", headers={"Origin": "http://app.test:3000"})
    assert actual.headers["access-control-allow-origin"] == "http://app.test:3000"


def test_bapi_secret_key_is_not_needed_for_fapi(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    assert http.get(f"{dev_emulator.fapi_url}/v1/environment", headers=bapi_headers(dev_emulator)).status_code == 200
