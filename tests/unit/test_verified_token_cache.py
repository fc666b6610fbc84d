"""`VerifiedTokenCache`: a hit skips the RSA signature check but never the clock- and settings-dependent
checks (PROTOCOL.md §7.1 steps 8-12), and an entry dies with its token or with its key."""

from __future__ import annotations

from typing import Any

import pytest

import gateway.clerk.tokens
import gateway.clerk.verify
from gateway.clerk.asks import FetchKeys, KeysAnswer
from gateway.clerk.jwk import KeySet
from gateway.clerk.tokens import TokenVerificationError
from gateway.clerk.verify import VerifiedTokenCache
from tests.support.clerk import DROP, IAT, KID, NOW, Backend, key_set, options, request, run, session_token
from tests.support.forge import verify

KEYS = key_set()  # one snapshot shared by repeat verifications


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count every RSA signature check, wherever the core calls it from."""
    calls: list[str] = []
    original = gateway.clerk.tokens.check_signature

    def counting(decoded: Any, key: Any, algorithm: str) -> None:
        calls.append(decoded.raw)
        original(decoded, key, algorithm)

    monkeypatch.setattr(gateway.clerk.tokens, "check_signature", counting)
    monkeypatch.setattr(gateway.clerk.verify, "check_signature", counting)
    return calls


def _bearer(token: str) -> Any:
    return request(headers={"authorization": f"Bearer {token}"}, dest="empty")


def _cookie(token: str) -> Any:
    return request(cookies={"__clerk_db_jwt": "deadbeef", "__client_uat": str(IAT - 10), "__session": token},
                   dest="empty")


@pytest.mark.parametrize("build", [_bearer, _cookie], ids=["header", "cookie"])
def test_repeat_verification_skips_the_signature_check(signature_checks: list[str], build: Any) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    backend = Backend(keys=KEYS)
    first = run(build(token), cache=cache, backend=backend)
    second = run(build(token), cache=cache, now=NOW + 30, backend=backend)
    assert (first.status, second.status) == ("signed-in", "signed-in")
    assert second.token == token and second.claims == first.claims
    assert signature_checks == [token]
    assert len(cache) == 1


def test_without_a_cache_every_verification_checks_the_signature(signature_checks: list[str]) -> None:
    token = session_token()
    run(_bearer(token))
    run(_bearer(token))
    assert signature_checks == [token, token]


def test_a_hit_after_expiry_raises_token_expired_and_drops_the_entry(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    verify(token, keys=KEYS, cache=cache)
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, keys=KEYS, cache=cache, now=NOW + 3600)
    assert caught.value.reason == "token-expired"
    assert cache.get(token) is None and len(cache) == 0
    assert signature_checks == [token]


def test_a_hit_after_expiry_is_the_expiry_state_not_signed_in() -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    backend = Backend(keys=KEYS)
    assert run(_bearer(token), cache=cache, backend=backend).status == "signed-in"
    state = run(_bearer(token), cache=cache, now=NOW + 3600, backend=backend)
    assert (state.status, state.reason) == (
        "signed-out", "session-token-expired-refresh-non-eligible-no-refresh-cookie"
    )
    assert state.message.startswith("JWT is expired.")
    assert len(cache) == 0


def test_a_hit_still_enforces_nbf_and_iat_against_the_new_clock(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token(nbf=IAT - 10, iat=IAT)
    verify(token, keys=KEYS, cache=cache)
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, keys=KEYS, cache=cache, now=NOW - 60)  # the clock stepped back
    assert caught.value.reason == "token-not-active-yet"
    iat_only = session_token(iat=IAT, nbf=DROP)
    verify(iat_only, keys=KEYS, cache=cache)
    with pytest.raises(TokenVerificationError) as caught:
        verify(iat_only, keys=KEYS, cache=cache, now=NOW - 60)
    assert caught.value.reason == "token-iat-in-the-future"
    assert signature_checks == [token, iat_only]


def test_a_hit_still_enforces_authorized_parties_of_the_new_options(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    verify(token, keys=KEYS, cache=cache)
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, options(authorized_parties=("https://app.example",)), keys=KEYS, cache=cache)
    assert caught.value.reason == "token-invalid-authorized-parties"
    assert signature_checks == [token]


def test_a_hit_still_enforces_audience_of_the_new_options(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token(aud="theirs")
    verify(token, keys=KEYS, cache=cache)
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, options(audience=("mine",)), keys=KEYS, cache=cache)
    assert caught.value.reason == "token-verification-failed"
    assert signature_checks == [token]


def test_entry_is_not_used_once_its_kid_leaves_the_key_set(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    verify(token, keys=KEYS, cache=cache)
    asks: list[FetchKeys] = []
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, keys=KeySet(), cache=cache, asks=asks)
    assert caught.value.reason == "jwk-kid-mismatch"
    assert asks == [FetchKeys(KID)]
    assert cache.get(token) is None


def test_entry_is_not_used_when_another_key_takes_its_kid(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    verify(token, keys=KEYS, cache=cache)
    rotated = key_set("other", kids=(KID,))
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, keys=rotated, cache=cache)
    assert caught.value.reason == "token-invalid-signature"
    assert signature_checks == [token, token]
    assert cache.get(token) is None


def test_entry_is_not_used_under_a_rotated_key_on_the_decision_path(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    assert run(_bearer(token), cache=cache, backend=Backend(keys=KEYS)).status == "signed-in"
    backend = Backend(keys=key_set("other", kids=(KID,)))
    state = run(_bearer(token), cache=cache, backend=backend)
    assert (state.status, state.reason) == ("signed-out", "token-invalid-signature")
    assert len(signature_checks) == 2


def test_entry_survives_a_new_key_set_holding_the_same_key(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    original = key_set()
    verify(token, keys=original, cache=cache)
    refreshed = KeySet({**original.by_kid, "kid_new": key_set("other", kids=("kid_new",)).by_kid["kid_new"]})
    verify(token, keys=refreshed, cache=cache)
    assert signature_checks == [token]


def test_pem_key_change_invalidates_the_entry(signature_checks: list[str]) -> None:
    from tests.support.clerk import private_key

    cache = VerifiedTokenCache()
    token = session_token()
    verify(token, options(jwt_key=private_key().public_key()), cache=cache)
    with pytest.raises(TokenVerificationError) as caught:
        verify(token, options(jwt_key=private_key("other").public_key()), cache=cache)
    assert caught.value.reason == "token-invalid-signature"


def test_failed_verification_is_not_cached(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token("other")
    for _ in range(2):
        with pytest.raises(TokenVerificationError):
            verify(token, cache=cache)
    assert signature_checks == [token, token]
    assert len(cache) == 0


def test_fetch_answer_with_the_key_fills_the_cache(signature_checks: list[str]) -> None:
    cache = VerifiedTokenCache()
    token = session_token()
    verify(token, keys=KeySet(), fetched=KeysAnswer(KEYS), cache=cache)
    verify(token, keys=KEYS, cache=cache)
    assert signature_checks == [token]


def test_a_refetched_key_set_with_the_same_key_keeps_the_entry(signature_checks: list[str]) -> None:
    # The key did not leave: a JWKS refetch (every 5 minutes, §7.3) parses the same key into a new object.
    cache = VerifiedTokenCache()
    token = session_token()
    verify(token, keys=key_set(), cache=cache)
    verify(token, keys=key_set(), cache=cache)
    assert signature_checks == [token]
    assert cache.get(token) is not None
