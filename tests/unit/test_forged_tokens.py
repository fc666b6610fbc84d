"""Forged and doctored session tokens are never signed-in, on either carrier, and each ends with the
reason PROTOCOL.md implies (§7.1 checks via §3.3 `handleTokenError`; §2.2 for foreign issuers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.clerk.asks import FetchKeys
from gateway.clerk.jwk import KeySet
from tests.support.clerk import (
    IAT,
    KID,
    PK_LIVE,
    PK_TEST,
    Backend,
    claims,
    key_set,
    options,
    request,
    run,
    session_token,
    tampered,
)
from tests.support.forge import (
    alg_none,
    flip_trailing_bits,
    hs256_with_public_pem,
    signed_raw,
    standard_alphabet,
    with_signature_segment,
)

EXPIRED_REASON = "session-token-expired-refresh-non-eligible-no-refresh-cookie"
OTHER_HEADER = {"alg": "RS256", "typ": "JWT"}
OTHER_INSTANCE_ISS = "https://clerk.other-instance.example"


def _stripped_signature() -> str:
    header, payload, _ = session_token().split(".")
    return f"{header}.{payload}."


def _standard_alphabet_signature() -> str:
    token = session_token()
    while "-" not in token.split(".")[2] and "_" not in token.split(".")[2]:
        token = session_token(jti=token[-8:])
    return with_signature_segment(token, standard_alphabet(token.split(".")[2]))


def _other_instance() -> str:
    # Another instance: its own key, its own kid, its own issuer.
    return session_token("other", kid="ins_other_instance", iss=OTHER_INSTANCE_ISS)


@dataclass
class Forgery:
    name: str
    token: Callable[[], str]
    status: str
    reason: str
    opts: dict[str, Any] = field(default_factory=dict)
    fetched_kid: Any = None  # a FetchKeys ask expected on the verifying paths (header, same-instance cookie)
    cookie_outcome: dict[str, tuple[str, str]] | None = None  # per publishable key, when §2.2 changes the path


FORGERIES = [
    Forgery("signed-by-another-key-with-the-right-kid", lambda: session_token("other"), "signed-out",
            "token-invalid-signature"),
    Forgery("alg-none-with-signature", lambda: alg_none("c2ln"), "signed-out", "token-invalid-algorithm"),
    Forgery("alg-none-without-signature", lambda: alg_none(""), "signed-out", "token-invalid-algorithm"),
    Forgery("hs256-keyed-with-public-pem", hs256_with_public_pem, "signed-out", "token-invalid-algorithm"),
    Forgery("rs256-payload-tampered-sub", lambda: tampered(session_token(), sub="user_admin"), "signed-out",
            "token-invalid-signature"),
    Forgery("rs256-payload-tampered-exp", lambda: tampered(session_token(), exp=IAT + 10**8), "signed-out",
            "token-invalid-signature"),
    Forgery("stripped-signature", _stripped_signature, "signed-out", "token-invalid-signature"),
    # Clerk's JWKS keys are RS256 JWKs: the key import refuses another hash before any signature check
    # (the §7.4 behaviour; §7.1 step 6 "crypto error → token-verification-failed").
    Forgery("signature-of-rs256-relabelled-rs512", lambda: _relabelled("RS512"), "signed-out",
            "token-verification-failed"),
    Forgery("signature-re-encoded-in-standard-base64", _standard_alphabet_signature, "signed-out", "token-invalid"),
    Forgery("signature-with-flipped-padding-bits",
            lambda: with_signature_segment(session_token(), flip_trailing_bits(session_token().split(".")[2])),
            "signed-out", "token-invalid"),
    Forgery("expired", lambda: session_token(exp=IAT - 60), "handshake",
            EXPIRED_REASON),
    Forgery("nbf-in-the-future", lambda: session_token(nbf=IAT + 600), "handshake", "session-token-nbf"),
    Forgery("wrong-azp-with-authorized-parties", lambda: session_token(azp="https://evil.example"), "signed-out",
            "token-invalid-authorized-parties", opts={"authorized_parties": ("https://app.example",)}),
    Forgery("kid-path-traversal", lambda: session_token("other", kid="../../etc/passwd"), "signed-out",
            "jwk-kid-mismatch", fetched_kid="../../etc/passwd"),
    Forgery("kid-very-long", lambda: session_token("other", kid="k" * 20_000), "signed-out", "jwk-kid-mismatch",
            fetched_kid="k" * 20_000),
    Forgery("kid-non-string", lambda: signed_raw({**OTHER_HEADER, "kid": 12345}, claims(), key="other"), "signed-out",
            "jwk-kid-mismatch"),
    Forgery("kid-object", lambda: signed_raw({**OTHER_HEADER, "kid": {"$ne": ""}}, claims(), key="other"), "signed-out",
            "jwk-kid-mismatch"),
    Forgery("token-of-another-instance", _other_instance, "signed-out", "jwk-kid-mismatch",
            fetched_kid="ins_other_instance",
            # §2.2 rule 2: a foreign `iss` makes only suffixed cookies count; there are none.
            cookie_outcome={PK_TEST: ("handshake", "dev-browser-missing"),
                            PK_LIVE: ("signed-out", "session-token-and-uat-missing")}),
]


def _relabelled(algorithm: str) -> str:
    token = session_token()
    _, payload, signature = token.split(".")
    header = signed_raw({"alg": algorithm, "typ": "JWT", "kid": KID}, "{}").split(".")[0]
    return f"{header}.{payload}.{signature}"


def _header(token: str) -> Any:
    return request(headers={"authorization": f"Bearer {token}"})


def _cookie_dev(token: str) -> Any:
    return request(cookies={"__clerk_db_jwt": "deadbeef", "__client_uat": str(IAT - 10), "__session": token})


def _cookie_prod(token: str) -> Any:
    return request(cookies={"__client_uat": str(IAT - 10), "__session": token})


CARRIERS = [("bearer-dev", PK_TEST, _header, "header"), ("bearer-prod", PK_LIVE, _header, "header"),
            ("cookie-dev", PK_TEST, _cookie_dev, "cookie"), ("cookie-prod", PK_LIVE, _cookie_prod, "cookie")]


@pytest.mark.parametrize("carrier", CARRIERS, ids=[c[0] for c in CARRIERS])
@pytest.mark.parametrize("forgery", FORGERIES, ids=[f.name for f in FORGERIES])
def test_forged_token_is_never_signed_in(forgery: Forgery, carrier: Any) -> None:
    _, pk, build, carrier_name = carrier
    backend = Backend(keys=key_set())
    state = run(build(forgery.token()), options(pk, **forgery.opts), backend=backend)
    assert state.status != "signed-in"
    assert state.claims is None
    status, reason = forgery.status, forgery.reason
    diverted = carrier_name == "cookie" and forgery.cookie_outcome is not None
    if diverted:
        assert forgery.cookie_outcome is not None
        status, reason = forgery.cookie_outcome[pk]
    assert (state.status, state.reason) == (status, reason)
    assert state.header("x-clerk-auth-status") == status
    assert state.header("x-clerk-auth-reason") == reason
    if diverted:
        assert state.message == "" and state.header("x-clerk-auth-message") is None
        assert backend.asks == []
    else:
        assert state.message.endswith(f"(reason={_token_reason(reason)}, token-carrier={carrier_name})")
        assert state.header("x-clerk-auth-message") == state.message
        expected_asks = [FetchKeys(forgery.fetched_kid)] if forgery.fetched_kid is not None else []
        assert backend.asks == expected_asks
    if status == "signed-out":
        assert state.location is None and state.set_cookies == []
    else:
        assert state.header("cache-control") == "no-store"
        assert state.set_cookies == ["__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"]


def _token_reason(state_reason: str) -> str:
    return {EXPIRED_REASON: "token-expired", "session-token-nbf": "token-not-active-yet"}.get(
        state_reason, state_reason
    )


def test_forged_token_on_a_fetch_is_signed_out_not_handshake() -> None:
    state = run(request(headers={"authorization": f"Bearer {session_token(exp=IAT - 60)}"}, dest="empty"))
    assert (state.status, state.reason) == ("signed-out", EXPIRED_REASON)
    assert state.location is None


def test_forged_header_token_is_not_rescued_by_a_valid_session_cookie() -> None:
    # A header token, when present, is the only token looked at (§3.2 header path).
    state = run(request(headers={"authorization": f"Bearer {session_token('other')}"},
                        cookies={"__clerk_db_jwt": "deadbeef", "__client_uat": str(IAT - 10),
                                 "__session": session_token()}))
    assert (state.status, state.reason) == ("signed-out", "token-invalid-signature")


def test_kid_lookup_never_falls_back_to_another_key() -> None:
    # A token signed by the real key but naming an unknown kid must not be tried against the keys we have.
    backend = Backend(keys=key_set())
    state = run(_header(session_token(kid="ins_unknown")), backend=backend)
    assert (state.status, state.reason) == ("signed-out", "jwk-kid-mismatch")
    assert backend.asks == [FetchKeys("ins_unknown")]


def test_other_instance_token_next_to_our_own_suffixed_cookies_uses_ours() -> None:
    # §2.2 rule 2 then the suffixed family: our suffixed session decides.
    from tests.support.clerk import SUFFIX_LIVE

    state = run(request(cookies={"__session": _other_instance(), f"__session_{SUFFIX_LIVE}": session_token(),
                                 f"__client_uat_{SUFFIX_LIVE}": str(IAT - 10)}), options(PK_LIVE))
    assert state.status == "signed-in"
    assert state.token == session_token()


def test_empty_key_set_never_verifies_a_forged_token() -> None:
    state = run(_header(alg_none("")), backend=Backend(keys=KeySet()), initial_keys=KeySet())
    assert state.status == "signed-out"
    assert state.reason == "jwk-kid-mismatch"
