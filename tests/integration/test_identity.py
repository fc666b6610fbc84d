"""The identity the app receives, over loopback HTTP with the real emulator: presets after a real sign-in,
custom templates over the Backend API's user and organization and custom session claims, the Backend API
down (token-only headers, the gap counted), forward-auth's copy of the same headers, and the assertion
verified as an app would (PyJWT's `PyJWKClient` over `/__gateway/jwks.json`) through a key rotation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.emulator.seed import load_seed
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.integration.test_gateway_flows import echoed, sign_in
from tests.support.browser import FETCH
from tests.support.faults import FaultyProxy, faulty_proxy, mint_token
from tests.support.upstream import EchoUpstream

HOST = "app.test:8000"
GROUPS = "acme,org:admin,org:sys_memberships:manage,org:sys_memberships:read,org:invoices:read,org:invoices:write"


def identity(table: dict[str, Any]) -> str:
    return json.dumps(table)


def bearer(clerk: EmulatorServer, user_id: str = "user_alice") -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(clerk, user_id)}", "host": HOST, **FETCH}


async def metric(client: httpx.AsyncClient, gateway: RunningGateway, name: str, label: str) -> float:
    text = (await client.get(f"{gateway.url}/__gateway/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name}{{{label}}}"))


@pytest.fixture
def clerk(start_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    """The default seed, Alice's session tokens carrying a custom claim (a customized session token)."""
    seed = load_seed()
    alice = dataclasses.replace(seed.users[0], session_claims={"plan": "pro", "email": "alice@example.com"})
    return start_emulator(token_lifetime=60, seed=dataclasses.replace(seed, users=(alice, *seed.users[1:])))


@pytest.fixture
async def bapi(clerk: EmulatorServer) -> AsyncIterator[FaultyProxy]:
    async with faulty_proxy(clerk.bapi_url) as proxy:
        yield proxy


PRESETS = {
    "clerk": {
        "x-clerk-auth-status": "signed-in",
        "x-clerk-user-id": "user_alice",
        "x-clerk-org-slug": "acme",
        "x-clerk-org-role": "org:admin",
    },
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
EVERY_PRESET_HEADER = {name for headers in PRESETS.values() for name in headers} - {"x-clerk-auth-status"}


@pytest.mark.parametrize("preset", PRESETS)
async def test_after_sign_in_the_app_receives_each_presets_headers_and_no_others(
    preset: str,
    clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    new_browser: Callable[..., Any],
) -> None:
    gateway = await run_gateway(gateway_settings(clerk, upstream.url, GATEWAY_IDENTITY=identity({"presets": [preset]})))
    browser = new_browser(gateway)
    landed = await sign_in(browser, gateway)
    assert landed.status_code == 200, landed.text
    spoofs = {name: "spoofed" for name in EVERY_PRESET_HEADER} | {"remote_user": "spoofed"}
    received = echoed(await browser.fetch("GET", f"{gateway.origin}/api/items", headers=spoofs))
    assert {name: received.get(name) for name in PRESETS[preset]} == PRESETS[preset]
    assert "spoofed" not in received.values(), received
    assert not EVERY_PRESET_HEADER - set(PRESETS[preset]) & set(received)


async def test_templates_carry_the_backend_apis_user_and_organization_and_custom_claims(
    clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    table = {
        "presets": [],
        "public_metadata": ["department"],
        "headers": {
            "X-User-Display": "{first_name} {last_name} ({username})",
            "X-Team": "{public_metadata.department}",
            "X-Org": "{org_name}",
            "X-Plan": "{claims.plan}",
            "X-Image": "{image_url}",
        },
    }
    gateway = await run_gateway(gateway_settings(clerk, upstream.url, GATEWAY_IDENTITY=identity(table)))
    received = echoed(await http_client.get(f"{gateway.url}/api/items", headers=bearer(clerk)))
    assert {name: received.get(name) for name in ("x-user-display", "x-team", "x-org", "x-plan", "x-image")} == {
        "x-user-display": "Alice Admin (alice)",
        "x-team": "Platform",
        "x-org": "Acme Inc",
        "x-plan": "pro",
        "x-image": "https://img.example.com/alice.png",
    }
    bob = echoed(await http_client.get(f"{gateway.url}/api/items", headers=bearer(clerk, "user_bob")))
    assert "x-team" not in bob and "x-plan" not in bob and bob["x-user-display"] == "Bob Member (bob)"


async def test_a_burst_of_requests_of_one_user_makes_one_backend_api_call_and_later_ones_none(
    clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    table = {"presets": ["remote-user"], "headers": {"X-Org": "{org_name}"}}
    gateway = await run_gateway(gateway_settings(clerk, upstream.url, GATEWAY_IDENTITY=identity(table)))
    headers = bearer(clerk, "user_bob")
    burst = await asyncio.gather(*(http_client.get(f"{gateway.url}/api/items", headers=headers) for _ in range(20)))
    assert {echoed(answer)["remote-name"] for answer in burst} == {"Bob Member"}
    assert (clerk.state.calls["get_user"], clerk.state.calls["get_organization"]) == (1, 1)
    later = echoed(await http_client.get(f"{gateway.url}/api/items", headers=bearer(clerk, "user_bob")))
    assert later["x-org"] == "Acme Inc" and (clerk.state.calls["get_user"], clerk.state.calls["get_organization"]) == (
        1,
        1,
    )


async def test_with_the_backend_api_down_the_app_gets_the_tokens_identity_and_the_gap_is_counted(
    clerk: EmulatorServer,
    bapi: FaultyProxy,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    settings = gateway_settings(
        clerk, upstream.url, CLERK_API_URL=bapi.url, GATEWAY_IDENTITY=identity({"presets": ["clerk", "remote-user"]})
    )
    gateway = await run_gateway(settings)
    bapi.fault("/v1/users/", "error")
    bob = await http_client.get(f"{gateway.url}/api/items", headers=bearer(clerk, "user_bob"))
    assert bob.status_code == 200, bob.text
    received = echoed(bob)
    assert received["x-clerk-user-id"] == "user_bob" and received["remote-groups"].startswith("acme,org:member")
    assert "remote-user" not in received and "remote-name" not in received
    # Alice's token carries her e-mail as a custom claim: her user header needs no Backend API.
    alice = echoed(await http_client.get(f"{gateway.url}/api/items", headers=bearer(clerk)))
    assert alice["remote-user"] == "alice@example.com" and "remote-name" not in alice
    assert await metric(http_client, gateway, "gateway_identity_lookup_gaps_total", 'kind="user"') == 2
    bapi.fault("/v1/users/", "pass")
    healed = echoed(await http_client.get(f"{gateway.url}/api/items", headers=bearer(clerk, "user_bob")))
    assert healed["remote-user"] == "bob@example.com" and healed["remote-name"] == "Bob Member"


async def test_forward_auth_hands_the_proxy_the_same_mapped_headers(
    clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    settings = gateway_settings(clerk, upstream.url, GATEWAY_IDENTITY=identity({"presets": ["remote-user"]}))
    gateway = await run_gateway(settings)
    headers = {**bearer(clerk), "x-forwarded-method": "GET", "x-forwarded-proto": "http", "x-forwarded-host": HOST}
    proxied = echoed(await http_client.get(f"{gateway.url}/api/items", headers=headers))
    answer = await http_client.get(
        f"{gateway.url}/__gateway/auth", headers={**headers, "x-forwarded-uri": "/api/items"}
    )
    assert answer.status_code == 200
    for name in PRESETS["remote-user"]:
        assert answer.headers[name] == proxied[name] == PRESETS["remote-user"][name]


async def test_a_websocket_upgrade_carries_the_same_mapped_headers(
    clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    settings = gateway_settings(clerk, upstream.url, GATEWAY_IDENTITY=identity({"presets": ["grafana"]}))
    gateway = await run_gateway(settings)
    headers = bearer(clerk)
    real = urlsplit(gateway.url)
    async with websockets.connect(
        f"ws://{HOST}/_/ws", host=real.hostname, port=real.port,
        additional_headers={"authorization": headers["authorization"], "x-webauth-user": "admin"},
    ) as socket:  # fmt: skip
        await socket.send("headers?")
        received = {name.lower(): value for name, value in json.loads(await socket.recv())}
    assert {name: received.get(name) for name in PRESETS["grafana"]} == PRESETS["grafana"]


# ---------------------------------------------------------------------------------------------- assertion


def key_file(directory: Path, name: str, key: PrivateKeyTypes) -> str:
    path = directory / name
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return str(path)


async def assertion_of(client: httpx.AsyncClient, gateway: RunningGateway, clerk: EmulatorServer) -> str:
    received = echoed(await client.get(f"{gateway.url}/api/items", headers=bearer(clerk)))
    return received["x-gateway-identity-assertion"]


def verify_as_an_app_would(gateway: RunningGateway, assertion: str, audience: str) -> dict[str, Any]:
    """What an app does: find the key by `kid` in the published JWKS, check signature, expiry and audience."""
    signing_key = jwt.PyJWKClient(f"{gateway.url}/__gateway/jwks.json", cache_keys=False).get_signing_key_from_jwt(
        assertion
    )
    claims: dict[str, Any] = jwt.decode(
        assertion,
        signing_key.key,
        algorithms=["RS256", "ES256"],
        audience=audience,
        issuer="session-gateway",
        options={"verify_iat": False},  # the emulator's clock, not the wall clock, stamps the assertion
        leeway=10**10,
    )
    return claims


async def test_the_assertion_verifies_by_kid_through_a_key_rotation_and_names_its_audience(
    tmp_path: Path,
    clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    old = key_file(tmp_path, "old.pem", ec.generate_private_key(ec.SECP256R1()))
    new = key_file(tmp_path, "new.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    mapping = identity({"presets": ["clerk", "remote-user"]})
    before = await run_gateway(
        gateway_settings(
            clerk,
            upstream.url,
            GATEWAY_ASSERTION_KEY=old,
            GATEWAY_IDENTITY=mapping,
            GATEWAY_PUBLIC_ORIGIN="https://tools.example",
        )
    )
    held = await assertion_of(http_client, before, clerk)  # an assertion an app still holds
    claims = await asyncio.to_thread(verify_as_an_app_would, before, held, "https://tools.example")
    assert (claims["sub"], claims["email"], claims["full_name"], claims["groups"][:2]) == (
        "user_alice", "alice@example.com", "Alice Admin", ["acme", "org:admin"]
    )  # fmt: skip
    after = await run_gateway(
        gateway_settings(
            clerk,
            upstream.url,
            GATEWAY_ASSERTION_KEY=new,
            GATEWAY_ASSERTION_PREVIOUS_KEYS=old,
            GATEWAY_ASSERTION_AUDIENCE="tools",
            GATEWAY_IDENTITY=mapping,
        )
    )
    published = (await http_client.get(f"{after.url}/__gateway/jwks.json")).json()["keys"]
    assert [key["alg"] for key in published] == ["RS256", "ES256"]
    fresh = await assertion_of(http_client, after, clerk)
    assert jwt.get_unverified_header(fresh)["kid"] == published[0]["kid"]  # the current key signs
    assert (await asyncio.to_thread(verify_as_an_app_would, after, fresh, "tools"))["aud"] == "tools"
    # the old key is still published, so what it signed before the rotation still verifies
    assert (await asyncio.to_thread(verify_as_an_app_would, after, held, "https://tools.example"))[
        "sub"
    ] == "user_alice"
    with pytest.raises(jwt.InvalidAudienceError):
        await asyncio.to_thread(verify_as_an_app_would, after, fresh, "another-app")


async def test_signing_out_drops_the_cached_user_so_the_next_sign_in_sees_them_as_they_are_now(
    clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], new_browser: Callable[..., Any]
) -> None:
    table = {"presets": [], "public_metadata": ["department"], "headers": {"X-Team": "{public_metadata.department}"}}
    gateway = await run_gateway(gateway_settings(clerk, upstream.url, GATEWAY_IDENTITY=identity(table)))
    browser = new_browser(gateway)
    assert (await sign_in(browser, gateway)).status_code == 200
    assert echoed(await browser.fetch("GET", f"{gateway.origin}/api/items"))["x-team"] == "Platform"
    seed = clerk.state.seed
    moved = dataclasses.replace(seed.users[0], public_metadata={"department": "Research"})
    clerk.state.seed = dataclasses.replace(seed, users=(moved, *seed.users[1:]))
    assert echoed(await browser.fetch("GET", f"{gateway.origin}/api/items"))["x-team"] == "Platform"  # cached
    out = await browser.request(
        "POST", f"{gateway.origin}/__gateway/sign-out", headers={"origin": gateway.origin}, follow=False
    )
    assert out.status_code == 303, out.text
    assert (await sign_in(browser, gateway)).status_code == 200
    assert echoed(await browser.fetch("GET", f"{gateway.origin}/api/items"))["x-team"] == "Research"
