"""The gate's session memo: repeat requests skip the decision, and never get another answer than the
decision would give.

The strongest check is the equivalence run: hundreds of requests drawn from every input the decision
reads (cookies, tokens of two users, an expired one, `Authorization`, fetch metadata, referrers,
hosts, trusted and untrusted peers with forwarding headers, `__clerk` and percent-escaped queries,
org-sync paths), interleaved with clock jumps past token expiry, go through a gate with the memo and
a gate without; every answer must be the same.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.clerk.decide import AuthState
from gateway.clerk.keys import make_publishable_key
from gateway.edge.gate import Gate, Refusal
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
                gate.memo = None
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


def outcome(answer: Refusal | AuthState) -> tuple[Any, ...]:
    if isinstance(answer, Refusal):
        return ("refusal", answer.status, answer.code, answer.location, answer.headers, answer.extra)
    user = answer.claims.user_id if answer.claims is not None else None
    return ("state", answer.status, answer.reason, answer.headers, answer.token, user)


async def admit(gate: Gate, request: dict[str, Any]) -> Refusal | AuthState:
    return await gate.admit(request, request["path"])


# ------------------------------------------------------------------------------------------------ behaviour


async def test_a_repeated_signed_in_request_is_answered_without_deciding_again(
    gates: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, gate, _ = await gates(settings())
    session = token("user_a", NOW - 10)
    request = {"cookie": f"__session={session}; __client_uat={int(NOW) - 20}", "accept": "*/*"}
    first = await admit(gate, scope(headers=request))
    assert isinstance(first, AuthState) and first.status == "signed-in"

    async def must_not_decide(*_: Any) -> AuthState:
        raise AssertionError("decided again")

    monkeypatch.setattr(gate.runtime.authenticator, "authenticate", must_not_decide)
    again = scope(path="/other/page", headers=request)
    second = await admit(gate, again)
    assert second is first
    assert (again["gateway.record"].decision, again["gateway.record"].user_id) == ("signed-in", "user_a")


async def test_a_remembered_session_is_not_used_once_its_token_expires(gates: Callable[..., Any]) -> None:
    clock, gate, _ = await gates(settings())
    session = token("user_a", NOW - 10, lifetime=60)
    request = {"cookie": f"__session={session}; __client_uat={int(NOW) - 20}", "accept": "application/json"}
    assert (await admit(gate, scope(path="/api/x", headers=request))).status == "signed-in"  # type: ignore[union-attr]
    clock.now = NOW + 120
    expired = await admit(gate, scope(path="/api/x", headers=request))
    assert isinstance(expired, Refusal) and expired.status == 401
    assert expired.extra is not None and expired.extra["reason"].startswith("session-token-expired")
    assert len(gate.memo or ()) == 0


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
    assert len(gate.memo or ()) == 0, name


async def test_a_route_the_remembered_user_may_not_open_is_refused_as_without_the_memo(
    gates: Callable[..., Any]
) -> None:
    _, gate, plain = await gates(settings())
    session = token("user_a", NOW - 10)
    request = {"cookie": f"__session={session}; __client_uat={int(NOW) - 20}", "accept": "text/html"}
    assert (await admit(gate, scope(headers=request))).status == "signed-in"  # type: ignore[union-attr]
    refused = await admit(gate, scope(path="/admin/users", headers=request))
    assert isinstance(refused, Refusal) and refused.status == 403
    assert outcome(refused) == outcome(await admit(plain, scope(path="/admin/users", headers=request)))


# ------------------------------------------------------------------------------------------- equivalence


def random_request(rng: random.Random, now: float) -> dict[str, Any]:
    tokens = [
        token("user_a", now - 10),
        token("user_b", now - 30, org_id="org_1", org_role="org:admin", org_slug="acme"),
        token("user_a", now - 120, lifetime=60),  # expired
        token("user_c", now + 5000),  # issued in the future (nbf)
        "not-a-jwt",
    ]
    cookies: list[str] = []
    if rng.random() < 0.85:
        cookies.append(f"__session={rng.choice(tokens)}")
    if rng.random() < 0.85:
        cookies.append(f"__client_uat={rng.choice([0, int(now) - 60, int(now) + 3600])}")
    if rng.random() < 0.7:
        cookies.append("__clerk_db_jwt=dvb_test")
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
    path = rng.choice(["/app", "/api/items", "/public/x", "/admin/users", "/orgs/acme/home", "/a%20b", "/x/./y"])
    query = rng.choice(["", "", "page=2", "__clerk_db_jwt=dvb_q", "__clerk_synced=true", "q=%5F_clerk_synced"])
    method = rng.choice(["GET", "GET", "GET", "POST"])
    return scope(path=path, query=query, method=method, peer=peer, headers=headers)


CONFIGURATIONS = {
    "production": settings(),
    "development": settings("development"),
    "organization sync": settings(
        CLERK_ORGANIZATION_SYNC_OPTIONS='{"organizationPatterns": ["/orgs/:slug", "/orgs/:slug/(.*)"]}'
    ),
    "annotate mode": settings(GATEWAY_MODE="annotate"),
}


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
async def test_the_memo_never_changes_an_answer(gates: Callable[..., Any], configuration: str) -> None:
    clock, memoised, plain = await gates(CONFIGURATIONS[configuration])
    rng = random.Random(f"memo-{configuration}")
    pool = [random_request(rng, NOW) for _ in range(60)]
    valid = f"__session={token('user_a', NOW - 10, 600)}; __client_uat={int(NOW) - 60}; __clerk_db_jwt=dvb_test"
    pool += [scope(path=path, headers={"cookie": valid, "accept": "*/*"}) for path in ("/app", "/orgs/acme/home")] * 5
    served: list[AuthState] = []
    remembered = memoised._remembered

    def counting(*args: Any) -> AuthState | None:
        state = remembered(*args)
        if state is not None:
            served.append(state)
        return state

    memoised._remembered = counting  # type: ignore[method-assign]
    for step in range(600):
        if step % 150 == 149:
            clock.now += 45  # tokens cross their expiry and not-before between rounds
        request = rng.choice(pool)
        with_memo = await admit(memoised, {**request, "headers": list(request["headers"])})
        without = await admit(plain, {**request, "headers": list(request["headers"])})
        assert outcome(with_memo) == outcome(without), (step, request)
    assert len(served) > 10  # the run did exercise remembered sessions
