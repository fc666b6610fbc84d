"""Machine tokens through a running gateway, verified at the emulator over real loopback HTTP.

API keys, M2M tokens and OAuth access tokens (opaque and JWT) reach the app with their identity
headers; the Backend API's answers are shared by concurrent requests, reused for the revocation window
and never past a token's expiry. Time moves through the shared fake clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from gateway.clerk_api.machine_tokens import DEFAULT_REVOCATION_WINDOW
from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.upstream import EchoUpstream

ROUTES = json.dumps(
    [
        {"path": "/api/*", "accepts": ["session_token", "api_key"]},
        {"path": "/machines/*", "accepts": "m2m_token"},
        {"path": "/oauth/*", "accepts": "oauth_token"},
        {"path": "/writes/*", "accepts": "api_key", "scopes": ["write"]},
        {"path": "/anything/*", "accepts": "any"},
    ]
)


def echoed(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json", **extra}


def bapi(clerk: EmulatorServer, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    response = httpx.request(
        method,
        f"{clerk.bapi_url}/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {key or clerk.secret_key}"},
        timeout=10,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture
async def machine_gateway(dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]) -> Any:
    return await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_ROUTES=ROUTES))


async def test_an_api_key_reaches_the_app_as_its_owner_with_its_name_scopes_and_claims(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient
) -> None:
    key = bapi(dev_clerk, "POST", "/api_keys", {
        "name": "reports bot", "subject": "user_alice", "scopes": ["read", "write"], "claims": {"team": "ö"},
    })  # fmt: skip
    spoofs = {"X-Clerk-Token-Type": "session_token", "x_clerk_machine_id": "mch_forged", "X-Clerk-Scopes": "admin"}
    response = await http_client.get(f"{machine_gateway.url}/api/me", headers=bearer(key["secret"], **spoofs))
    assert response.status_code == 200
    seen = echoed(response)
    assert seen["x-clerk-auth-status"] == "signed-in"
    assert seen["x-clerk-token-type"] == "api_key"
    assert seen["x-clerk-token-id"] == key["id"]
    assert seen["x-clerk-user-id"] == "user_alice"
    assert seen["x-clerk-scopes"] == "read,write"
    assert unquote(seen["x-clerk-api-key-name"]) == "reports bot"
    assert json.loads(unquote(seen["x-clerk-api-key-claims"])) == {"team": "ö"}
    assert "x-clerk-machine-id" not in seen and "x_clerk_machine_id" not in seen
    assert "x-clerk-session-id" not in seen


async def test_machine_tokens_are_refused_where_the_route_takes_other_kinds(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient
) -> None:
    key = bapi(dev_clerk, "POST", "/api_keys", {"name": "k1", "subject": "user_bob", "scopes": ["read"]})
    on_m2m_route = await http_client.get(f"{machine_gateway.url}/machines/x", headers=bearer(key["secret"]))
    assert on_m2m_route.status_code == 401
    assert on_m2m_route.headers["x-clerk-auth-reason"] == "token-type-mismatch"
    on_default_route = await http_client.get(f"{machine_gateway.url}/page", headers=bearer(key["secret"]))
    assert on_default_route.status_code == 401
    assert on_default_route.headers["x-clerk-auth-reason"] == "token-invalid"  # a session route: not a JWT
    without_scope = await http_client.get(f"{machine_gateway.url}/writes/x", headers=bearer(key["secret"]))
    assert without_scope.status_code == 403 and without_scope.json()["reason"] == "missing-scopes"
    no_token = await http_client.get(f"{machine_gateway.url}/machines/x", headers={"Accept": "application/json"})
    assert no_token.status_code == 401 and no_token.headers["x-clerk-auth-reason"] == "No token in header"
    unknown = await http_client.get(f"{machine_gateway.url}/api/x", headers=bearer("ak_" + "0" * 40))
    assert unknown.status_code == 401 and unknown.headers["x-clerk-auth-reason"] == "token-invalid"
    assert unknown.headers["x-clerk-auth-message"] == "API key not found (code=token-invalid, status=404)"


async def test_m2m_tokens_opaque_and_jwt_name_the_calling_machine(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient
) -> None:
    target = bapi(dev_clerk, "POST", "/machines", {"name": "billing"})
    caller = bapi(dev_clerk, "POST", "/machines", {"name": "cron", "scoped_machines": [target["id"]]})
    opaque = bapi(dev_clerk, "POST", "/m2m_tokens", {}, key=caller["secret_key"])
    as_jwt = bapi(dev_clerk, "POST", "/m2m_tokens", {"token_format": "jwt"}, key=caller["secret_key"])
    for token in (opaque["token"], as_jwt["token"]):
        response = await http_client.get(f"{machine_gateway.url}/machines/run", headers=bearer(token))
        assert response.status_code == 200, response.text
        seen = echoed(response)
        assert seen["x-clerk-token-type"] == "m2m_token"
        assert seen["x-clerk-machine-id"] == caller["id"]
        assert seen["x-clerk-scopes"] == target["id"]
        assert "x-clerk-user-id" not in seen
    in_cookie = await http_client.get(
        f"{machine_gateway.url}/anything/x", headers={"Cookie": f"__session={as_jwt['token']}; __client_uat=1"}
    )
    assert in_cookie.status_code in (307, 401) and "x-clerk-machine-id" not in in_cookie.headers


async def test_oauth_access_tokens_opaque_and_jwt(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient
) -> None:
    opaque = bapi(dev_clerk, "POST", "/__emulator/oauth_access_tokens", {"user_id": "user_bob", "scopes": ["email"]})
    as_jwt = bapi(dev_clerk, "POST", "/__emulator/oauth_access_tokens", {
        "user_id": "user_bob", "scopes": ["email", "profile"], "format": "jwt",
    })  # fmt: skip
    for token, scopes in ((opaque["token"], "email"), (as_jwt["token"], "email,profile")):
        response = await http_client.get(f"{machine_gateway.url}/oauth/me", headers=bearer(token))
        assert response.status_code == 200, response.text
        seen = echoed(response)
        assert seen["x-clerk-token-type"] == "oauth_token"
        assert seen["x-clerk-user-id"] == "user_bob" and seen["x-clerk-scopes"] == scopes
        assert seen["x-clerk-oauth-client-id"]
    anywhere = await http_client.get(f"{machine_gateway.url}/anything/me", headers=bearer(as_jwt["token"]))
    assert anywhere.status_code == 200 and echoed(anywhere)["x-clerk-token-type"] == "oauth_token"


async def test_oauth_jwts_are_checked_against_the_audience(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    gateway = await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_ROUTES=ROUTES, CLERK_AUDIENCE="https://api.example")
    )
    for audience, status in (("https://api.example", 200), ("https://other.example", 401)):
        token = bapi(dev_clerk, "POST", "/__emulator/oauth_access_tokens", {
            "user_id": "user_bob", "format": "jwt", "audience": audience,
        })["token"]  # fmt: skip
        response = await http_client.get(f"{gateway.url}/oauth/me", headers=bearer(token))
        assert response.status_code == status, audience
        if status == 401:
            assert response.headers["x-clerk-auth-reason"] == "token-verification-failed"


# ------------------------------------------------------------------------------------------ the cache


async def test_concurrent_requests_with_one_key_share_one_verify_call(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient
) -> None:
    key = bapi(dev_clerk, "POST", "/api_keys", {"name": "burst", "subject": "user_alice"})
    before = dev_clerk.state.calls["verify_api_key"]
    answers = await asyncio.gather(*(
        http_client.get(f"{machine_gateway.url}/api/n{i}", headers=bearer(key["secret"])) for i in range(20)
    ))  # fmt: skip
    assert [answer.status_code for answer in answers] == [200] * 20
    assert dev_clerk.state.calls["verify_api_key"] - before == 1


async def test_a_revoked_key_is_refused_once_the_revocation_window_has_passed(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    key = bapi(dev_clerk, "POST", "/api_keys", {"name": "soon revoked", "subject": "user_alice"})
    url = f"{machine_gateway.url}/api/me"
    assert (await http_client.get(url, headers=bearer(key["secret"]))).status_code == 200
    bapi(dev_clerk, "POST", f"/api_keys/{key['id']}/revoke", {"revocation_reason": "leaked"})
    clock.advance(DEFAULT_REVOCATION_WINDOW - 1)
    assert (await http_client.get(url, headers=bearer(key["secret"]))).status_code == 200  # the kept answer
    clock.advance(1.5)
    refused = await http_client.get(url, headers=bearer(key["secret"]))
    assert refused.status_code == 401 and refused.headers["x-clerk-auth-reason"] == "token-invalid"


async def test_a_kept_answer_never_outlives_the_key(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    key = bapi(
        dev_clerk, "POST", "/api_keys", {"name": "short", "subject": "user_alice", "seconds_until_expiration": 3}
    )
    url = f"{machine_gateway.url}/api/me"
    assert (await http_client.get(url, headers=bearer(key["secret"]))).status_code == 200
    calls = dev_clerk.state.calls["verify_api_key"]
    clock.advance(3)  # inside the revocation window, but the key has expired
    refused = await http_client.get(url, headers=bearer(key["secret"]))
    assert refused.status_code == 401 and refused.headers["x-clerk-auth-reason"] == "token-invalid"
    assert dev_clerk.state.calls["verify_api_key"] == calls + 1  # asked again, not answered from the cache


async def test_a_zero_revocation_window_asks_every_time(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    gateway = await run_gateway(gateway_settings(
        dev_clerk, upstream.url, GATEWAY_ROUTES=ROUTES, GATEWAY_MACHINE_TOKEN_REVOCATION_WINDOW="0",
    ))  # fmt: skip
    key = bapi(dev_clerk, "POST", "/api_keys", {"name": "uncached", "subject": "user_alice"})
    before = dev_clerk.state.calls["verify_api_key"]
    for _ in range(3):
        assert (await http_client.get(f"{gateway.url}/api/me", headers=bearer(key["secret"]))).status_code == 200
    assert dev_clerk.state.calls["verify_api_key"] - before == 3


async def test_forward_auth_answers_an_api_key_with_its_identity_headers(
    machine_gateway: RunningGateway, dev_clerk: EmulatorServer, http_client: httpx.AsyncClient
) -> None:
    key = bapi(dev_clerk, "POST", "/api_keys", {"name": "proxy", "subject": "user_bob", "scopes": ["read"]})
    original = {
        "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/items", "X-Forwarded-Host": "app.test:8000",
        "X-Forwarded-Proto": "http",
    }  # fmt: skip
    answer = await http_client.get(f"{machine_gateway.url}/__gateway/auth", headers=bearer(key["secret"], **original))
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-clerk-token-type"] == "api_key" and answer.headers["x-clerk-user-id"] == "user_bob"
    assert answer.headers["x-clerk-scopes"] == "read"
    elsewhere = await http_client.get(
        f"{machine_gateway.url}/__gateway/auth", headers=bearer(key["secret"], **{**original, "X-Forwarded-Uri": "/x"})
    )
    assert elsewhere.status_code == 401 and elsewhere.headers["x-clerk-auth-reason"] == "token-invalid"
