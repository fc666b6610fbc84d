"""The scenario checklist of PROTOCOL.md §11, one row per test, in the table's numbering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from gateway.clerk.asks import ApiResponse, KeysAnswer, RefreshSession
from gateway.clerk.jwk import KeySet
from gateway.clerk.options import OrganizationSyncOptions
from tests.support.clerk import (
    IAT,
    NOW,
    PK_LIVE,
    PK_TEST,
    SUFFIX_LIVE,
    SUFFIX_TEST,
    Backend,
    options,
    request,
    run,
    session_token,
)

DB = {"__clerk_db_jwt": "deadbeef"}
DEV_SAT = {"is_satellite": True, "domain": "satellite.dev", "sign_in_url": "https://primary.dev/sign-in"}
PROD_SAT = {"is_satellite": True, "domain": "satellite.example"}


def refreshed_backend() -> Backend:
    fresh = session_token(iat=IAT + 3600, nbf=IAT + 3590, exp=IAT + 3660)
    return Backend(
        refresh=ApiResponse(
            200, {"object": "cookies", "cookies": [f"__session_{SUFFIX_LIVE}={fresh}; Path=/; Secure; SameSite=Lax"]}
        )
    )


@dataclass
class Row:
    number: str
    request: Callable[[], Any]
    status: str
    reason: str = ""
    pk: str = PK_TEST
    opts: dict[str, Any] = field(default_factory=dict)
    now: float = NOW
    backend: Callable[[], Backend] = Backend
    location: str | None = None  # expected Location prefix
    message_starts: str | None = None
    check: Callable[[Any, Backend], None] | None = None


def no_location(state: Any, backend: Backend) -> None:
    assert state.location is None


def refresh_called_with_suffixed_cookie(state: Any, backend: Backend) -> None:
    (ask,) = backend.asked(RefreshSession)
    assert ask.refresh_token == "x"
    assert state.set_cookies[0].startswith(f"__session_{SUFFIX_LIVE}=")


def no_refresh_call(state: Any, backend: Backend) -> None:
    assert backend.asked(RefreshSession) == []


def synced_true_not_false(state: Any, backend: Backend) -> None:
    query = parse_qsl(urlsplit(state.location).query)
    assert ("__clerk_synced", "true") in query and ("__clerk_synced", "false") not in query


def counter_cookie_3(state: Any, backend: Backend) -> None:
    assert "__clerk_redirect_count=3; SameSite=Lax; HttpOnly; Max-Age=2" in state.set_cookies


ROWS = [
    Row("1", lambda: request(headers={"authorization": f"Bearer {session_token()}"}), "signed-in"),
    Row("2", lambda: request(headers={"authorization": session_token()}), "signed-in"),
    Row("3", lambda: request(headers={"authorization": "Basic dXNlcjpwYXNzd29yZA=="}), "handshake",
        "dev-browser-missing"),
    Row("4", lambda: request(headers={"authorization": f"Bearer {session_token()}"}), "signed-out",
        "token-invalid-authorized-parties", opts={"authorized_parties": ("whatever",)}),
    Row("5", lambda: request(headers={"authorization": f"Bearer {session_token()}"}), "handshake",
        "session-token-expired-refresh-non-eligible-no-refresh-cookie", now=NOW + 3600),
    Row("6", lambda: request(headers={"authorization": f"Bearer {session_token()[:-6]}AAAAAA"}), "signed-out",
        "token-invalid-signature"),
    Row("7", lambda: request(headers={"authorization": "Bearer test_header_token"}), "signed-out", "token-invalid"),
    Row("8", lambda: request(headers={"authorization": f"Bearer {session_token()}"}), "signed-out",
        "jwk-remote-failed-to-load",
        backend=lambda: _empty_jwks_backend()),
    Row("9", lambda: request(headers={"authorization": f"Bearer {session_token(headers={'cat': 'cl_B7d4PD222AAA'})}"}),
        "signed-out", "token-type-mismatch"),
    Row("10", lambda: request(cookies={"__session": session_token(sub="mch_123"), **DB, "__client_uat": "12345"}),
        "signed-out", "token-type-mismatch"),
    Row("11", lambda: request(), "signed-out", "session-token-and-uat-missing", pk=PK_LIVE),
    Row("12", lambda: request(cookies={"__client_uat": "0"}), "signed-out", "session-token-and-uat-missing",
        pk=PK_LIVE),
    Row("13", lambda: request(cookies={"__client_uat": "12345"}), "handshake", "client-uat-but-no-session-token",
        pk=PK_LIVE),
    Row("14", lambda: request(method="POST", cookies={"__client_uat": "12345"}), "signed-out",
        "client-uat-but-no-session-token", pk=PK_LIVE, check=no_location),
    Row("15", lambda: request(cookies={"__session": session_token()}), "handshake", "dev-browser-missing"),
    Row("16", lambda: request(), "handshake", "dev-browser-missing"),
    Row("17", lambda: request(cookies={**DB, "__session": session_token()}), "handshake",
        "session-token-but-no-client-uat"),
    Row("18", lambda: request(cookies={**DB, "__client_uat": str(IAT + 10), "__session": session_token()}),
        "handshake", "session-token-iat-before-client-uat"),
    Row("19", lambda: request(method="POST",
                              cookies={**DB, "__client_uat": str(IAT + 10), "__session": session_token()}),
        "signed-out", "session-token-iat-before-client-uat"),
    Row("20", lambda: request(cookies={**DB, "__client_uat": str(IAT - 10), "__session": session_token()}),
        "signed-in"),
    Row("21", lambda: request(cookies={**DB, "__client_uat": str(IAT - 10), "__session": session_token(sub=_drop())}),
        "signed-out", "token-verification-failed"),
    Row("22", lambda: request(cookies={**DB, "__client_uat": str(IAT - 10), "__session": session_token()}),
        "handshake", "session-token-expired-refresh-non-eligible-no-refresh-cookie", now=NOW + 3600,
        message_starts="JWT is expired"),
    Row("23", lambda: request(cookies={"__client_uat": "12345", "__session": session_token()},
                              headers={"user-agent": "Amazon CloudFront"}), "signed-in", pk=PK_LIVE),
    Row("24", lambda: request(cookies={"__client_uat": "12345", "__session": session_token(),
                                       f"__refresh_{SUFFIX_LIVE}": "x"}),
        "signed-in", pk=PK_LIVE, now=NOW + 3600, backend=refreshed_backend, check=refresh_called_with_suffixed_cookie),
    Row("25", lambda: request(cookies={"__client_uat": "12345", "__session": session_token()}),
        "handshake", "session-token-expired-refresh-non-eligible-no-refresh-cookie", pk=PK_LIVE, now=NOW + 3600,
        backend=refreshed_backend, check=no_refresh_call),
    Row("26", lambda: request(cookies={"__session": session_token(), f"__refresh_{SUFFIX_LIVE}": "x"}),
        "handshake", "session-token-but-no-client-uat", pk=PK_LIVE, now=NOW + 3600, backend=refreshed_backend,
        check=no_refresh_call),
    Row("27", lambda: request(cookies={"__client_uat": "12345", "__session": session_token(),
                                       f"__refresh_{SUFFIX_LIVE}": "x", "__refresh": "should_not_be_used"}),
        "signed-in", pk=PK_LIVE, now=NOW + 3600, backend=refreshed_backend, check=refresh_called_with_suffixed_cookie),
    Row("28", lambda: request(cookies={"__client_uat": "0", **DB}), "handshake", "satellite-needs-syncing",
        opts={**DEV_SAT, "satellite_auto_sync": True},
        location="https://primary.dev/sign-in?__clerk_redirect_url=http%3A%2F%2Fexample.com%2Fpath"),
    Row("29", lambda: request(cookies={"__client_uat": "0"}, dest="empty"), "signed-out",
        "session-token-and-uat-missing", pk=PK_LIVE, opts=PROD_SAT),
    Row("30", lambda: request(cookies={"__client_uat": "0"}), "signed-out", "session-token-and-uat-missing",
        pk=PK_LIVE, opts=PROD_SAT, check=no_location),
    Row("31", lambda: request("http://clerk.com/path?__clerk_synced=false", cookies={"__client_uat": "0"}),
        "handshake", "satellite-needs-syncing", pk=PK_LIVE, opts=PROD_SAT,
        location="https://clerk.satellite.example/v1/client/handshake?redirect_url=http%3A%2F%2Fexample.com%2Fpath"
                 "%3F__clerk_synced%3Dfalse&"),
    Row("32", lambda: request("http://clerk.com/path?__clerk_synced=true", cookies={"__client_uat": "0"}),
        "signed-out", "session-token-and-uat-missing", pk=PK_LIVE, opts=PROD_SAT),
    Row("33", lambda: request("http://clerk.com/path?__clerk_synced=false",
                              cookies={"__client_uat": "0", "__clerk_redirect_count": "3"}),
        "signed-out", "satellite-needs-syncing", pk=PK_LIVE, opts=PROD_SAT, check=no_location),
    Row("34", lambda: request(method="POST", cookies={"__client_uat": "0"}), "signed-out",
        "session-token-and-uat-missing", pk=PK_LIVE, opts=PROD_SAT),
    Row("35", lambda: request(cookies={"__client_uat": "0", **DB}), "signed-out", "session-token-and-uat-missing",
        opts=DEV_SAT, check=no_location),
    Row("36", lambda: request("http://clerk.com/path?__clerk_synced=false", cookies={"__client_uat": "0", **DB}),
        "handshake", "satellite-needs-syncing", opts=DEV_SAT, location="https://primary.dev/sign-in?"),
    Row("37", lambda: request("http://clerk.com/path?__clerk_synced=true&__clerk_db_jwt=deadbeef"),
        "handshake", "dev-browser-sync", opts=DEV_SAT,
        location="https://clerk.inspired.puma-74.lcl.dev/v1/client/handshake?"),
    Row("38", lambda: request("http://clerk.com/path?__clerk_synced=true", cookies=DB), "signed-out",
        "session-token-and-uat-missing", opts=DEV_SAT),
    Row("39", lambda: request(cookies={**DB, "__client_uat": "12345", "__session": session_token()}, dest="empty",
                              headers={"referer": "https://clerk.com"}), "signed-in", opts=DEV_SAT),
    Row("40", lambda: request("http://clerk.com/path?__clerk_redirect_url=http://localhost:3000",
                              cookies={"__client_uat": "12345", "__session": session_token()}),
        "handshake", "primary-responds-to-syncing", location="http://localhost:3000/?__clerk_synced=true"),
    Row("41", lambda: request("http://clerk.com/path?__clerk_redirect_url="
                              "http%3A%2F%2Flocalhost%3A3001%2Fdashboard%3F__clerk_synced%3Dfalse%26__clerk_db_jwt%3Dx",
                              cookies=DB),
        "handshake", "primary-responds-to-syncing", check=synced_true_not_false),
    Row("42", lambda: request("https://primary.com/dashboard", cookies={"__client_uat": "12345",
                                                                        "__session": session_token()},
                              headers={"host": "primary.com", "referer": "https://satellite.com/signin"}),
        "handshake", "primary-domain-cross-origin-sync", pk=PK_LIVE),
    Row("43", lambda: request("https://primary.com/dashboard", cookies={"__client_uat": "12345",
                                                                        "__session": session_token()},
                              headers={"host": "primary.com", "referer": "https://accounts.example.com/sign-in"}),
        "handshake", "primary-domain-cross-origin-sync", pk=PK_LIVE),
    *[
        Row(f"44{suffix}", lambda referer=referer: request(
            "https://primary.com/dashboard", cookies={"__client_uat": "12345", "__session": session_token()},
            headers={"host": "primary.com", "referer": referer}), "signed-in", pk=PK_LIVE)
        for suffix, referer in (("-same-origin", "https://primary.com/other"), ("-absent", None),
                                ("-invalid", "not a url"))
    ],
    Row("45-post", lambda: request("https://primary.com/dashboard", method="POST",
                                   cookies={"__client_uat": "12345", "__session": session_token()},
                                   headers={"host": "primary.com", "referer": "https://satellite.com/signin"}),
        "signed-in", pk=PK_LIVE),
    Row("45-fetch", lambda: request("https://primary.com/dashboard", dest="empty",
                                    cookies={"__client_uat": "12345", "__session": session_token()},
                                    headers={"host": "primary.com", "referer": "https://satellite.com/signin"}),
        "signed-in", pk=PK_LIVE),
    *[
        Row(f"46-{name}", lambda referer=referer: request(
            "https://primary.com/dashboard", cookies={"__client_uat": "12345", "__session": session_token()},
            headers={"host": "primary.com", "referer": referer}), "signed-in", pk=PK_LIVE)
        for name, referer in (("fapi", "https://clerk.inspired.puma-74.lcl.dev/v1/x"),
                              ("account-portal", "https://accounts.inspired.puma-74.lcl.dev/sign-in"))
    ],
    Row("47", lambda: request("https://primary.com/dashboard", cookies={"__client_uat": "12345",
                                                                        "__session": session_token()},
                              headers={"host": "primary.com", "referer": "https://foo-bar-13.accounts.dev/sign-in"}),
        "handshake", "primary-domain-cross-origin-sync", pk=PK_LIVE),
    Row("48", lambda: request(cookies={"__client_uat": "12345", "__clerk_redirect_count": "2"}), "handshake",
        "client-uat-but-no-session-token", pk=PK_LIVE, check=counter_cookie_3),
    Row("49-iframe", lambda: request(cookies={"__client_uat": "12345"}, dest="iframe"), "handshake",
        "client-uat-but-no-session-token", pk=PK_LIVE),
    Row("49-accept-html", lambda: request(cookies={"__client_uat": "12345"}, dest=None,
                                          headers={"accept": "text/html,application/xhtml+xml"}),
        "handshake", "client-uat-but-no-session-token", pk=PK_LIVE),
    Row("49-put-document", lambda: request(method="PUT", cookies={"__client_uat": "12345"}), "signed-out",
        "client-uat-but-no-session-token", pk=PK_LIVE),
]


def _drop() -> Any:
    from tests.support.clerk import DROP

    return DROP


def _empty_jwks_backend() -> Backend:
    from gateway.clerk.asks import KeyFailure

    return Backend(
        keys=KeySet(),
        keys_answer=KeysAnswer(KeySet(), KeyFailure("jwk-remote-failed-to-load", "The JWKS endpoint did not "
                                                    "contain any signing keys. Contact support@clerk.com.")),
    )


@pytest.mark.parametrize("row", ROWS, ids=[row.number for row in ROWS])
def test_protocol_scenario(row: Row) -> None:
    backend = row.backend()
    state = run(row.request(), options(row.pk, **row.opts), now=row.now, backend=backend)
    assert (state.status, state.reason) == (row.status, row.reason)
    if row.status == "handshake":
        assert state.header("cache-control") == "no-store"
        assert state.location is not None
    if row.location is not None:
        assert state.location is not None and state.location.startswith(row.location), state.location
    if row.message_starts is not None:
        assert state.message.startswith(row.message_starts)
    if row.status != "signed-in":
        assert state.header("x-clerk-auth-status") == row.status
        assert state.header("x-clerk-auth-reason") == row.reason
    else:
        assert state.header("x-clerk-auth-status") is None
    if row.check is not None:
        row.check(state, backend)


def test_row_6_message_names_reason_and_carrier() -> None:
    state = run(request(headers={"authorization": f"Bearer {session_token()[:-6]}AAAAAA"}))
    assert state.message == "JWT signature is invalid. (reason=token-invalid-signature, token-carrier=header)"
    assert state.header("x-clerk-auth-message") == state.message


def test_suffix_constants_match_the_protocol() -> None:
    assert options(PK_TEST).cookie_suffix == SUFFIX_TEST
    assert options(PK_LIVE).cookie_suffix == SUFFIX_LIVE


def test_org_sync_rows_use_organization_sync_options() -> None:
    opts = options(PK_LIVE, organization_sync=OrganizationSyncOptions(("/orgs/:slug",), ()))
    state = run(request("https://app.com/orgs/acme", cookies={"__client_uat": "12345", "__session": session_token()},
                        headers={"host": "app.com"}), opts)
    assert (state.status, state.reason) == ("handshake", "active-organization-mismatch")
    assert state.location is not None and state.location.endswith("&organization_id=acme")
