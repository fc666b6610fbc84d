"""Satellite sync (PROTOCOL.md §5), proxy mode (§8) and key rotation."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.emulator.conftest import SATELLITE
from tests.emulator.flows import bapi_headers, dev_sign_in, jwks, mint_token, prod_sign_in
from tests.emulator.support import Browser, OpenAPISpec, SetCookie, query_of, set_cookies, verify_with_jwks

SATELLITE_APP = f"https://{SATELLITE}/page?__clerk_synced=false"


def follow(browser: Browser, server: EmulatorServer, location: str) -> httpx.Response:
    """Follow a redirect to a virtual FAPI host of the emulator (sent to its loopback port)."""
    parts = urlsplit(location)
    return browser.get(f"{server.fapi_url}{parts.path}?{parts.query}", host=parts.netloc)


def directives_of(server: EmulatorServer, http: httpx.Client, nonce: str) -> dict[str, SetCookie]:
    response = http.get(
        f"{server.bapi_url}/v1/clients/handshake_payload", params={"nonce": nonce}, headers=bapi_headers(server)
    )
    return {c.name: c for c in map(SetCookie.parse, response.json()["directives"])}


def test_production_satellite_sync_round_trip(prod_emulator: EmulatorServer, browser: Browser) -> None:
    primary_host = urlsplit(prod_emulator.public_url).netloc
    satellite_host = f"clerk.{SATELLITE}:{prod_emulator.fapi_port}"
    # The user signs in on the primary FAPI host (its own cookie jar).
    prod_sign_in_on_host(prod_emulator, browser, primary_host)
    # The satellite app sends the browser to the satellite FAPI with reason satellite-needs-syncing.
    start = browser.get(
        f"{prod_emulator.fapi_url}/v1/client/handshake",
        host=satellite_host,
        params={
            "redirect_url": SATELLITE_APP,
            "format": "nonce",
            "suffixed_cookies": "false",
            "__clerk_hs_reason": "satellite-needs-syncing",
        },
    )
    assert start.status_code == 307
    to_primary = start.headers["location"]
    assert urlsplit(to_primary).netloc == primary_host and urlsplit(to_primary).path == "/v1/client/sync"
    assert query_of(to_primary)["link_domain"] == SATELLITE
    to_link = follow(browser, prod_emulator, to_primary)
    assert to_link.status_code == 307
    assert urlsplit(to_link.headers["location"]).netloc == satellite_host
    back_to_app = follow(browser, prod_emulator, to_link.headers["location"])
    assert back_to_app.status_code == 307 and back_to_app.headers["location"] == SATELLITE_APP
    cookies = set_cookies(back_to_app)
    assert "__client" in cookies  # the satellite FAPI host now knows the client
    session_cookie = directives_of(prod_emulator, browser.http, cookies["__clerk_handshake_nonce"].value)["__session"]
    claims = verify_with_jwks(session_cookie.value, jwks(prod_emulator, browser.http))
    assert claims["sub"] == "user_alice" and claims["azp"] == f"https://{SATELLITE}"
    assert claims["iss"] == f"https://clerk.{SATELLITE}"
    # A later handshake on the satellite needs no sync any more.
    again = browser.get(
        f"{prod_emulator.fapi_url}/v1/client/handshake",
        host=satellite_host,
        params={"redirect_url": f"https://{SATELLITE}/other", "format": "nonce"},
    )
    assert again.headers["location"] == f"https://{SATELLITE}/other"


def prod_sign_in_on_host(server: EmulatorServer, browser: Browser, host: str) -> None:
    response = browser.post(
        f"{server.fapi_url}/v1/client/sign_ins",
        host=host,
        data={"identifier": "alice@example.com", "password": "alice-password"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"redirect_url": "https://sat.test/"}, 422),
        ({"link_domain": "evil.test", "redirect_url": "https://evil.test/"}, 400),
        ({"link_domain": SATELLITE, "redirect_url": "not a url"}, 400),
    ],
)
def test_sync_rejects_bad_parameters(
    prod_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec, params: dict[str, str], status: int
) -> None:
    response = http.get(f"{prod_emulator.fapi_url}/v1/client/sync", params=params)
    assert response.status_code == status
    fapi_openapi.validate_response("/v1/client/sync", "get", response)


def test_link_with_unknown_token_is_422(prod_emulator: EmulatorServer, http: httpx.Client) -> None:
    response = http.get(f"{prod_emulator.fapi_url}/v1/client/link", params={"__clerk_token": "nope"})
    assert response.status_code == 422 and response.json()["errors"][0]["code"] == "sync_token_invalid"


def test_development_satellite_handshakes_with_the_primary_dev_browser(
    dev_emulator: EmulatorServer, http: httpx.Client
) -> None:
    """Dev satellites sync through the primary app (row D5): FAPI just sees the primary's dev browser."""
    token, _ = dev_sign_in(dev_emulator, http)
    response = http.get(
        f"{dev_emulator.fapi_url}/v1/client/handshake",
        params={"redirect_url": "http://sat.test/path", "format": "nonce", "__clerk_db_jwt": token},
    )
    nonce = query_of(response.headers["location"])["__clerk_handshake_nonce"]
    cookies = directives_of(dev_emulator, http, nonce)
    assert cookies["__clerk_db_jwt"].value == token
    assert verify_with_jwks(cookies["__session"].value, jwks(dev_emulator, http))["azp"] == "http://sat.test"


# -- proxy -------------------------------------------------------------------------------------------

PROXY_URL = "https://app.example.com/__clerk"


def proxy_headers(server: EmulatorServer, secret: str | None = None) -> dict[str, str]:
    return {
        "Clerk-Proxy-Url": PROXY_URL,
        "Clerk-Secret-Key": secret or server.secret_key,
        "X-Forwarded-For": "10.0.0.7",
    }


def test_proxied_requests_advertise_and_issue_for_the_proxy_url(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    health = http.get(
        f"{dev_emulator.fapi_url}/v1/proxy-health", params={"domain_id": "x"}, headers=proxy_headers(dev_emulator)
    )
    assert fapi_openapi.validate_response("/v1/proxy-health", "get", health) == {
        "status": "healthy",
        "x_forwarded_for": "10.0.0.7",
    }
    environment = http.get(f"{dev_emulator.fapi_url}/v1/environment", headers=proxy_headers(dev_emulator)).json()
    assert environment["display_config"]["sign_in_url"] == f"{PROXY_URL}/sign-in"
    token, signed_in = dev_sign_in(dev_emulator, http)
    session_id = signed_in["response"]["created_session_id"]
    minted = http.post(
        f"{dev_emulator.fapi_url}/v1/client/sessions/{session_id}/tokens",
        params={"__clerk_db_jwt": token},
        headers=proxy_headers(dev_emulator),
    ).json()["jwt"]
    assert verify_with_jwks(minted, jwks(dev_emulator, http))["iss"] == PROXY_URL
    page = http.get(
        f"{dev_emulator.fapi_url}/sign-in",
        params={"redirect_url": "https://app.example.com/"},
        headers=proxy_headers(dev_emulator),
    )
    assert f'action="{PROXY_URL}/sign-in"' in page.text


def test_proxy_with_wrong_secret_key_is_rejected(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    response = http.get(f"{dev_emulator.fapi_url}/v1/environment", headers=proxy_headers(dev_emulator, "sk_test_wrong"))
    assert response.status_code == 401 and response.json()["errors"][0]["code"] == "clerk_key_invalid"


def test_proxy_health_without_proxy_headers_is_unhealthy(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    assert http.get(f"{dev_emulator.fapi_url}/v1/proxy-health").json()["status"] == "unhealthy"


# -- rotation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["admin-endpoint", "python-api"])
def test_rotation_keeps_the_old_key_published_for_the_grace_period(
    start_emulator: Any, http: httpx.Client, shared_signing_key: Any, via: str
) -> None:
    clock = FakeClock()
    server: EmulatorServer = start_emulator(clock=clock, rotation_grace=300, signing_key=shared_signing_key)
    token, signed_in = dev_sign_in(server, http)
    session_id = signed_in["response"]["created_session_id"]
    old_token = mint_token(server, http, token, session_id)
    old_kid = server.signing_key.kid
    if via == "admin-endpoint":
        response = http.post(f"{server.bapi_url}/v1/__emulator/rotate_keys", headers=bapi_headers(server))
        new_kid = response.json()["kid"]
    else:
        new_kid = server.rotate_keys()
    assert new_kid != old_kid
    published = [key["kid"] for key in jwks(server, http)["keys"]]
    assert published == [new_kid, old_kid]
    verify_with_jwks(old_token, jwks(server, http))  # still verifies during the grace period
    new_token = mint_token(server, http, token, session_id)
    assert verify_with_jwks(new_token, jwks(server, http))["sid"] == session_id
    clock.advance(301)
    assert [key["kid"] for key in jwks(server, http)["keys"]] == [new_kid]


def test_rotation_endpoint_requires_the_secret_key(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    assert http.post(f"{dev_emulator.bapi_url}/v1/__emulator/rotate_keys").status_code == 401


def test_expired_session_gets_no_token(start_emulator: Any, http: httpx.Client, shared_signing_key: Any) -> None:
    clock = FakeClock()
    server: EmulatorServer = start_emulator(clock=clock, signing_key=shared_signing_key)
    token, signed_in = dev_sign_in(server, http)
    clock.advance(8 * 24 * 3600)
    response = http.post(
        f"{server.fapi_url}/v1/client/sessions/{signed_in['response']['created_session_id']}/tokens",
        params={"__clerk_db_jwt": token},
    )
    assert response.status_code == 401 and response.json()["errors"][0]["code"] == "signed_out"


def test_production_hosted_sign_in_sets_client_and_parent_domain_uat(
    prod_emulator: EmulatorServer, browser: Browser
) -> None:
    app = "https://app.primary.test/home"
    wrong = browser.post(
        f"{prod_emulator.fapi_url}/sign-in", data={"identifier": "bob", "password": "nope", "redirect_url": app}
    )
    assert wrong.status_code == 422 and "Wrong email address or password." in wrong.text
    assert "httponly" in set_cookies(wrong)["__client"].attributes
    right = browser.post(
        f"{prod_emulator.fapi_url}/sign-in", data={"identifier": "bob", "password": "bob-password", "redirect_url": app}
    )
    assert right.status_code == 303 and right.headers["location"] == app
    cookies = set_cookies(right)
    assert cookies["__client_uat"].attributes["domain"] == "primary.test" and int(cookies["__client_uat"].value) > 0
    out = browser.get(f"{prod_emulator.fapi_url}/sign-out", params={"redirect_url": app})
    assert out.status_code == 303 and set_cookies(out)["__client_uat"].value == "0"
    prod_sign_in(prod_emulator, browser, "bob@example.com", "bob-password")


@pytest.mark.parametrize("redirect_url", ["", "/relative", "javascript:alert(1)"])
def test_hosted_sign_in_rejects_bad_redirect_urls(
    dev_emulator: EmulatorServer, http: httpx.Client, redirect_url: str
) -> None:
    response = http.get(f"{dev_emulator.fapi_url}/sign-in", params={"redirect_url": redirect_url})
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
