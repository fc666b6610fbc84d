"""The admission pipeline's session memo: repeat requests skip the decision, and never get another answer than the
decision would give.

The strongest check is the equivalence run: hundreds of requests drawn from every input the decision
reads (cookies, tokens of two users, an expired one, `Authorization`, fetch metadata, referrers,
hosts, trusted and untrusted peers with forwarding headers, `__clerk` and percent-escaped queries,
org-sync paths), interleaved with clock jumps past token expiry, go through a gate with the memo and
a gate without; every answer must be the same.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.clerk.decide import AuthState
from gateway.clerk.keys import cookie_suffix, make_publishable_key
from gateway.edge.admission import Incoming
from gateway.edge.gate import Gate
from gateway.edge.outcomes import Deny, Outcome, Proceed, Redirect
from gateway.edge.runtime import EdgeRuntime
from gateway.settings import load_settings

FAPI = "clerk.example.test"
HOST = "app.example.test"
NOW = 1_800_000_000.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def token(user: str, issued_at: float, lifetime: float = 60, **claims: Any) -> str:
    payload = {"sub": user, "sid": f"sess_{user}", "iss": f"https://{FAPI}", "iat": int(issued_at),
               "nbf": int(issued_at) - 5, "exp": int(issued_at + lifetime), "v": 2, **claims}
    return jwt.encode(payload, KEY, algorithm="RS256", headers={"kid": "ins_test"})


def settings(instance: str = "production", **environment: str) -> Any:
    environ = {
        "CLERK_PUBLISHABLE_KEY": make_publishable_key(FAPI, instance),  # type: ignore[arg-type]
        "CLERK_SECRET_KEY": "sk_test_memo",
        "CLERK_JWT_KEY": PUBLIC_PEM,
        "GATEWAY_UPSTREAM": "http://127.0.0.1:9",
        "GATEWAY_API_PATHS": "/api/*",
        "GATEWAY_PUBLIC_PATHS": "/public/*",
        "GATEWAY_TRUSTED_PROXIES": "10.0.0.1/32",
        "GATEWAY_ROUTES": '[{"path": "/admin/*", "org_role": "admin"}]',
        **environment,
    }
    return load_settings(None, environ, require_upstream=True)


@pytest.fixture
async def gates() -> AsyncIterator[Callable[..., Any]]:
    """`make(settings)` → (clock, gate with memo, gate without), sharing the clock."""
    runtimes: list[EdgeRuntime] = []

    async def make(config: Any) -> tuple[Clock, Gate, Gate]:
        clock = Clock()
        pair = []
        for memo in (True, False):
            runtime = EdgeRuntime(config, clock=clock)
            await runtime.start()
            runtimes.append(runtime)
            gate = Gate(runtime)
            if not memo:
                gate.admission.memo = None
            pair.append(gate)
        return clock, pair[0], pair[1]

    yield make
    for runtime in runtimes:
        await runtime.aclose()


def scope(path: str = "/app", query: str = "", method: str = "GET", peer: str = "127.0.0.1",
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = [(b"host", HOST.encode())] + [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "headers": raw, "client": (peer, 40000), "server": ("127.0.0.1", 80)}


def outcome(answer: Outcome) -> tuple[Any, ...]:
    if isinstance(answer, Redirect):
        return ("refusal", answer.status, answer.row, answer.location, answer.headers)
    if isinstance(answer, Deny):
        return ("refusal", answer.status, answer.code, answer.headers, answer.extra)
    state = answer.state
    user = state.claims.user_id if state.claims is not None else None
    return ("state", state.status, state.reason, state.headers, state.token, user)


async def admit(gate: Gate, request: dict[str, Any]) -> Outcome:
    _, answer = await gate.admission.admit(Incoming.from_scope(request, gate.runtime.forwarded))
    return answer


def signed_in(answer: Outcome) -> AuthState:
    assert isinstance(answer, Proceed), answer
    return answer.state


# ------------------------------------------------------------------------------------------------ behaviour


async def test_a_repeated_signed_in_request_is_answered_without_deciding_again(
    gates: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, gate, _ = await gates(settings())
    session = token("user_a", NOW - 10)
    request = {"cookie": f"__session={session}; __client_uat={int(NOW) - 20}", "accept": "*/*"}
    first = signed_in(await admit(gate, scope(headers=request)))
    assert first.status == "signed-in"

    async def must_not_decide(*_: Any) -> AuthState:
        raise AssertionError("decided again")

    monkeypatch.setattr(gate.runtime.authenticator, "authenticate", must_not_decide)
    again = scope(path="/other/page", headers=request)
    second = signed_in(await admit(gate, again))
    assert second is first


async def test_a_remembered_session_is_not_used_once_its_token_expires(gates: Callable[..., Any]) -> None:
    clock, gate, _ = await gates(settings())
    session = token("user_a", NOW - 10, lifetime=60)
    request = {"cookie": f"__session={session}; __client_uat={int(NOW) - 20}", "accept": "application/json"}
    assert signed_in(await admit(gate, scope(path="/api/x", headers=request))).status == "signed-in"
    clock.now = NOW + 120
    expired = await admit(gate, scope(path="/api/x", headers=request))
    assert isinstance(expired, Deny) and expired.status == 401
    assert expired.extra is not None and expired.extra["reason"].startswith("session-token-expired")
    assert len(gate.admission.memo or ()) == 0


@pytest.mark.parametrize(
    ("name", "query"),
    [("a __clerk parameter", "__clerk_db_jwt=dvb_1"), ("a percent-escape that could spell one", "%5F_clerk_synced=1")],
)
async def test_requests_whose_query_may_carry_clerk_parameters_are_not_remembered(
    gates: Callable[..., Any], name: str, query: str
) -> None:
    _, gate, _ = await gates(settings())
    session = token("user_a", NOW - 10)
    request = {"cookie": f"__session={session}; __client_uat={int(NOW) - 20}", "accept": "*/*"}
    await admit(gate, scope(query=query, headers=request))
    assert len(gate.admission.memo or ()) == 0, name


async def test_a_route_the_remembered_user_may_not_open_is_refused_as_without_the_memo(
    gates: Callable[..., Any]
) -> None:
    _, gate, plain = await gates(settings())
    session = token("user_a", NOW - 10)
    request = {"cookie": f"__session={session}; __client_uat={int(NOW) - 20}", "accept": "text/html"}
    assert signed_in(await admit(gate, scope(headers=request))).status == "signed-in"
    refused = await admit(gate, scope(path="/admin/users", headers=request))
    assert isinstance(refused, Deny) and refused.status == 403
    assert outcome(refused) == outcome(await admit(plain, scope(path="/admin/users", headers=request)))


# ------------------------------------------------------------------------------ inputs the key must cover


async def same_answer(memoised: Gate, plain: Gate, request: dict[str, Any]) -> tuple[Any, Any]:
    with_memo = await admit(memoised, {**request, "headers": list(request["headers"])})
    without = await admit(plain, {**request, "headers": list(request["headers"])})
    return outcome(with_memo), outcome(without)


def signed_in_cookie() -> str:
    return f"__session={token('user_a', NOW - 10, 600)}; __client_uat={int(NOW) - 20}"


def with_host(request: dict[str, Any], host: bytes, name: bytes = b"host") -> dict[str, Any]:
    request["headers"] = [(name, host), *request["headers"][1:]]
    return request


@pytest.mark.parametrize("host", ["[::1]:8000", "app_1.internal", "app.example.test.", HOST])
@pytest.mark.parametrize("dots", ["/x/%2e%2e/admin/users", "/x/%2E./admin/users", "/x/.%2e/admin/users"])
async def test_encoded_dot_segments_are_resolved_before_the_route_policy(
    gates: Callable[..., Any], host: str, dots: str
) -> None:
    _, memoised, plain = await gates(settings())
    headers = {"cookie": signed_in_cookie(), "accept": "*/*"}
    assert signed_in(await admit(memoised, with_host(scope(headers=headers), host.encode()))).status == "signed-in"
    with_memo, without = await same_answer(memoised, plain, with_host(scope(path=dots, headers=headers), host.encode()))
    assert with_memo == without
    assert with_memo[:2] == ("refusal", 403)  # the app would serve /admin/users: so does the policy judge it


async def test_a_handshake_cookie_is_resolved_afresh_not_answered_from_the_memo(gates: Callable[..., Any]) -> None:
    clock, memoised, plain = await gates(settings())
    newer = token("user_b", NOW + 20, 600)  # not yet valid: the handshake fails at first, then succeeds
    handshake = jwt.encode(
        {"handshake": [f"__session={newer}; Path=/", f"__client_uat={int(NOW) + 20}; Path=/"]},
        KEY, algorithm="RS256", headers={"kid": "ins_test"},
    )  # fmt: skip
    request = scope(headers={"cookie": f"{signed_in_cookie()}; __clerk_handshake={handshake}", "accept": "*/*"})
    first = signed_in(await admit(memoised, {**request, "headers": list(request["headers"])}))
    assert first.claims is not None and first.claims.user_id == "user_a"
    clock.now = NOW + 30
    with_memo, without = await same_answer(memoised, plain, request)
    assert with_memo == without and with_memo[5] == "user_b"


async def test_a_lower_case_method_still_has_its_referer_checked(gates: Callable[..., Any]) -> None:
    _, memoised, plain = await gates(settings())
    navigation = {"cookie": signed_in_cookie(), "accept": "text/html", "sec-fetch-dest": "document"}
    assert signed_in(await admit(memoised, scope(method="get", headers=navigation))).status == "signed-in"
    cross = scope(method="get", headers={**navigation, "referer": "https://evil.example/x"})
    with_memo, without = await same_answer(memoised, plain, cross)
    assert with_memo == without and with_memo[:2] == ("refusal", 307)  # the handshake (row D15)


async def test_suffixed_cookies_switch_to_plain_at_exp_exactly_in_development(gates: Callable[..., Any]) -> None:
    clock, memoised, plain = await gates(settings("development"))
    suffix = cookie_suffix(make_publishable_key(FAPI, "development"))
    session = token("user_a", NOW - 10, lifetime=30)  # exp = NOW + 20
    cookie = (
        f"__session_{suffix}={session}; __client_uat_{suffix}={int(NOW) - 20}; __client_uat=0; "
        f"__clerk_db_jwt_{suffix}=dvb_s; __clerk_db_jwt=dvb_p"
    )
    request = scope(headers={"cookie": cookie, "accept": "application/json"})
    assert signed_in(await admit(memoised, {**request, "headers": list(request["headers"])})).status == "signed-in"
    clock.now = NOW + 22  # past exp, inside the clock skew
    with_memo, without = await same_answer(memoised, plain, request)
    assert with_memo == without


async def test_an_empty_host_is_keyed_by_the_address_the_request_arrived_at(gates: Callable[..., Any]) -> None:
    _, memoised, plain = await gates(settings())
    navigation = {"cookie": signed_in_cookie(), "accept": "text/html", "sec-fetch-dest": "document",
                  "referer": "http://10.0.0.5:8000/page"}  # fmt: skip

    def arriving_at(server: tuple[str, int]) -> dict[str, Any]:
        return {**with_host(scope(headers=navigation), b""), "server": server}

    await admit(memoised, arriving_at(("10.0.0.5", 8000)))
    with_memo, without = await same_answer(memoised, plain, arriving_at(("192.168.1.7", 8000)))
    assert with_memo == without


async def test_header_names_in_another_case_are_decided_afresh(gates: Callable[..., Any]) -> None:
    _, memoised, plain = await gates(settings(GATEWAY_ALLOWED_HOSTS=HOST))
    headers = {"cookie": signed_in_cookie(), "accept": "*/*"}
    assert signed_in(await admit(memoised, scope(headers=headers))).status == "signed-in"
    smuggled = scope(headers=headers)
    smuggled["headers"] = [(b"Host", b"evil.example"), *smuggled["headers"]]
    with_memo, without = await same_answer(memoised, plain, smuggled)
    assert with_memo == without and with_memo[:2] == ("refusal", 421)


async def test_padded_and_varied_headers_cost_one_small_key_an_entry(gates: Callable[..., Any]) -> None:
    _, memoised, _ = await gates(settings(GATEWAY_MAX_HEADER_BYTES="65536"))
    for variant in range(20):
        padded = {"cookie": f"{signed_in_cookie()}; pad={'x' * 9000}", "accept": f"text/x-{variant};q=0.{variant}"}
        assert signed_in(await admit(memoised, scope(headers=padded))).status == "signed-in"
    memo = memoised.admission.memo
    assert memo is not None and len(memo) == 20
    assert {len(key) for key in memo._entries} == {18}  # the app (2 bytes) and a digest, whatever the headers' size
    assert len({id(state.claims) for state in memo._entries.values()}) == 1  # the claims are shared


# ------------------------------------------------------------------------------------------- equivalence


def random_request(rng: random.Random, now: float, suffix: str) -> dict[str, Any]:
    tokens = [
        token("user_a", now - 10),
        token("user_a", now - 10, lifetime=40),  # expires during the run
        token("user_b", now + 20, lifetime=600),  # becomes valid during the run
        token("user_b", now - 30, org_id="org_1", org_role="org:admin", org_slug="acme"),
        token("user_a", now - 120, lifetime=60),  # expired
        token("user_c", now + 5000),  # issued in the future (nbf)
        token("user_d", now - 10, lifetime=600, fva=[3, -1]),  # recently verified (reverification)
        "not-a-jwt",
    ]
    family = rng.choice(["", "", f"_{suffix}"])  # the suffixed cookie family (PROTOCOL.md §2.2) too
    cookies: list[str] = []
    if rng.random() < 0.85:
        cookies.append(f"__session{family}={rng.choice(tokens)}")
    if rng.random() < 0.85:
        cookies.append(f"__client_uat{family}={rng.choice([0, int(now) - 60, int(now) + 3600])}")
    if family and rng.random() < 0.5:
        cookies.append(f"__client_uat={rng.choice([0, int(now) - 60])}")
    if rng.random() < 0.7:
        cookies.append(f"__clerk_db_jwt{family}=dvb_test")
    if rng.random() < 0.1:
        cookies.append(f"__clerk_handshake={rng.choice(tokens)}")
    if rng.random() < 0.1:
        cookies.append(f"__clerk_redirect_count={rng.choice([1, 3])}")
    headers: dict[str, str] = {}
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    if rng.random() < 0.15:
        headers["authorization"] = f"Bearer {rng.choice(tokens)}"
    dest = rng.choice([None, "document", "empty", "iframe"])
    if dest:
        headers["sec-fetch-dest"] = dest
    headers["accept"] = rng.choice(["*/*", "text/html,application/xhtml+xml", "application/json"])
    referer = rng.choice([None, f"http://{HOST}/from", "https://elsewhere.test/x", f"https://{FAPI}/sign-in"])
    if referer:
        headers["referer"] = referer
    peer = rng.choice(["127.0.0.1", "10.0.0.1"])
    if rng.random() < 0.3:
        headers["x-forwarded-host"] = rng.choice(["public.example.test", HOST])
        headers["x-forwarded-proto"] = rng.choice(["https", "http"])
    path = rng.choice(["/app", "/api/items", "/public/x", "/admin/users", "/orgs/acme/home", "/a%20b", "/x/./y",
                       "/x/%2e%2e/admin/users"])  # fmt: skip
    query = rng.choice(["", "", "page=2", "__clerk_db_jwt=dvb_q", "__clerk_synced=true", "q=%5F_clerk_synced"])
    if rng.random() < 0.2:
        headers["origin"] = rng.choice(["https://web.example", f"http://{HOST}"])
    if rng.random() < 0.2:
        headers["access-control-request-method"] = "POST"
    method = rng.choice(["GET", "GET", "GET", "get", "POST", "OPTIONS", "DELETE", "delete"])
    request = scope(path=path, query=query, method=method, peer=peer, headers=headers)
    host = rng.choice([HOST, HOST, HOST, "", "[::1]:8000", HOST + "."])
    request["headers"][0] = (b"host", host.encode())
    request["server"] = rng.choice([("127.0.0.1", 80), ("10.9.9.9", 8080)])
    return request


CONFIGURATIONS = {
    "production": settings(),
    "development": settings("development"),
    "organization sync": settings(
        CLERK_ORGANIZATION_SYNC_OPTIONS='{"organizationPatterns": ["/orgs/:slug", "/orgs/:slug/(.*)"]}'
    ),
    "annotate mode": settings(GATEWAY_MODE="annotate"),
    "authorization rules": settings(
        GATEWAY_ROUTES=json.dumps([
            {"path": "/admin/*", "methods": ["DELETE"], "access": "deny"},
            {"path": "/admin/*", "org_role": "admin"},
            {"path": "/api/*", "cors_preflight": True, "methods": ["OPTIONS", "GET"]},
            {"path": "/api/*", "methods": ["POST"], "reverification": "strict"},
            {"path": "/app", "claim": "org_slug", "equals": "acme"},
        ])
    ),
}


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
async def test_the_memo_never_changes_an_answer(gates: Callable[..., Any], configuration: str) -> None:
    clock, memoised, plain = await gates(CONFIGURATIONS[configuration])
    rng = random.Random(f"memo-{configuration}")
    suffix = CONFIGURATIONS[configuration].clerk.cookie_suffix
    pool = [random_request(rng, NOW, suffix) for _ in range(60)]
    valid = f"__session={token('user_a', NOW - 10, 600)}; __client_uat={int(NOW) - 60}; __clerk_db_jwt=dvb_test"
    pool += [scope(path=path, headers={"cookie": valid, "accept": "*/*"}) for path in ("/app", "/orgs/acme/home")] * 5
    served: list[AuthState] = []
    remembered = memoised.admission._remembered

    def counting(*args: Any) -> Outcome | None:
        answer = remembered(*args)
        if answer is not None:
            served.append(signed_in(answer))
        return answer

    memoised.admission._remembered = counting  # type: ignore[method-assign]
    for step in range(1500):
        if step % 20 == 19:
            clock.now += 1  # one-second steps: tokens cross exp, exp + skew, nbf and iat windows
        request = rng.choice(pool)
        with_memo = await admit(memoised, {**request, "headers": list(request["headers"])})
        without = await admit(plain, {**request, "headers": list(request["headers"])})
        assert outcome(with_memo) == outcome(without), (step, request)
    assert len(served) > 10  # the run did exercise remembered sessions
