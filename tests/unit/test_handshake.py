"""Handshake URL (PROTOCOL.md §4.1), the 307's headers (§4.2) and resolution of the payload (§4.3)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest

from gateway.clerk.asks import ApiResponse, FetchHandshakePayload
from gateway.clerk.errors import HandshakeVerificationError
from gateway.clerk.keys import make_publishable_key
from gateway.clerk.options import OrganizationSyncOptions
from tests.support.clerk import (
    IAT,
    KID,
    NOW,
    PK_LIVE,
    SUFFIX_LIVE,
    Backend,
    options,
    private_key,
    request,
    run,
    session_token,
)

PK_EXAMPLE = make_publishable_key("clerk.example.com", "production")


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def test_expired_token_handshake_url_is_byte_compatible_with_clerk() -> None:
    token = session_token(iss="https://clerk.example.com")
    state = run(
        request("https://app.example.com/dash?a=1", cookies={"__session": token, "__client_uat": "1"},
                headers={"host": "app.example.com"}),
        options(PK_EXAMPLE),
        now=NOW + 3600,
    )
    assert state.status == "handshake"
    assert state.location == (
        "https://clerk.example.com/v1/client/handshake?redirect_url=https%3A%2F%2Fapp.example.com%2Fdash%3Fa%3D1"
        "&__clerk_api_version=2026-05-12&suffixed_cookies=false"
        "&__clerk_hs_reason=session-token-expired-refresh-non-eligible-no-refresh-cookie&format=nonce"
        f"&__session={token}"
    )


def test_handshake_response_headers_match_clerk_middleware() -> None:
    state = run(request(cookies={"__client_uat": "5"}), options(PK_LIVE))
    names = [name for name, _ in state.headers]
    assert names == ["location", "cache-control", "set-cookie", "x-clerk-auth-status", "x-clerk-auth-reason"]
    assert state.header("cache-control") == "no-store"
    assert state.set_cookies == ["__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"]
    assert state.header("x-clerk-auth-status") == "handshake"
    assert state.header("x-clerk-auth-message") is None


def test_dev_handshake_carries_dev_browser_and_strips_it_from_redirect_url() -> None:
    state = run(request("http://clerk.com/p?q=a%20b&__clerk_db_jwt=fromquery&__dev_session=x&flag"))
    params = query_of(state.location or "")
    assert [name for name, _ in params] == [
        "redirect_url", "__clerk_api_version", "suffixed_cookies", "__clerk_hs_reason", "format", "__clerk_db_jwt",
    ]
    assert dict(params)["redirect_url"] == "http://example.com/p?q=a+b&flag="
    assert dict(params)["__clerk_db_jwt"] == "fromquery"
    assert dict(params)["__clerk_hs_reason"] == "dev-browser-sync"


def test_production_handshake_never_sends_dev_browser() -> None:
    state = run(request(cookies={"__client_uat": "5", "__clerk_db_jwt": "x"}), options(PK_LIVE))
    assert "__clerk_db_jwt" not in dict(query_of(state.location or ""))


@pytest.mark.parametrize(
    ("proxy_url", "expected_base"),
    [
        ("/__clerk", "http://example.com/__clerk/v1/client/handshake?"),
        ("https://proxy.example.com/__clerk/", "https://proxy.example.com/__clerk/v1/client/handshake?"),
    ],
)
def test_proxy_url_becomes_the_handshake_base(proxy_url: str, expected_base: str) -> None:
    state = run(request(cookies={"__client_uat": "5"}), options(PK_LIVE, proxy_url=proxy_url))
    assert (state.location or "").startswith(expected_base)


def test_frontend_api_url_override_points_handshakes_at_a_local_emulator() -> None:
    state = run(request(cookies={"__client_uat": "5"}), options(PK_LIVE, frontend_api_url="http://127.0.0.1:4500"))
    assert (state.location or "").startswith("http://127.0.0.1:4500/v1/client/handshake?redirect_url=")


def test_production_satellite_uses_clerk_dot_domain() -> None:
    state = run(request("http://clerk.com/p?__clerk_synced=false"),
                options(PK_LIVE, is_satellite=True, domain="sat.example"))
    assert (state.location or "").startswith("https://clerk.sat.example/v1/client/handshake?")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/orgs/acme/settings", "acme"), ("/orgs/id/org_123", "org_123"), ("/me", ""), ("/elsewhere", None)],
)
def test_organization_id_parameter_rides_on_every_handshake_for_a_matching_path(path: str,
                                                                                expected: str | None) -> None:
    sync = OrganizationSyncOptions(("/orgs/id/:id", "/orgs/:slug/(.*)"), ("/me",))
    state = run(request(f"http://clerk.com{path}", cookies={"__client_uat": "5"}), options(PK_LIVE,
                                                                                          organization_sync=sync))
    assert dict(query_of(state.location or "")).get("organization_id") == expected


def test_redirect_counter_at_three_stops_the_loop() -> None:
    state = run(request(cookies={"__client_uat": "5", "__clerk_redirect_count": "3"}), options(PK_LIVE))
    assert (state.status, state.reason, state.location) == ("signed-out", "client-uat-but-no-session-token", None)
    assert state.set_cookies == []


@pytest.mark.parametrize(("counter", "next_value"), [("4", "5"), (" 2 ", "3"), ("0x1", "2"), ("3abc", "1")])
def test_redirect_counter_reads_like_javascript_number(counter: str, next_value: str) -> None:
    state = run(request(cookies={"__client_uat": "5", "__clerk_redirect_count": counter}), options(PK_LIVE))
    assert state.status == "handshake"
    assert state.set_cookies == [f"__clerk_redirect_count={next_value}; SameSite=Lax; HttpOnly; Max-Age=2"]


# ----------------------------------------------------------------------------------------------- resolution


def test_row_50_nonce_resolution_sets_cookies_and_redirects_to_the_clean_url() -> None:
    token = session_token()
    directive = f"__session={token}; HttpOnly; Secure; SameSite=Lax"
    backend = Backend(handshake_payload=ApiResponse(200, {"directives": [directive, "__client_uat=1; Path=/"]}))
    state = run(
        request("http://clerk.com/page?__clerk_handshake_nonce=abc123&foo=bar&__clerk_help=1&__clerk_db_jwt=x"),
        backend=backend,
    )
    assert state.status == "signed-in"
    assert backend.asked(FetchHandshakePayload) == [FetchHandshakePayload("abc123")]
    assert state.set_cookies == [directive, "__client_uat=1; Path=/"]
    assert state.location == "http://example.com/page?foo=bar"
    assert state.header("cache-control") == "no-store"
    assert state.header("access-control-allow-origin") == "null"
    assert state.header("access-control-allow-credentials") == "true"
    assert state.claims is not None and state.claims.user_id is not None


def test_production_nonce_resolution_has_no_location_and_continues_to_the_app() -> None:
    token = session_token()
    backend = Backend(handshake_payload=ApiResponse(200, {"directives": [f"__session_{SUFFIX_LIVE}={token}; Path=/"]}))
    state = run(request(cookies={"__clerk_handshake_nonce": "n1"}), options(PK_LIVE), backend=backend)
    assert state.status == "signed-in"
    assert state.location is None
    assert state.token == token


def test_failed_nonce_exchange_is_final_signed_out_session_token_missing() -> None:
    backend = Backend(handshake_payload=ApiResponse(None))
    state = run(request("http://clerk.com/p?__clerk_handshake_nonce=gone",
                        cookies={"__session": session_token(), "__client_uat": "1", "__clerk_db_jwt": "d"}),
                backend=backend)
    assert (state.status, state.reason, state.message) == ("signed-out", "session-token-missing", "")
    assert state.location == "http://example.com/p"


def test_handshake_token_format_is_verified_and_resolved() -> None:
    token = session_token()
    handshake = jwt.encode({"handshake": [f"__session={token}; Path=/"]}, private_key(), algorithm="RS256",
                           headers={"kid": KID})
    state = run(request(f"http://clerk.com/p?__clerk_handshake={handshake}"))
    assert state.status == "signed-in"
    assert state.location == "http://example.com/p"


def test_dev_handshake_token_with_bad_signature_fails_the_request() -> None:
    forged = jwt.encode({"handshake": []}, private_key("other"), algorithm="RS256", headers={"kid": KID})
    with pytest.raises(HandshakeVerificationError, match="invalid signature"):
        run(request(f"http://clerk.com/p?__clerk_handshake={forged}"))


def test_production_handshake_token_with_bad_signature_falls_through_to_cookies() -> None:
    forged = jwt.encode({"handshake": ["__session=x"]}, private_key("other"), algorithm="RS256", headers={"kid": KID})
    state = run(request(cookies={"__clerk_handshake": forged}), options(PK_LIVE))
    assert (state.status, state.reason) == ("signed-out", "session-token-and-uat-missing")
    assert state.set_cookies == []


def test_production_handshake_with_expired_session_falls_through_to_cookies() -> None:
    expired = session_token(exp=IAT - 100, iat=IAT - 160, nbf=IAT - 170)
    backend = Backend(handshake_payload=ApiResponse(200, {"directives": [f"__session={expired}"]}))
    state = run(request(cookies={"__clerk_handshake_nonce": "n"}), options(PK_LIVE), backend=backend)
    assert (state.status, state.reason) == ("signed-out", "session-token-and-uat-missing")


def test_dev_handshake_retries_with_a_day_of_clock_skew() -> None:
    expired = session_token(exp=IAT - 3600, iat=IAT - 3660, nbf=IAT - 3670)
    backend = Backend(handshake_payload=ApiResponse(200, {"directives": [f"__session={expired}"]}))
    state = run(request("http://clerk.com/p?__clerk_handshake_nonce=n"), backend=backend)
    assert state.status == "signed-in"
