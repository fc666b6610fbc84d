"""Reading Clerk's cookies (PROTOCOL.md §2.1) and choosing the cookie family (§2.2, rules 1-8)."""

from __future__ import annotations

import pytest

from gateway.clerk.asks import ApiResponse, RefreshSession
from gateway.clerk.cookies import js_number, js_parse_int, parse_cookie_header
from gateway.clerk.options import OrganizationSyncOptions
from tests.support.clerk import (
    FAPI,
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


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("__session=; __session=jwt", {"__session": ""}),  # the first occurrence wins, even empty
        (" a = 1 ;\tb=\t2", {"a": "1", "b": "2"}),
        ('q="quoted"', {"q": '"quoted"'}),  # quotes are kept
        ("novalue; a=1", {"a": "1"}),  # a segment without = is skipped
        ("p=a%20b", {"p": "a b"}),
        ("p=100%", {"p": "100%"}),  # malformed escape: kept raw
        ("p=%E0%A4%A", {"p": "%E0%A4%A"}),
        ("p=%C3%28", {"p": "%C3%28"}),  # invalid UTF-8: kept raw
        ("eq=a=b", {"eq": "a=b"}),
    ],
)
def test_cookie_header_parsing(header: str, expected: dict[str, str]) -> None:
    assert parse_cookie_header(header) == expected


@pytest.mark.parametrize(
    ("value", "number"),
    [("12abc", 12), ("-5", -5), ("  42", 42), ("0x1A", 26), ("abc", 0), ("", 0), (None, 0), ("0", 0), ("+7", 7)],
)
def test_client_uat_reads_like_javascript_parse_int(value: str | None, number: int) -> None:
    assert js_parse_int(value) == number


@pytest.mark.parametrize(
    ("value", "number"),
    [(" 3 ", 3), ("3.0", 3), ("0x3", 3), ("3abc", 0), ("", 0), (None, 0), ("1e1", 10), ("-2", -2)],
)
def test_redirect_counter_reads_like_javascript_number(value: str | None, number: float) -> None:
    assert js_number(value) == number


def family(pk: str, cookies: dict[str, str], now: float = NOW) -> str:
    """Which family the decision used: the handshake URL says `suffixed_cookies=...`."""
    state = run(request(cookies={**cookies, "__clerk_db_jwt": "db"} if pk == PK_TEST else cookies), options(pk),
                now=now)
    assert state.location is not None, (state.status, state.reason)
    return "suffixed" if "suffixed_cookies=true" in state.location else "unsuffixed"


OTHER_ISSUER = session_token(iss="https://clerk.other.example")
OLD = session_token(iat=IAT - 100, nbf=IAT - 110, exp=IAT - 40)
NEW = session_token(iat=IAT + 100, nbf=IAT + 90, exp=IAT + 160)


@pytest.mark.parametrize(
    ("rule", "pk", "cookies", "expected"),
    [
        ("1: plain session that is no JWT", PK_LIVE, {"__session": "garbage", f"__client_uat_{SUFFIX_LIVE}": "5",
                                                      f"__session_{SUFFIX_LIVE}": NEW}, "unsuffixed"),
        ("2: plain session from another instance", PK_LIVE,
         {"__session": OTHER_ISSUER, f"__client_uat_{SUFFIX_LIVE}": "5"}, "suffixed"),
        ("3: no suffixed cookies at all", PK_LIVE, {"__session": NEW, "__client_uat": "1"}, "unsuffixed"),
        ("4: plain session newer than the suffixed one", PK_LIVE,
         {"__session": NEW, "__client_uat": "1", f"__session_{SUFFIX_LIVE}": OLD, f"__client_uat_{SUFFIX_LIVE}": "1"},
         "unsuffixed"),
        ("5: suffixed uat 0, plain uat set", PK_LIVE,
         {"__client_uat": "1", f"__client_uat_{SUFFIX_LIVE}": "0"}, "unsuffixed"),
        ("7: suffixed session without suffixed uat", PK_LIVE,
         {f"__session_{SUFFIX_LIVE}": OLD, "__client_uat": "1"}, "unsuffixed"),
        ("8: otherwise suffixed", PK_LIVE,
         {"__session": OLD, "__client_uat": "1", f"__session_{SUFFIX_LIVE}": NEW, f"__client_uat_{SUFFIX_LIVE}": "1"},
         "suffixed"),
    ],
    ids=lambda value: value if isinstance(value, str) and value[:1].isdigit() else None,
)
def test_cookie_family_rules(rule: str, pk: str, cookies: dict[str, str], expected: str) -> None:
    assert family(pk, cookies, now=NOW + 3600) == expected


def test_rule_6_dev_instance_prefers_plain_when_the_suffixed_session_expired() -> None:
    cookies = {f"__client_uat_{SUFFIX_TEST}": "5", "__client_uat": "0", f"__session_{SUFFIX_TEST}": OLD,
               "__session": NEW}
    assert family(PK_TEST, cookies) == "unsuffixed"
    live = {f"__client_uat_{SUFFIX_LIVE}": "5", "__client_uat": "0", f"__session_{SUFFIX_LIVE}": OLD, "__session": NEW}
    assert family(PK_LIVE, live) == "suffixed"  # production instances skip rule 6


def test_a_token_from_another_instance_without_suffixed_cookies_is_simply_missing() -> None:
    state = run(request(cookies={"__session": OTHER_ISSUER, "__client_uat": "1"}), options(PK_LIVE))
    assert (state.status, state.reason) == ("signed-out", "session-token-and-uat-missing")


def test_issuer_comparison_ignores_every_scheme_prefix_case_insensitively() -> None:
    token = session_token(iss=f"HTTPS://{FAPI}")
    state = run(request(cookies={"__session": token, "__client_uat": "1", "__clerk_db_jwt": "db"}))
    assert state.status == "signed-in"


# ------------------------------------------------------------------------------------- refresh reasons


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (ApiResponse(None), "fetch-error"),
        (ApiResponse(500, {"errors": [{"code": "unexpected_error"}]}), "fetch-error"),
        (ApiResponse(401, {"errors": [{"code": "session_revoked", "message": "x"}]}), "session_revoked"),
        (ApiResponse(502, None, body_is_json=False), "unexpected-bapi-error"),
        (ApiResponse(400, {}), "unexpected-bapi-error"),
        (ApiResponse(200, {"object": "cookies", "cookies": []}), "unexpected-sdk-error"),
        (ApiResponse(200, {"object": "cookies", "cookies": ["__session=not.a.jwt; Path=/"]}), "invalid-session-token"),
    ],
)
def test_failed_refresh_reports_clerks_reason_and_falls_back_to_a_handshake(reply: ApiResponse, reason: str) -> None:
    backend = Backend(refresh=reply)
    state = run(request(cookies={"__session": session_token(), "__client_uat": "1", f"__refresh_{SUFFIX_LIVE}": "r"}),
                options(PK_LIVE), now=NOW + 3600, backend=backend)
    assert (state.status, state.reason) == ("handshake", f"session-token-expired-refresh-{reason}")
    assert state.message.startswith("JWT is expired.")
    assert len(backend.asked(RefreshSession)) == 1


def test_refresh_sends_the_cookie_token_and_fails_when_it_does_not_decode() -> None:
    """The expired token sent to refresh is the cookie's when there is one, even on the header path."""
    state = run(request(cookies={"__session": "not-a-jwt", f"__refresh_{SUFFIX_LIVE}": "r"},
                        headers={"authorization": f"Bearer {session_token()}"}), options(PK_LIVE), now=NOW + 3600)
    assert state.reason == "session-token-expired-refresh-expired-session-token-decode-failed"


def test_refresh_needs_a_sid_claim() -> None:
    cookies = {"__session": session_token(sid=_drop()), "__client_uat": "1", f"__refresh_{SUFFIX_LIVE}": "r"}
    state = run(request(cookies=cookies), options(PK_LIVE), now=NOW + 3600)
    assert state.reason == "session-token-expired-refresh-expired-session-token-missing-sid-claim"


def test_refresh_without_secret_key_is_missing_api_client() -> None:
    state = run(request(cookies={"__session": session_token(), "__client_uat": "1", f"__refresh_{SUFFIX_LIVE}": "r"}),
                options(PK_LIVE, secret_key=None, jwt_key=_public_key()), now=NOW + 3600)
    assert state.reason == "session-token-expired-refresh-missing-api-client"


def test_non_get_expired_is_non_eligible_unless_the_gateway_extends_refresh() -> None:
    cookies = {"__session": session_token(), "__client_uat": "1", f"__refresh_{SUFFIX_LIVE}": "r"}
    state = run(request(method="POST", cookies=cookies), options(PK_LIVE), now=NOW + 3600)
    assert (state.status, state.reason) == ("signed-out", "session-token-expired-refresh-non-eligible-non-get")
    backend = Backend(refresh=ApiResponse(None))
    extended = run(request(method="POST", cookies=cookies), options(PK_LIVE, refresh_any_method=True),
                   now=NOW + 3600, backend=backend)
    assert extended.reason == "session-token-expired-refresh-fetch-error"
    assert len(backend.asked(RefreshSession)) == 1


# ------------------------------------------------------------------------------------- organization sync (D16)


@pytest.mark.parametrize(
    ("counter", "dest", "status"),
    [("0", "document", "handshake"), ("3", "document", "signed-in"), ("0", "empty", "signed-in")],
)
def test_organization_mismatch_handshakes_only_for_eligible_navigations(counter: str, dest: str, status: str) -> None:
    opts = options(PK_LIVE, organization_sync=OrganizationSyncOptions(("/orgs/:slug",), ()))
    state = run(request("https://app.com/orgs/acme", dest=dest, headers={"host": "app.com"},
                        cookies={"__client_uat": "1", "__session": session_token(), "__clerk_redirect_count": counter}),
                opts)
    assert state.status == status


def _drop() -> object:
    from tests.support.clerk import DROP

    return DROP


def _public_key() -> object:
    from tests.support.clerk import private_key

    return private_key().public_key()
