"""Handshake (PROTOCOL.md §4): both formats, both instance types, signed-in and signed-out clients."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from gateway.emulator.server import EmulatorServer
from tests.emulator.conftest import APP_ORIGIN
from tests.emulator.flows import bapi_headers, dev_sign_in, jwks, new_dev_browser, prod_sign_in
from tests.emulator.support import Browser, OpenAPISpec, SetCookie, query_of, set_cookies, verify_with_jwks

REDIRECT = f"{APP_ORIGIN}/dashboard?tab=1"


def handshake(server: EmulatorServer, http: httpx.Client, **params: str) -> httpx.Response:
    query = {"redirect_url": REDIRECT, "__clerk_api_version": "2026-05-12", **params}
    return http.get(f"{server.fapi_url}/v1/client/handshake", params=query)


def payload(server: EmulatorServer, http: httpx.Client, nonce: str) -> httpx.Response:
    return http.get(
        f"{server.bapi_url}/v1/clients/handshake_payload", params={"nonce": nonce}, headers=bapi_headers(server)
    )


def by_name(directives: list[str]) -> dict[str, SetCookie]:
    return {cookie.name: cookie for cookie in map(SetCookie.parse, directives)}


def test_dev_handshake_nonce_round_trip_signs_the_app_in(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec
) -> None:
    token, signed_in = dev_sign_in(dev_emulator, http)
    response = handshake(
        dev_emulator,
        http,
        format="nonce",
        suffixed_cookies="false",
        __clerk_hs_reason="dev-browser-sync",
        __clerk_db_jwt=token,
    )
    assert response.status_code == 307 and response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "&__clerk_handshake_nonce=")
    first = payload(dev_emulator, http, query_of(location)["__clerk_handshake_nonce"])
    assert first.status_code == 200
    directives = first.json()["directives"]
    cookies = by_name(directives)
    assert set(cookies) == {"__session", "__client_uat", "__clerk_db_jwt", f"__refresh_{dev_emulator.cookie_suffix}"}
    assert cookies["__clerk_db_jwt"].value == token
    claims = verify_with_jwks(cookies["__session"].value, jwks(dev_emulator, http))
    assert claims["sid"] == signed_in["response"]["created_session_id"] and claims["azp"] == APP_ORIGIN
    assert int(cookies["__client_uat"].value) <= claims["iat"]
    assert {"secure", "samesite"} <= set(cookies["__session"].attributes)
    second = payload(dev_emulator, http, query_of(location)["__clerk_handshake_nonce"])
    assert second.status_code == 404
    fapi_openapi.validate_component("ClerkErrors", second.json())


def test_dev_handshake_token_format_is_a_jwt_signed_by_the_instance(
    dev_emulator: EmulatorServer, http: httpx.Client
) -> None:
    token, _ = dev_sign_in(dev_emulator, http)
    response = handshake(dev_emulator, http, suffixed_cookies="true", __clerk_db_jwt=token)  # no format = token
    handshake_jwt = query_of(response.headers["location"])["__clerk_handshake"]
    assert jwt.get_unverified_header(handshake_jwt)["typ"] == "JWT"
    directives = verify_with_jwks(handshake_jwt, jwks(dev_emulator, http))["handshake"]
    suffix = dev_emulator.cookie_suffix
    names = set(by_name(directives))
    assert names == {
        f"{base}{tail}" for base in ("__session", "__client_uat", "__clerk_db_jwt") for tail in ("", f"_{suffix}")
    } | {f"__refresh_{suffix}"}


def test_dev_handshake_without_dev_browser_creates_one_and_signs_out(
    dev_emulator: EmulatorServer, http: httpx.Client
) -> None:
    response = handshake(dev_emulator, http, format="nonce", __clerk_hs_reason="dev-browser-missing")
    cookies = by_name(
        payload(dev_emulator, http, query_of(response.headers["location"])["__clerk_handshake_nonce"]).json()[
            "directives"
        ]
    )
    assert cookies["__clerk_db_jwt"].value.startswith("dvb_")
    assert cookies["__session"].value == "" and cookies["__session"].clears
    assert cookies["__client_uat"].value == "0"


def test_handshake_for_revoked_session_sets_signed_out_cookies(
    dev_emulator: EmulatorServer, http: httpx.Client
) -> None:
    token, signed_in = dev_sign_in(dev_emulator, http)
    session_id = signed_in["response"]["created_session_id"]
    revoked = http.post(f"{dev_emulator.bapi_url}/v1/sessions/{session_id}/revoke", headers=bapi_headers(dev_emulator))
    assert revoked.json()["status"] == "revoked"
    response = handshake(dev_emulator, http, format="nonce", __clerk_db_jwt=token)
    directives = payload(dev_emulator, http, query_of(response.headers["location"])["__clerk_handshake_nonce"]).json()
    cookies = by_name(directives["directives"])
    assert cookies["__session"].clears and cookies["__client_uat"].value == "0"


@pytest.mark.parametrize(
    ("organization_id", "expected_org"),
    [("acme", "org_acme"), ("org_acme", "org_acme"), ("", None), ("org_unknown", "org_acme")],
    ids=["slug", "id", "personal", "not-a-member-keeps-current"],
)
def test_handshake_organization_id_sets_the_active_organization(
    dev_emulator: EmulatorServer, http: httpx.Client, organization_id: str, expected_org: str | None
) -> None:
    token, _ = dev_sign_in(dev_emulator, http)
    response = handshake(dev_emulator, http, format="nonce", __clerk_db_jwt=token, organization_id=organization_id)
    directives = payload(dev_emulator, http, query_of(response.headers["location"])["__clerk_handshake_nonce"]).json()
    claims = verify_with_jwks(by_name(directives["directives"])["__session"].value, jwks(dev_emulator, http))
    assert claims.get("o", {}).get("id") == expected_org


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"redirect_url": ""}, "form_param_missing"),
        ({"redirect_url": "/relative/path"}, "form_param_format_invalid"),
        ({"redirect_url": "javascript:alert(1)"}, "form_param_format_invalid"),
        ({"redirect_url": "ftp://app.test/"}, "form_param_format_invalid"),
        ({"redirect_url": "http://app.test:99999/"}, "form_param_format_invalid"),
        ({"format": "jwt"}, "form_param_format_invalid"),
        ({"suffixed_cookies": "maybe"}, "form_param_format_invalid"),
    ],
)
def test_invalid_handshake_parameters_are_400(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec, params: dict[str, str], code: str
) -> None:
    response = handshake(dev_emulator, http, **params)
    assert response.status_code == 400
    assert fapi_openapi.validate_response("/v1/client/handshake", "get", response)["errors"][0]["code"] == code


def test_handshake_payload_needs_the_secret_key_and_a_nonce(dev_emulator: EmulatorServer, http: httpx.Client) -> None:
    url = f"{dev_emulator.bapi_url}/v1/clients/handshake_payload"
    assert http.get(url, params={"nonce": "x"}).status_code == 401
    assert http.get(url, headers=bapi_headers(dev_emulator)).status_code == 400


# -- production -----------------------------------------------------------------------------------


def prod_handshake(server: EmulatorServer, browser: Browser, **params: str) -> httpx.Response:
    query = {"redirect_url": REDIRECT, "format": "nonce", "suffixed_cookies": "true", **params}
    return browser.get(f"{server.fapi_url}/v1/client/handshake", params=query)


def test_prod_handshake_sets_nonce_cookie_on_parent_domain_with_refresh_directive(
    prod_emulator: EmulatorServer, browser: Browser, http: httpx.Client
) -> None:
    prod_sign_in(prod_emulator, browser)
    response = prod_handshake(prod_emulator, browser, __clerk_hs_reason="client-uat-but-no-session-token")
    assert response.status_code == 307 and response.headers["location"] == REDIRECT
    nonce_cookie = set_cookies(response)["__clerk_handshake_nonce"]
    assert nonce_cookie.attributes["domain"] == "primary.test" and "httponly" in nonce_cookie.attributes
    directives = payload(prod_emulator, http, nonce_cookie.value).json()["directives"]
    cookies = by_name(directives)
    suffix = prod_emulator.cookie_suffix
    assert set(cookies) == {
        "__session",
        f"__session_{suffix}",
        "__client_uat",
        f"__client_uat_{suffix}",
        f"__refresh_{suffix}",
    }
    assert cookies[f"__refresh_{suffix}"].value and "httponly" in cookies[f"__refresh_{suffix}"].attributes
    assert cookies["__client_uat"].attributes["domain"] == "primary.test"
    claims = verify_with_jwks(cookies[f"__session_{suffix}"].value, jwks(prod_emulator, http))
    assert claims["iss"] == f"https://{prod_emulator.config.fapi_host}"


def test_prod_handshake_without_client_cookie_clears_everything(
    prod_emulator: EmulatorServer, browser: Browser, http: httpx.Client
) -> None:
    response = prod_handshake(prod_emulator, browser, suffixed_cookies="false")
    directives = payload(prod_emulator, http, set_cookies(response)["__clerk_handshake_nonce"].value).json()
    cookies = by_name(directives["directives"])
    assert cookies["__session"].clears and cookies[f"__refresh_{prod_emulator.cookie_suffix}"].clears
    assert cookies["__client_uat"].value == "0"


def test_prod_legacy_token_format_arrives_as_cookie(
    prod_emulator: EmulatorServer, browser: Browser, http: httpx.Client
) -> None:
    prod_sign_in(prod_emulator, browser)
    response = prod_handshake(prod_emulator, browser, format="token")
    handshake_cookie = set_cookies(response)["__clerk_handshake"]
    directives: list[Any] = verify_with_jwks(handshake_cookie.value, jwks(prod_emulator, http))["handshake"]
    assert any(d.startswith("__session=ey") for d in directives)


def test_prod_nonce_in_query_option(start_emulator: Any, http: httpx.Client) -> None:
    server = start_emulator(production=True, nonce_in_query=True)
    browser = Browser(http)
    prod_sign_in(server, browser)
    response = prod_handshake(server, browser)
    nonce = query_of(response.headers["location"])["__clerk_handshake_nonce"]
    assert "__clerk_handshake_nonce" not in set_cookies(response)
    assert "__session" in by_name(payload(server, http, nonce).json()["directives"])


def test_full_dev_round_trip_from_hosted_sign_in_to_app_cookies(dev_emulator: EmulatorServer, browser: Browser) -> None:
    """Browser signs in on the hosted page, comes back with the dev browser, the app handshakes."""
    app_url = f"{APP_ORIGIN}/after"
    page = browser.get(f"{dev_emulator.fapi_url}/sign-in", params={"redirect_url": app_url})
    assert page.status_code == 200 and "<form" in page.text
    signed_in = browser.post(
        f"{dev_emulator.fapi_url}/sign-in",
        data={"identifier": "alice@example.com", "password": "alice-password", "redirect_url": app_url},
    )
    assert signed_in.status_code == 303
    dev_token = query_of(signed_in.headers["location"])["__clerk_db_jwt"]
    # The gateway sees __clerk_db_jwt in the query (row D6) and sends the browser to FAPI:
    back = browser.get(
        f"{dev_emulator.fapi_url}/v1/client/handshake",
        params={"redirect_url": app_url, "format": "nonce", "__clerk_db_jwt": dev_token, "suffixed_cookies": "false"},
    )
    nonce = query_of(back.headers["location"])["__clerk_handshake_nonce"]
    directives = payload(dev_emulator, browser.http, nonce).json()["directives"]
    claims = verify_with_jwks(by_name(directives)["__session"].value, jwks(dev_emulator, browser.http))
    assert claims["sub"] == "user_alice" and claims["azp"] == APP_ORIGIN
    assert new_dev_browser(dev_emulator, browser.http) != dev_token
