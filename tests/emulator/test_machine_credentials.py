"""Backend API machine endpoints: API keys, machines, M2M tokens and OAuth access tokens, in the spec's
shapes (each answer validated against the OpenAPI document)."""

from __future__ import annotations

import shlex

import httpx
import jwt

from gateway.emulator.command import mint_api_key_command
from gateway.emulator.server import EmulatorServer
from tests.emulator.flows import bapi_headers
from tests.emulator.support import OpenAPISpec, verify_with_jwks


def test_api_keys_create_list_verify_revoke(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec
) -> None:
    base, headers = f"{dev_emulator.bapi_url}/v1", bapi_headers(dev_emulator)
    machine = http.post(f"{base}/machines", json={"name": "owner"}, headers=headers).json()
    body = {"name": "ci key", "subject": machine["id"], "scopes": ["read"], "claims": {"env": "ci"}}
    created = http.post(f"{base}/api_keys", json=body, headers=headers)
    key = bapi_openapi.validate_response("/api_keys", "post", created)
    assert key["secret"].startswith("ak_") and key["id"].startswith("ak_") and key["secret"] != key["id"]
    listed = http.get(f"{base}/api_keys", params={"subject": machine["id"]}, headers=headers)
    assert [item["id"] for item in bapi_openapi.validate_response("/api_keys", "get", listed)["data"]] == [key["id"]]
    verified = http.post(f"{base}/api_keys/verify", json={"secret": key["secret"]}, headers=headers)
    answer = bapi_openapi.validate_response("/api_keys/verify", "post", verified)
    assert (answer["subject"], answer["scopes"], answer["claims"]) == (machine["id"], ["read"], {"env": "ci"})
    assert "secret" not in answer
    revoked = http.post(f"{base}/api_keys/{key['id']}/revoke", json={"revocation_reason": "rotated"}, headers=headers)
    assert bapi_openapi.validate_response("/api_keys/{apiKeyID}/revoke", "post", revoked)["revoked"] is True
    gone = http.post(f"{base}/api_keys/verify", json={"secret": key["secret"]}, headers=headers)
    assert gone.status_code == 404
    bapi_openapi.validate_response("/api_keys/verify", "post", gone)
    assert http.get(f"{base}/api_keys", params={"subject": machine["id"]}, headers=headers).json()["data"] == []


def test_api_keys_for_seeded_users_verify(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    base, headers = f"{dev_emulator.bapi_url}/v1", bapi_headers(dev_emulator)
    key = http.post(f"{base}/api_keys", json={"name": "mine", "subject": "user_alice"}, headers=headers).json()
    answer = http.post(f"{base}/api_keys/verify", json={"secret": key["secret"]}, headers=headers).json()
    assert answer["subject"] == "user_alice" and answer["name"] == "mine"
    unknown = http.post(f"{base}/api_keys", json={"name": "x", "subject": "user_nobody"}, headers=headers)
    assert unknown.status_code == 404


def test_machines_and_their_m2m_tokens(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec
) -> None:
    base, headers = f"{dev_emulator.bapi_url}/v1", bapi_headers(dev_emulator)
    target = http.post(f"{base}/machines", json={"name": "billing"}, headers=headers)
    target_machine = target.json()
    bapi_openapi.validate(bapi_openapi.response_schema("/machines", "post", 200), target_machine)
    created = http.post(
        f"{base}/machines", json={"name": "cron", "scoped_machines": [target_machine["id"]]}, headers=headers
    ).json()
    assert [m["id"] for m in created["scoped_machines"]] == [target_machine["id"]]
    secret = http.get(f"{base}/machines/{created['id']}/secret_key", headers=headers)
    assert secret.json() == {"object": "machine_secret_key", "secret": created["secret_key"]}
    machine_auth = {"Authorization": f"Bearer {created['secret_key']}"}
    assert http.post(f"{base}/m2m_tokens", json={}, headers=headers).status_code == 401  # needs the machine's key
    minted = http.post(f"{base}/m2m_tokens", json={"seconds_until_expiration": 60}, headers=machine_auth)
    token = bapi_openapi.validate_response("/m2m_tokens", "post", minted)
    assert token["token"].startswith("mt_") and token["subject"] == created["id"]
    for auth in (headers, machine_auth):
        verified = http.post(f"{base}/m2m_tokens/verify", json={"token": token["token"]}, headers=auth)
        assert bapi_openapi.validate_response("/m2m_tokens/verify", "post", verified)["scopes"] == [
            target_machine["id"]
        ]
    revoked = http.post(f"{base}/m2m_tokens/{token['id']}/revoke", json={}, headers=headers)
    assert bapi_openapi.validate_response("/m2m_tokens/{m2m_token_id}/revoke", "post", revoked)["revoked"] is True
    assert http.post(f"{base}/m2m_tokens/verify", json={"token": token["token"]}, headers=headers).status_code == 404


def test_m2m_tokens_in_jwt_form_are_signed_with_the_instance_key(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec
) -> None:
    base, headers = f"{dev_emulator.bapi_url}/v1", bapi_headers(dev_emulator)
    machine = http.post(f"{base}/machines", json={"name": "jwt-maker"}, headers=headers).json()
    minted = http.post(
        f"{base}/m2m_tokens", json={"token_format": "jwt"}, headers={"Authorization": f"Bearer {machine['secret_key']}"}
    )
    body = bapi_openapi.validate_response("/m2m_tokens", "post", minted)
    header = jwt.get_unverified_header(body["token"])
    assert header["cat"] == "cl_B7d4PD333AAA"
    claims = verify_with_jwks(body["token"], dev_emulator.jwks())
    assert claims["sub"] == machine["id"] and claims["jti"] == body["id"]


def test_oauth_access_tokens_minted_for_tests_verify_in_the_spec_shape(
    dev_emulator: EmulatorServer, http: httpx.Client, bapi_openapi: OpenAPISpec
) -> None:
    base, headers = f"{dev_emulator.bapi_url}/v1", bapi_headers(dev_emulator)
    minted = http.post(
        f"{base}/__emulator/oauth_access_tokens", json={"user_id": "user_bob", "scopes": ["email"]}, headers=headers
    ).json()
    verified = http.post(
        f"{base}/oauth_applications/access_tokens/verify", json={"access_token": minted["token"]}, headers=headers
    )
    answer = verified.json()
    assert answer["id"] == minted["id"] and answer["subject"] == "user_bob" and answer["scopes"] == ["email"]
    # the spec's subject pattern wants 27 characters after `user_`; the seed's ids are readable instead
    schema = bapi_openapi.response_schema("/oauth_applications/access_tokens/verify", "post", 200)
    bapi_openapi.validate(schema, {**answer, "subject": "user_2xhFjEI5X2qWRvtV13BzSj8H6Dk"})
    unknown = http.post(
        f"{base}/oauth_applications/access_tokens/verify", json={"access_token": "oat_nope"}, headers=headers
    )
    assert unknown.status_code == 404
    bapi_openapi.validate_response("/oauth_applications/access_tokens/verify", "post", unknown)
    as_jwt = http.post(
        f"{base}/__emulator/oauth_access_tokens", json={"user_id": "user_bob", "format": "jwt"}, headers=headers
    ).json()["token"]
    assert jwt.get_unverified_header(as_jwt)["typ"] == "at+jwt"
    assert verify_with_jwks(as_jwt, dev_emulator.jwks())["sub"] == "user_bob"


def test_the_banners_mint_line_creates_an_api_key(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    line = mint_api_key_command(dev_emulator.bapi_url, dev_emulator.secret_key, "user_alice")
    words = shlex.split(line)
    assert words[:4] == ["curl", "-s", "-X", "POST"]
    headers = dict(word.split(": ", 1) for word in (words[5], words[7]))
    response = http.post(words[-1], content=words[9].encode(), headers=headers)
    assert response.status_code == 200 and response.json()["secret"].startswith("ak_")
    assert response.json()["subject"] == "user_alice"
