"""Machine tokens in the decision (PROTOCOL.md §10): every `acceptsToken` value × every kind of token,
as `@clerk/backend` 3.25.0 decides them, with canned Backend API answers."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from gateway.clerk.asks import ApiResponse, VerifyMachineToken
from gateway.clerk.decide import AuthState
from gateway.clerk.token_types import AcceptsToken
from gateway.edge.session_memo import SessionMemo
from tests.support.clerk import IAT, KID, NOW, PK_LIVE, USER_ID, Backend, options, private_key, request, run
from tests.support.clerk import session_token as a_session_token

MACHINE = "mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk"
OTHER_MACHINE = "mch_2yGkLpQ7Y3rXSwtU24CzTk9I7Em"
API_KEY = "ak_" + "a1" * 16
M2M_TOKEN = "mt_" + "b2" * 16
OAUTH_TOKEN = "oat_" + "c3" * 16

API_KEY_BODY: dict[str, Any] = {
    "object": "api_key", "id": "ak_3beecc9c60adb5f9b850e91a8ee1e992", "type": "api_key", "subject": USER_ID,
    "name": "reports", "description": None, "claims": {"team": "a"}, "scopes": ["read"], "revoked": False,
    "revocation_reason": None, "expired": False, "expiration": None, "created_by": None, "last_used_at": None,
    "created_at": 1, "updated_at": 1,
}  # fmt: skip
M2M_BODY: dict[str, Any] = {
    "object": "machine_to_machine_token", "id": "mt_f7f0ba8c3b4843ce7d85fcdd5e71853e", "subject": MACHINE,
    "claims": None, "scopes": [OTHER_MACHINE], "revoked": False, "revocation_reason": None, "expired": False,
    "expiration": None, "last_used_at": None, "created_at": 1, "updated_at": 1,
}  # fmt: skip
OAUTH_BODY: dict[str, Any] = {
    "object": "clerk_idp_oauth_access_token", "id": "oat_0ef5a7a33d87ed87ee7954c845d80450",
    "client_id": "client_2xhFjEI5X2qWRvtV13BzSj8H6Dk", "subject": USER_ID, "scopes": ["email"], "revoked": False,
    "revocation_reason": None, "expired": False, "expiration": None, "created_at": 1, "updated_at": 1,
}  # fmt: skip


def m2m_jwt(**overrides: Any) -> str:
    payload = {"sub": MACHINE, "jti": "mt_1", "iat": IAT, "nbf": IAT, "exp": IAT + 3600, "scopes": OTHER_MACHINE}
    payload.update(overrides)
    return jwt.encode(
        payload, private_key(), algorithm="RS256", headers={"kid": KID, "typ": "JWT", "cat": "cl_B7d4PD333AAA"}
    )


def oauth_jwt(**overrides: Any) -> str:
    payload = {
        "sub": USER_ID,
        "client_id": "client_1",
        "scope": "email profile",
        "jti": "oat_1",
        "iat": IAT,
        "nbf": IAT,
        "exp": IAT + 3600,
    }
    payload.update(overrides)
    return jwt.encode(payload, private_key(), algorithm="RS256", headers={"kid": KID, "typ": "at+jwt"})


class MachineBackend(Backend):
    """Canned answers; the Backend API knows the three opaque tokens above."""

    def __init__(self, answers: dict[str, ApiResponse] | None = None) -> None:
        super().__init__()
        self.answers = (
            answers
            if answers is not None
            else {
                API_KEY: ApiResponse(200, API_KEY_BODY),
                M2M_TOKEN: ApiResponse(200, M2M_BODY),
                OAUTH_TOKEN: ApiResponse(200, OAUTH_BODY),
            }
        )

    def __call__(self, ask: Any) -> Any:
        if isinstance(ask, VerifyMachineToken):
            self.asks.append(ask)
            return self.answers.get(ask.token, ApiResponse(404, {"errors": [{"code": "not_found"}]}))
        return super().__call__(ask)


def decided(kind: str, accepts: AcceptsToken, backend: MachineBackend | None = None, **opts: Any) -> AuthState:
    session = a_session_token()
    headers = {
        "session cookie": {},
        "session header": {"authorization": f"Bearer {session}"},
        "api key": {"authorization": f"Bearer {API_KEY}"},
        "m2m opaque": {"authorization": f"Bearer {M2M_TOKEN}"},
        "m2m jwt": {"authorization": f"Bearer {m2m_jwt()}"},
        "oauth opaque": {"authorization": f"Bearer {OAUTH_TOKEN}"},
        "oauth jwt": {"authorization": f"Bearer {oauth_jwt()}"},
        "garbage": {"authorization": "Bearer garbage"},
        "none": {},
    }[kind]
    cookies = {"__session": session, "__client_uat": str(IAT)} if kind == "session cookie" else None
    return run(
        request(cookies=cookies, headers=headers, dest=None),
        options(PK_LIVE, accepts_token=accepts, **opts),
        backend=backend or MachineBackend(),
    )


KINDS = (
    "session cookie",
    "session header",
    "api key",
    "m2m opaque",
    "m2m jwt",
    "oauth opaque",
    "oauth jwt",
    "garbage",
    "none",
)
IN = "signed-in"
MISMATCH = "token-type-mismatch"
NO_HEADER = "No token in header"
INVALID = "token-invalid"
MISSING = "session-token-and-uat-missing"

# For each `acceptsToken`, the outcome of each kind, in KINDS order: "signed-in" (with the kind's own
# token type) or the signed-out reason.
TABLE: dict[str, tuple[AcceptsToken, tuple[str, ...]]] = {
    "session_token": ("session_token", (IN, IN, INVALID, INVALID, MISMATCH, INVALID, MISMATCH, INVALID, MISSING)),
    "api_key": ("api_key", (NO_HEADER, MISMATCH, IN, MISMATCH, MISMATCH, MISMATCH, MISMATCH, MISMATCH, NO_HEADER)),
    "m2m_token": ("m2m_token", (NO_HEADER, MISMATCH, MISMATCH, IN, IN, MISMATCH, MISMATCH, MISMATCH, NO_HEADER)),
    "oauth_token": ("oauth_token", (NO_HEADER, MISMATCH, MISMATCH, MISMATCH, MISMATCH, IN, IN, MISMATCH, NO_HEADER)),
    "any": ("any", (IN, IN, IN, IN, IN, IN, IN, INVALID, MISSING)),
    "[session_token]": (
        ("session_token",),
        (IN, IN, MISMATCH, MISMATCH, MISMATCH, MISMATCH, MISMATCH, INVALID, MISSING),
    ),
    "[session_token, api_key]": (
        ("session_token", "api_key"),
        (IN, IN, IN, MISMATCH, MISMATCH, MISMATCH, MISMATCH, INVALID, MISSING),
    ),
    "[api_key, m2m_token]": (
        ("api_key", "m2m_token"),
        (MISMATCH, MISMATCH, IN, IN, IN, MISMATCH, MISMATCH, MISMATCH, MISMATCH),
    ),
    "[m2m_token, oauth_token, api_key]": (
        ("m2m_token", "oauth_token", "api_key"),
        (MISMATCH, MISMATCH, IN, IN, IN, IN, IN, MISMATCH, MISMATCH),
    ),
}
TOKEN_TYPE_OF = {
    "session cookie": "session_token", "session header": "session_token", "api key": "api_key",
    "m2m opaque": "m2m_token", "m2m jwt": "m2m_token", "oauth opaque": "oauth_token", "oauth jwt": "oauth_token",
}  # fmt: skip


@pytest.mark.parametrize(
    ("accepts", "kind", "expected"),
    [
        pytest.param(accepts, kind, outcome, id=f"{name}-{kind}")
        for name, (accepts, outcomes) in TABLE.items()
        for kind, outcome in zip(KINDS, outcomes, strict=True)
    ],
)
def test_every_accepts_token_value_with_every_kind_of_token(accepts: AcceptsToken, kind: str, expected: str) -> None:
    state = decided(kind, accepts)
    if expected == IN:
        assert state.status == "signed-in", (state.reason, state.message)
        assert state.token_type == TOKEN_TYPE_OF[kind]
        assert state.headers == ()
    else:
        assert state.status == "signed-out"
        assert state.reason == expected
        assert state.header("x-clerk-auth-reason") == expected
        assert state.machine is None and state.location is None


def test_opaque_tokens_are_verified_at_their_own_endpoint_with_their_own_field() -> None:
    backend = MachineBackend()
    for kind in ("api key", "m2m opaque", "oauth opaque"):
        decided(kind, "any", backend)
    asks = backend.asked(VerifyMachineToken)
    assert [(ask.path, ask.json_body()) for ask in asks] == [
        ("/api_keys/verify", {"secret": API_KEY}),
        ("/m2m_tokens/verify", {"token": M2M_TOKEN}),
        ("/oauth_applications/access_tokens/verify", {"access_token": OAUTH_TOKEN}),
    ]


def test_jwt_forms_are_verified_locally_without_asking_the_backend() -> None:
    backend = MachineBackend()
    m2m = decided("m2m jwt", "m2m_token", backend)
    oauth = decided("oauth jwt", "oauth_token", backend)
    assert backend.asked(VerifyMachineToken) == []
    assert m2m.machine is not None and m2m.machine.machine_id == MACHINE and m2m.machine.scopes == (OTHER_MACHINE,)
    assert oauth.machine is not None and oauth.machine.user_id == USER_ID
    assert oauth.machine.scopes == ("email", "profile") and oauth.machine.client_id == "client_1"


def test_what_a_verified_api_key_says() -> None:
    machine = decided("api key", "api_key").machine
    assert machine is not None
    assert (machine.id, machine.subject, machine.user_id, machine.org_id) == (
        API_KEY_BODY["id"],
        USER_ID,
        USER_ID,
        None,
    )
    assert (machine.name, machine.scopes, machine.claims) == ("reports", ("read",), {"team": "a"})


@pytest.mark.parametrize(
    ("answer", "reason", "message"),
    [
        (
            ApiResponse(404, {"errors": [{"code": "not_found"}]}),
            "token-invalid",
            "API key not found (code=token-invalid, status=404)",
        ),
        (
            ApiResponse(401, {"errors": [{"message": "Secret Key is invalid", "code": "clerk_key_invalid"}]}),
            "secret-key-invalid",
            "Secret Key is invalid (code=secret-key-invalid, status=401)",
        ),
        (
            ApiResponse(401, None, body_is_json=False),
            "secret-key-invalid",
            "Invalid secret key (code=secret-key-invalid, status=401)",
        ),
        (ApiResponse(500, {"errors": []}), "unexpected-error", "Unexpected error (code=unexpected-error, status=500)"),
        (ApiResponse(None), "unexpected-error", "Unexpected error (code=unexpected-error, status=n/a)"),
    ],
    ids=["not-found", "bad-secret-key", "bad-secret-key-no-body", "server-error", "no-answer"],
)
def test_backend_answers_become_clerks_reasons(answer: ApiResponse, reason: str, message: str) -> None:
    state = decided("api key", "api_key", MachineBackend({API_KEY: answer}))
    assert (state.status, state.reason, state.message) == ("signed-out", reason, message)


def test_machine_tokens_never_handshake_even_on_a_document_navigation() -> None:
    expired = m2m_jwt(exp=IAT - 3600, iat=IAT - 7200, nbf=IAT - 7200)
    state = run(
        request(headers={"authorization": f"Bearer {expired}"}, dest="document"),
        options(accepts_token="m2m_token"),
        backend=MachineBackend(),
    )
    assert state.status == "signed-out" and state.location is None
    assert state.reason == "token-verification-failed"
    assert state.message.startswith("JWT is expired. Expiry date: ")
    assert state.message.endswith(" (code=token-verification-failed, status=n/a)")


def test_a_machine_jwt_in_the_session_cookie_is_refused() -> None:
    for token in (m2m_jwt(), oauth_jwt()):
        state = run(
            request(cookies={"__session": token, "__client_uat": str(IAT)}, dest=None),
            options(PK_LIVE, accepts_token="any"),
            backend=MachineBackend(),
        )
        assert (state.status, state.reason) == ("signed-out", "token-type-mismatch")


def test_on_any_a_session_jwt_with_a_non_session_category_is_a_mismatch() -> None:
    template = a_session_token(headers={"cat": "cl_B7d4PD222AAA"})
    for accepts in ("any", ("session_token", "api_key")):
        state = run(
            request(headers={"authorization": f"Bearer {template}"}, dest=None),
            options(PK_LIVE, accepts_token=accepts),
            backend=MachineBackend(),
        )
        assert (state.status, state.reason) == ("signed-out", "token-type-mismatch"), accepts


def test_oauth_jwts_are_checked_against_the_audience_when_one_is_configured() -> None:
    def with_audience(aud: Any) -> AuthState:
        return run(
            request(headers={"authorization": f"Bearer {oauth_jwt(aud=aud)}"}, dest=None),
            options(PK_LIVE, accepts_token="oauth_token", audience=("https://api.example",)),
            backend=MachineBackend(),
        )

    assert with_audience("https://api.example").status == "signed-in"
    assert with_audience(["https://x", "https://api.example"]).status == "signed-in"
    refused = with_audience("https://other.example")
    assert (refused.status, refused.reason) == ("signed-out", "token-verification-failed")
    assert refused.message == (
        'OAuth audience mismatch. Verification expected audience ["https://api.example"], but incoming token '
        'has aud "https://other.example". (code=token-verification-failed, status=n/a)'
    )
    missing = with_audience(None)
    assert missing.reason == "token-verification-failed"
    assert missing.message.startswith("Invalid OAuth audience claim (aud) null. Expected a non-empty string")


def test_opaque_oauth_tokens_are_checked_against_the_audience_too() -> None:
    def answered(body: dict[str, Any]) -> AuthState:
        return run(
            request(headers={"authorization": f"Bearer {OAUTH_TOKEN}"}, dest=None),
            options(PK_LIVE, accepts_token="oauth_token", audience=("https://api.example",)),
            backend=MachineBackend({OAUTH_TOKEN: ApiResponse(200, body)}),
        )

    assert answered({**OAUTH_BODY, "aud": ["https://api.example"]}).status == "signed-in"
    without = answered(OAUTH_BODY)
    assert (without.reason, without.message) == (
        "token-verification-failed",
        "Invalid OAuth audience claim (aud) undefined. Expected a non-empty string or a non-empty array of "
        "non-empty strings. (code=token-verification-failed, status=n/a)",
    )


def test_an_m2m_jwt_of_another_category_is_invalid() -> None:
    token = jwt.encode(
        {"sub": MACHINE, "iat": IAT, "exp": IAT + 60},
        private_key(),
        algorithm="RS256",
        headers={"kid": KID, "cat": "cl_B7d4PD111AAA"},
    )
    state = run(
        request(headers={"authorization": f"Bearer {token}"}, dest=None),
        options(PK_LIVE, accepts_token="m2m_token"),
        backend=MachineBackend(),
    )
    assert (state.reason, state.message) == (
        "token-invalid",
        "Invalid M2M JWT category. (code=token-invalid, status=n/a)",
    )


def test_a_route_can_ask_for_other_tokens_than_the_options() -> None:
    backend = MachineBackend()
    from gateway.clerk.decide import decide

    state = decide(
        request(headers={"authorization": f"Bearer {API_KEY}"}, dest=None),
        options(PK_LIVE),
        backend.keys,
        NOW,
        backend,
        accepts=("session_token", "api_key"),
    )
    assert state.token_type == "api_key"


def test_machine_outcomes_are_never_remembered_by_the_session_memo() -> None:
    memo = SessionMemo(10)
    memo.remember(b"k" * 16, decided("api key", "api_key"))
    memo.remember(b"j" * 16, decided("m2m jwt", "m2m_token"))
    assert len(memo) == 0
