"""`verifyToken` (PROTOCOL.md §7.1): order of checks, every reason and the exact §7.5 message texts,
clock-skew boundaries, the PEM key path (§7.4) and key-resolution failures (§7.3, §3.3 step 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gateway.clerk.asks import FetchKeys, KeyFailure, KeysAnswer
from gateway.clerk.jwk import KeySet
from gateway.clerk.tokens import TokenVerificationError
from tests.support.clerk import (
    AZP,
    DROP,
    IAT,
    KID,
    NOW,
    PK_LIVE,
    PK_TEST,
    Backend,
    claims,
    key_set,
    options,
    private_key,
    request,
    run,
    session_token,
    unsigned_token,
)
from tests.support.forge import (
    flip_trailing_bits,
    segment,
    signed_raw,
    standard_alphabet,
    verify,
    with_signature_segment,
)

A = "Make sure that this is a valid Clerk-generated JWT."
THREE_PARTS = "Invalid JWT form. A JWT consists of three parts separated by dots."
UNDECODABLE = "Invalid JWT form. The header, payload, or signature could not be decoded."
PEM_ALG_MESSAGE = 'Error verifying JWT signature. Error: JWK "alg" does not match the requested algorithm ' + A
D_NOW = "Mon, 24 Oct 2022 21:50:50 GMT"
D_NOW_MINUS_5 = "Mon, 24 Oct 2022 21:50:45 GMT"
D_NOW_PLUS_6 = "Mon, 24 Oct 2022 21:50:56 GMT"
D_NOW_PLUS_3600 = "Mon, 24 Oct 2022 22:50:50 GMT"
D_NOW_PLUS_60 = "Mon, 24 Oct 2022 21:51:50 GMT"
RS256 = {"alg": "RS256", "typ": "JWT", "kid": KID}
PARTIES = ("https://a.example", "https://b.example")


def failure(token: str, **kwargs: Any) -> TokenVerificationError:
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, **kwargs)
    return caught.value


def full(error: TokenVerificationError) -> str:
    return f"{error.message} {error.action}" if error.action else error.message


@dataclass
class Case:
    name: str
    token: Any  # () -> str
    reason: str
    message: str
    opts: dict[str, Any] | None = None
    now: float = NOW


def _valid_segments() -> tuple[str, str, str]:
    header, payload, signature = session_token().split(".")
    return header, payload, signature


CASES = [
    # Step 1: decoding.
    Case("one-part", lambda: "test_header_token", "token-invalid", THREE_PARTS),
    Case("four-parts", lambda: session_token() + ".x", "token-invalid", THREE_PARTS),
    Case("opaque-machine-prefix", lambda: "ak_live_123", "token-invalid", THREE_PARTS),
    Case("header-not-json", lambda: f"{segment('not json')}.{_valid_segments()[1]}.{_valid_segments()[2]}",
         "token-invalid", UNDECODABLE),
    Case("payload-not-base64url", lambda: f"{_valid_segments()[0]}.%%%%.{_valid_segments()[2]}",
         "token-invalid", UNDECODABLE),
    # JSON.parse rejects NaN/Infinity: a payload that is not JSON cannot be decoded, whatever Python accepts.
    Case("payload-with-NaN-is-not-json", lambda: signed_raw(RS256, '{"sub":"user_1","exp":NaN}'),
         "token-invalid", UNDECODABLE),
    Case("payload-with-Infinity-is-not-json",
         lambda: signed_raw(RS256, f'{{"sub":"user_1","exp":{IAT + 60},"nbf":Infinity}}'),
         "token-invalid", UNDECODABLE),
    # base64url only: the standard alphabet's `+`/`/` are not part of it.
    Case("signature-in-standard-base64", lambda: _standard_signature(), "token-invalid", UNDECODABLE),
    Case("signature-with-non-zero-trailing-bits",
         lambda: with_signature_segment(session_token(), flip_trailing_bits(_valid_segments()[2])),
         "token-invalid", UNDECODABLE),
    # Step 4: typ.
    Case("typ-jose", lambda: session_token(headers={"typ": "JOSE"}), "token-invalid",
         f'Invalid JWT type "JOSE". Expected "JWT". {A}'),
    Case("typ-null", lambda: signed_raw({**RS256, "typ": None}, claims()), "token-invalid",
         f'Invalid JWT type null. Expected "JWT". {A}'),
    # Step 5: alg.
    Case("alg-hs256", lambda: unsigned_token({**RS256, "alg": "HS256"}, claims()), "token-invalid-algorithm",
         f"Invalid JWT algorithm \"HS256\". Supported: RS256,RS384,RS512. {A}"),
    Case("alg-none", lambda: unsigned_token({**RS256, "alg": "none"}, claims(), b""), "token-invalid-algorithm",
         f"Invalid JWT algorithm \"none\". Supported: RS256,RS384,RS512. {A}"),
    Case("alg-absent", lambda: unsigned_token({"typ": "JWT", "kid": KID}, claims()), "token-invalid-algorithm",
         f"Invalid JWT algorithm undefined. Supported: RS256,RS384,RS512. {A}"),
    Case("alg-es256", lambda: unsigned_token({**RS256, "alg": "ES256"}, claims()), "token-invalid-algorithm",
         f"Invalid JWT algorithm \"ES256\". Supported: RS256,RS384,RS512. {A}"),
    # Step 6: signature.
    Case("signature-of-another-key", lambda: session_token("other"), "token-invalid-signature",
         "JWT signature is invalid."),
    Case("signature-empty", lambda: with_signature_segment(session_token(), ""), "token-invalid-signature",
         "JWT signature is invalid."),
    # Step 7: sub.
    Case("sub-absent", lambda: session_token(sub=DROP), "token-verification-failed",
         f"Subject claim (sub) is required and must be a string. Received undefined. {A}"),
    Case("sub-number", lambda: session_token(sub=123), "token-verification-failed",
         f"Subject claim (sub) is required and must be a string. Received 123. {A}"),
    Case("sub-null", lambda: session_token(sub=None), "token-verification-failed",
         f"Subject claim (sub) is required and must be a string. Received null. {A}"),
    # `JSON.stringify(1.0)` is `1`: the claim is printed as JavaScript sees the parsed number.
    Case("sub-float-printed-as-js", lambda: signed_raw(RS256, f'{{"sub":1.0,"exp":{IAT + 60}}}'),
         "token-verification-failed", f"Subject claim (sub) is required and must be a string. Received 1. {A}"),
    # Step 9: azp.
    Case("azp-not-listed", lambda: session_token(azp="https://evil.example"), "token-invalid-authorized-parties",
         'Invalid JWT Authorized party claim (azp) "https://evil.example". '
         'Expected "https://a.example,https://b.example".', opts={"authorized_parties": PARTIES}),
    Case("azp-absent", lambda: session_token(azp=DROP), "token-invalid-authorized-parties",
         'Invalid JWT Authorized party claim (azp) undefined. Expected "https://a.example,https://b.example".',
         opts={"authorized_parties": PARTIES}),
    # Step 10: exp.
    Case("exp-string", lambda: session_token(exp="abc"), "token-verification-failed",
         f'Invalid JWT expiry date claim (exp) "abc". Expected number. {A}'),
    Case("exp-absent", lambda: session_token(exp=DROP), "token-verification-failed",
         f"Invalid JWT expiry date claim (exp) undefined. Expected number. {A}"),
    Case("exp-null", lambda: session_token(exp=None), "token-verification-failed",
         f"Invalid JWT expiry date claim (exp) null. Expected number. {A}"),
    Case("exp-bool-is-not-a-number", lambda: session_token(exp=True), "token-verification-failed",
         f"Invalid JWT expiry date claim (exp) true. Expected number. {A}"),
    Case("exp-expired", lambda: session_token(), "token-expired",
         f"JWT is expired. Expiry date: {D_NOW_PLUS_60}, Current date: {D_NOW_PLUS_3600}.", now=NOW + 3600),
    # Step 11: nbf.
    Case("nbf-string", lambda: session_token(nbf="1"), "token-verification-failed",
         f'Invalid JWT not before date claim (nbf) "1". Expected number. {A}'),
    Case("nbf-null", lambda: session_token(nbf=None), "token-verification-failed",
         f"Invalid JWT not before date claim (nbf) null. Expected number. {A}"),
    Case("nbf-bool", lambda: session_token(nbf=False), "token-verification-failed",
         f"Invalid JWT not before date claim (nbf) false. Expected number. {A}"),
    Case("nbf-in-future", lambda: session_token(nbf=IAT + 6), "token-not-active-yet",
         f"JWT cannot be used prior to not before date claim (nbf). Not before date: {D_NOW_PLUS_6}; "
         f"Current date: {D_NOW};"),
    # Step 12: iat.
    Case("iat-string", lambda: session_token(iat="1"), "token-verification-failed",
         f'Invalid JWT issued at date claim (iat) "1". Expected number. {A}'),
    Case("iat-null", lambda: session_token(iat=None), "token-verification-failed",
         f"Invalid JWT issued at date claim (iat) null. Expected number. {A}"),
    Case("iat-bool", lambda: session_token(iat=True), "token-verification-failed",
         f"Invalid JWT issued at date claim (iat) true. Expected number. {A}"),
    Case("iat-in-future", lambda: session_token(iat=IAT + 6, nbf=DROP), "token-iat-in-the-future",
         f"JWT issued at date claim (iat) is in the future. Issued at date: {D_NOW_PLUS_6}; Current date: {D_NOW};"),
]


def _standard_signature() -> str:
    token = session_token()
    while "-" not in token.split(".")[2] and "_" not in token.split(".")[2]:
        token = session_token(jti=token[-8:])
    return with_signature_segment(token, standard_alphabet(token.split(".")[2]))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_check_reports_its_reason_and_exact_message(case: Case) -> None:
    error = failure(case.token(), opts=options(**(case.opts or {})), now=case.now)
    assert (error.reason, full(error)) == (case.reason, case.message)


def test_m2m_category_is_rejected_before_any_key_is_resolved() -> None:
    asks: list[FetchKeys] = []
    token = session_token(kid="unknown-kid", headers={"cat": "cl_B7d4PD333AAA"})
    error = failure(token, asks=asks)
    assert (error.reason, full(error), asks) == ("token-invalid", "Invalid session token category.", [])


# Each pair violates two checks; the earlier one of §7.1 must be reported.
ORDER = [
    ("key-before-typ", lambda: session_token(kid="unknown", headers={"typ": "JOSE"}), {}, "jwk-kid-mismatch"),
    ("typ-before-alg", lambda: unsigned_token({**RS256, "typ": "JOSE", "alg": "HS256"}, claims()), {},
     "token-invalid"),
    ("alg-before-signature", lambda: unsigned_token({**RS256, "alg": "PS256"}, claims()), {},
     "token-invalid-algorithm"),
    ("signature-before-sub", lambda: session_token("other", sub=DROP), {}, "token-invalid-signature"),
    ("sub-before-azp", lambda: session_token(sub=DROP, azp="https://evil"), {"authorized_parties": PARTIES},
     "token-verification-failed"),
    ("aud-before-azp", lambda: session_token(aud="other-aud", azp="https://evil"),
     {"authorized_parties": PARTIES, "audience": ("mine",)}, "token-verification-failed"),
    ("azp-before-exp", lambda: session_token(azp="https://evil", exp=IAT - 100), {"authorized_parties": PARTIES},
     "token-invalid-authorized-parties"),
    ("exp-before-nbf", lambda: session_token(exp=IAT - 100, nbf=IAT + 100), {}, "token-expired"),
    ("exp-type-before-nbf", lambda: session_token(exp="x", nbf=IAT + 100), {}, "token-verification-failed"),
    ("nbf-before-iat", lambda: session_token(nbf=IAT + 100, iat=IAT + 100), {}, "token-not-active-yet"),
    ("nbf-type-before-iat-future", lambda: session_token(nbf=None, iat=IAT + 100), {}, "token-verification-failed"),
]


@pytest.mark.parametrize(("make", "opts", "reason"), [row[1:] for row in ORDER], ids=[row[0] for row in ORDER])
def test_the_first_failing_check_in_protocol_order_wins(make: Any, opts: dict[str, Any], reason: str) -> None:
    assert failure(make(), opts=options(**opts)).reason == reason


def test_iss_sid_and_unknown_claims_are_not_checked() -> None:
    token = session_token(iss="https://someone-else.example", sid=DROP, v=99, sts="weird", fva="x")
    assert verify(token).decoded.raw == token


# Clock skew (default 5000 ms, `now` in whole seconds): §7.1 boundaries, claims truncated toward zero.
BOUNDARIES = [
    ("exp-now-minus-5-expired", {"exp": IAT - 5, "nbf": DROP, "iat": IAT - 100}, "token-expired"),
    ("exp-now-minus-4-valid", {"exp": IAT - 4, "nbf": DROP, "iat": IAT - 100}, None),
    ("exp-now-valid", {"exp": IAT, "nbf": DROP, "iat": IAT - 100}, None),
    ("exp-fraction-truncated-to-expired", {"exp": IAT - 4.1, "nbf": DROP, "iat": IAT - 100}, "token-expired"),
    ("nbf-now-plus-5-valid", {"nbf": IAT + 5}, None),
    ("nbf-now-plus-6-not-active", {"nbf": IAT + 6}, "token-not-active-yet"),
    ("nbf-fraction-truncated-to-valid", {"nbf": IAT + 5.9}, None),
    ("iat-now-plus-5-valid", {"iat": IAT + 5, "nbf": DROP}, None),
    ("iat-now-plus-6-in-future", {"iat": IAT + 6, "nbf": DROP}, "token-iat-in-the-future"),
    ("iat-fraction-truncated-to-valid", {"iat": IAT + 5.9, "nbf": DROP}, None),
    ("nbf-null-is-present-and-not-a-number", {"nbf": None}, "token-verification-failed"),
    ("iat-null-is-present-and-not-a-number", {"iat": None}, "token-verification-failed"),
    ("nbf-absent-is-fine", {"nbf": DROP}, None),
    ("iat-absent-is-fine", {"iat": DROP, "nbf": DROP}, None),
]


@pytest.mark.parametrize(("overrides", "reason"), [row[1:] for row in BOUNDARIES], ids=[row[0] for row in BOUNDARIES])
def test_clock_skew_boundaries(overrides: dict[str, Any], reason: str | None) -> None:
    token = session_token(**overrides)
    if reason is None:
        assert verify(token).decoded.raw == token
    else:
        assert failure(token).reason == reason


def test_expiry_message_prints_the_truncated_expiry() -> None:
    error = failure(session_token(exp=IAT - 4.1, nbf=DROP, iat=IAT - 100))
    assert error.message == f"JWT is expired. Expiry date: {D_NOW_MINUS_5}, Current date: {D_NOW}."


def test_custom_clock_skew_moves_the_boundaries() -> None:
    assert failure(session_token(exp=IAT - 1, nbf=DROP, iat=IAT - 100), opts=options(clock_skew_ms=0)).reason == (
        "token-expired"
    )
    token = session_token(nbf=IAT + 50)
    assert verify(token, options(clock_skew_ms=60_000)).decoded.raw == token


def test_huge_numeric_claims_follow_the_millisecond_formula_instead_of_crashing() -> None:
    # `1e400` is valid JSON for a number (JavaScript: Infinity). exp*1000 <= now-skew is false: not expired;
    # nbf*1000 > now+skew is true: not active yet. Either way a token-verification outcome, never a crash.
    token = signed_raw(RS256, '{"sub":"user_1","exp":1e400}')
    assert verify(token).decoded.raw == token
    error = failure(signed_raw(RS256, f'{{"sub":"user_1","exp":{IAT + 60},"nbf":1e400}}'))
    assert error.reason == "token-not-active-yet"


# Full message (`x-clerk-auth-message`) and state per carrier: §7.5 suffix.
def _cookie_request(token: str) -> Any:
    return request(cookies={"__clerk_db_jwt": "deadbeef", "__client_uat": str(IAT - 10), "__session": token})


def _header_request(token: str) -> Any:
    return request(headers={"authorization": f"Bearer {token}"})


CARRIERS = [("header", _header_request), ("cookie", _cookie_request)]
SUFFIXED = [
    ("signature", lambda: session_token("other"), {}, NOW, "signed-out", "token-invalid-signature",
     "JWT signature is invalid. (reason=token-invalid-signature, token-carrier={c})"),
    ("sub", lambda: session_token(sub=DROP), {}, NOW, "signed-out", "token-verification-failed",
     f"Subject claim (sub) is required and must be a string. Received undefined. {A} "
     "(reason=token-verification-failed, token-carrier={c})"),
    ("typ", lambda: session_token(headers={"typ": "JOSE"}), {}, NOW, "signed-out", "token-invalid",
     f'Invalid JWT type "JOSE". Expected "JWT". {A} (reason=token-invalid, token-carrier={{c}})'),
    ("alg", lambda: unsigned_token({**RS256, "alg": "HS512"}, claims()), {}, NOW, "signed-out",
     "token-invalid-algorithm",
     f'Invalid JWT algorithm "HS512". Supported: RS256,RS384,RS512. {A} '
     "(reason=token-invalid-algorithm, token-carrier={c})"),
    ("azp", lambda: session_token(), {"authorized_parties": ("https://app.example",)}, NOW, "signed-out",
     "token-invalid-authorized-parties",
     f'Invalid JWT Authorized party claim (azp) "{AZP}". Expected "https://app.example". '
     "(reason=token-invalid-authorized-parties, token-carrier={c})"),
    ("expired", lambda: session_token(), {}, NOW + 3600, "handshake",
     "session-token-expired-refresh-non-eligible-no-refresh-cookie",
     f"JWT is expired. Expiry date: {D_NOW_PLUS_60}, Current date: {D_NOW_PLUS_3600}. "
     "(reason=token-expired, token-carrier={c})"),
    ("nbf", lambda: session_token(nbf=IAT + 6), {}, NOW, "handshake", "session-token-nbf",
     f"JWT cannot be used prior to not before date claim (nbf). Not before date: {D_NOW_PLUS_6}; "
     f"Current date: {D_NOW}; (reason=token-not-active-yet, token-carrier={{c}})"),
    ("iat", lambda: session_token(iat=IAT + 6, nbf=DROP), {}, NOW, "handshake", "session-token-iat-in-the-future",
     f"JWT issued at date claim (iat) is in the future. Issued at date: {D_NOW_PLUS_6}; Current date: {D_NOW}; "
     "(reason=token-iat-in-the-future, token-carrier={c})"),
]


@pytest.mark.parametrize("carrier", CARRIERS, ids=[c[0] for c in CARRIERS])
@pytest.mark.parametrize("case", SUFFIXED, ids=[s[0] for s in SUFFIXED])
def test_state_message_carries_reason_and_token_carrier(case: Any, carrier: Any) -> None:
    _, make, opts, now, status, reason, template = case
    carrier_name, build = carrier
    state = run(build(make()), options(**opts), now=now)
    expected = template.format(c=carrier_name)
    assert (state.status, state.reason, state.message) == (status, reason, expected)
    assert state.header("x-clerk-auth-status") == status
    assert state.header("x-clerk-auth-reason") == reason
    assert state.header("x-clerk-auth-message") == expected
    if status == "signed-out":
        assert state.location is None and state.set_cookies == []


def test_full_message_without_carrier_says_undefined() -> None:
    error = TokenVerificationError("token-invalid-signature", "JWT signature is invalid.")
    assert error.full_message(None) == (
        "JWT signature is invalid. (reason=token-invalid-signature, token-carrier=undefined)"
    )
    error = TokenVerificationError("token-invalid", 'Invalid JWT type "x". Expected "JWT".', A)
    assert error.full_message("cookie") == (
        f'Invalid JWT type "x". Expected "JWT". {A} (reason=token-invalid, token-carrier=cookie)'
    )


# PEM `jwtKey` (§7.4): no JWKS at all, token kid ignored, RS384/RS512 refused with Web Crypto's message.
def _pem_options(**overrides: Any) -> Any:
    return options(jwt_key=private_key().public_key(), **overrides)


@pytest.mark.parametrize("kid", [KID, "some-other-kid", None])
def test_pem_key_verifies_without_fetching_keys_whatever_the_kid(kid: str | None) -> None:
    backend = Backend(keys=KeySet())
    state = run(_header_request(session_token(kid=kid)), _pem_options(secret_key=None), backend=backend)
    assert (state.status, state.reason, state.message, state.headers) == ("signed-in", "", "", ())
    assert backend.asks == []


@pytest.mark.parametrize("algorithm", ["RS384", "RS512"])
@pytest.mark.parametrize("carrier", CARRIERS, ids=[c[0] for c in CARRIERS])
def test_pem_key_refuses_rs384_and_rs512_with_the_key_import_message(algorithm: str, carrier: Any) -> None:
    carrier_name, build = carrier
    token = session_token(algorithm=algorithm)
    error = failure(token, opts=_pem_options())
    assert (error.reason, full(error)) == ("token-verification-failed", PEM_ALG_MESSAGE)
    state = run(build(token), _pem_options())
    expected = f"{PEM_ALG_MESSAGE} (reason=token-verification-failed, token-carrier={carrier_name})"
    assert (state.status, state.reason, state.message) == ("signed-out", "token-verification-failed", expected)
    assert state.header("x-clerk-auth-message") == expected


def test_pem_key_rejects_a_token_of_another_key() -> None:
    error = failure(session_token("other"), opts=_pem_options())
    assert (error.reason, full(error)) == ("token-invalid-signature", "JWT signature is invalid.")


# Key resolution (§7.1 step 3, §7.3).
def test_kid_still_missing_after_a_fetch_that_brings_nothing_is_jwk_kid_mismatch() -> None:
    backend = Backend(keys=KeySet())
    state = run(_header_request(session_token()), backend=backend)
    assert (state.status, state.reason) == ("signed-out", "jwk-kid-mismatch")
    assert state.message.endswith("(reason=jwk-kid-mismatch, token-carrier=header)")
    assert state.header("x-clerk-auth-message") == state.message
    assert backend.asks == [FetchKeys(KID)]


def test_kid_found_after_a_fetch_verifies() -> None:
    backend = Backend(keys=key_set())
    state = run(_header_request(session_token()), backend=backend, initial_keys=KeySet())
    assert state.status == "signed-in"
    assert backend.asks == [FetchKeys(KID)]


@pytest.mark.parametrize("secret_key", [None, ""])
def test_neither_secret_key_nor_jwt_key_is_jwk_failed_to_resolve(secret_key: str | None) -> None:
    backend = Backend()
    state = run(_header_request(session_token()), options(secret_key=secret_key), backend=backend)
    assert (state.status, state.reason) == ("signed-out", "jwk-failed-to-resolve")
    assert state.message.endswith("(reason=jwk-failed-to-resolve, token-carrier=header)")
    assert backend.asks == []


@pytest.mark.parametrize("carrier", CARRIERS, ids=[c[0] for c in CARRIERS])
def test_key_transport_failure_is_unexpected_error_with_empty_message(carrier: Any) -> None:
    _, build = carrier
    backend = Backend(keys=KeySet(), keys_answer=KeysAnswer(KeySet(), KeyFailure("unexpected-error", "boom")))
    state = run(build(session_token()), backend=backend)
    assert (state.status, state.reason, state.message) == ("signed-out", "unexpected-error", "")
    assert state.header("x-clerk-auth-status") == "signed-out"
    assert state.header("x-clerk-auth-reason") == "unexpected-error"
    assert state.header("x-clerk-auth-message") is None
    assert state.location is None and state.set_cookies == []


@pytest.mark.parametrize("reason", ["secret-key-invalid", "jwk-remote-failed-to-load", "jwk-remote-invalid"])
def test_key_load_failures_are_signed_out_with_their_reason(reason: str) -> None:
    backend = Backend(keys=KeySet(), keys_answer=KeysAnswer(KeySet(), KeyFailure(reason, "could not load")))  # type: ignore[arg-type]
    state = run(_header_request(session_token()), backend=backend)
    assert (state.status, state.reason) == ("signed-out", reason)
    assert state.message.endswith(f"(reason={reason}, token-carrier=header)")


@pytest.mark.parametrize("pk", [PK_TEST, PK_LIVE])
def test_valid_token_verifies_on_both_instance_types(pk: str) -> None:
    token = session_token()
    assert verify(token, options(pk)).decoded.payload == claims()
