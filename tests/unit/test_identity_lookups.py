"""The Backend API lookups behind the identity headers: TTL, single-flight, stale-if-error, forget, bound."""

from __future__ import annotations

import asyncio

import pytest

from gateway.clerk.asks import ApiResponse
from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.clerk_api.identity_lookups import IdentityLookups, LookupCache, LookupFailed, UserProfile, answer_of
from gateway.edge.identity import IdentityHeaderWriter
from gateway.settings import IdentityHeaders, parse_identity_settings

TTL = 60.0
STALE = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """A Backend API stand-in at the fetch boundary: counts calls, can block or fail them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failing = False
        self.gate: asyncio.Event | None = None
        self.version = 0

    async def __call__(self, key: str) -> str | None:
        self.calls.append(key)
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise LookupFailed("status 503")
        if key.startswith("missing"):
            return None
        return f"{key}@v{self.version}"


def cache_of(backend: Backend, clock: Clock, max_entries: int = 100) -> LookupCache[str]:
    return LookupCache(backend, ttl=TTL, stale_if_error=STALE, max_entries=max_entries, clock=clock)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_fresh_entry_is_served_from_the_cache_within_its_ttl() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock)
    assert await cache.get("u1") == "u1@v0"
    clock.now += TTL * 0.5
    backend.version = 1
    assert await cache.get("u1") == "u1@v0" and backend.calls == ["u1"]


async def test_an_expired_entry_is_fetched_again() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock)
    await cache.get("u1")
    clock.now += TTL
    backend.version = 1
    assert await cache.get("u1") == "u1@v1" and backend.calls == ["u1", "u1"]


async def test_a_hit_near_expiry_answers_at_once_and_refreshes_in_the_background() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock)
    await cache.get("u1")
    clock.now += TTL * 0.9
    backend.version, backend.gate = 1, asyncio.Event()
    entry = cache.peek("u1")  # no await: a hit never waits on the network
    assert entry is not None and entry.value == "u1@v0"
    cache.peek("u1")  # one background refresh, not one per hit
    await settle()
    assert backend.calls == ["u1", "u1"]
    backend.gate.set()
    await settle()
    assert await cache.get("u1") == "u1@v1" and len(backend.calls) == 2


async def test_concurrent_misses_of_one_key_share_one_fetch() -> None:
    backend, clock = Backend(), Clock()
    backend.gate = asyncio.Event()
    cache = cache_of(backend, clock)
    waiters = [asyncio.create_task(cache.get("u1")) for _ in range(25)]
    await settle()
    backend.gate.set()
    assert set(await asyncio.gather(*waiters)) == {"u1@v0"} and backend.calls == ["u1"]


async def test_an_expired_entry_serves_while_the_backend_api_fails_for_a_bounded_time() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock)
    await cache.get("u1")
    backend.failing = True
    clock.now += TTL + STALE - 1
    assert await cache.get("u1") == "u1@v0"
    clock.now += 1
    with pytest.raises(LookupFailed):
        await cache.get("u1")


async def test_a_failure_is_not_cached_and_the_next_request_tries_again() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock)
    backend.failing = True
    with pytest.raises(LookupFailed):
        await cache.get("u1")
    backend.failing = False
    assert await cache.get("u1") == "u1@v0" and len(backend.calls) == 2


async def test_a_deleted_user_is_an_answer_cached_like_any_other() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock)
    assert await cache.get("missing-1") is None
    assert await cache.get("missing-1") is None and backend.calls == ["missing-1"]


async def test_forget_drops_the_entry_and_a_fetch_running_meanwhile_does_not_bring_it_back() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock)
    await cache.get("u1")
    cache.forget("u1")
    assert cache.peek("u1") is None
    backend.gate = asyncio.Event()
    running = asyncio.create_task(cache.get("u1"))
    await settle()
    clock.now += 1
    cache.forget("u1")  # e.g. a webhook arrives while the fetch is on the wire
    backend.gate.set()
    assert await running == "u1@v0"
    assert cache.peek("u1") is None  # the older answer was not kept
    backend.gate = None
    await cache.get("u1")
    assert cache.peek("u1") is not None


async def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    backend, clock = Backend(), Clock()
    cache = cache_of(backend, clock, max_entries=2)
    await cache.get("u1")
    await cache.get("u2")
    await cache.get("u1")
    await cache.get("u3")
    assert len(cache) == 2 and cache.peek("u2") is None and cache.peek("u1") is not None


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (ApiResponse(status=404, body={"errors": []}, body_is_json=True), None),
        (ApiResponse(status=200, body={"username": "alice"}, body_is_json=True), UserProfile(username="alice")),
    ],
)
def test_200_and_404_are_answers(response: ApiResponse, expected: UserProfile | None) -> None:
    assert answer_of(response, UserProfile.from_bapi) == expected


@pytest.mark.parametrize("status", [None, 429, 500, 503])
def test_anything_else_is_a_failure(status: int | None) -> None:
    with pytest.raises(LookupFailed):
        answer_of(ApiResponse(status=status), UserProfile.from_bapi)


def test_the_primary_email_is_the_one_named_by_primary_email_address_id() -> None:
    body = {
        "primary_email_address_id": "idn_2",
        "email_addresses": [{"id": "idn_1", "email_address": "old@x.io"}, {"id": "idn_2", "email_address": "new@x.io"}],
    }
    assert UserProfile.from_bapi(body).email == "new@x.io"


# --------------------------------------------------------------------- the writer over the lookups

CLAIMS = SessionClaims("user_1", "sess_1", "active", "org_1", "org:admin", "acme", (), None, None, None, {})


def user_body(email: str) -> ApiResponse:
    body = {"primary_email_address_id": "e", "email_addresses": [{"id": "e", "email_address": email}]}
    return ApiResponse(status=200, body=body, body_is_json=True)


async def test_the_writer_fetches_only_when_a_header_needs_a_field_the_token_lacks() -> None:
    calls: list[str] = []

    async def fetch_user(user_id: str) -> ApiResponse:
        calls.append(user_id)
        return user_body("alice@example.com")

    async def fetch_organization(org_id: str) -> ApiResponse:
        calls.append(org_id)
        return ApiResponse(status=200, body={"name": "Acme"}, body_is_json=True)

    lookups = IdentityLookups(fetch_user, fetch_organization, ttl=TTL, stale_if_error=STALE, max_entries=10)
    state = AuthState("signed-in", token="tok", claims=CLAIMS)
    token_only = IdentityHeaderWriter(IdentityHeaders(), lookups=lookups)
    assert not token_only.needs_lookups
    await token_only.headers(state)
    assert calls == []
    remote_user = IdentityHeaderWriter(
        IdentityHeaders(), identity=parse_identity_settings({"presets": ["remote-user"]}), lookups=lookups
    )
    first = await remote_user.headers(state)
    assert (b"remote-user", b"alice@example.com") in first and calls == ["user_1"]
    assert await remote_user.headers(state) == first and calls == ["user_1"]
    with_org = IdentityHeaderWriter(
        IdentityHeaders(), identity=parse_identity_settings({"headers": {"X-Org": "{org_name}"}}), lookups=lookups
    )
    assert (b"x-org", b"Acme") in await with_org.headers(state) and calls == ["user_1", "org_1"]


async def test_with_the_backend_api_down_the_app_gets_the_tokens_headers_and_the_gap_is_counted() -> None:
    async def down(_: str) -> ApiResponse:
        return ApiResponse(status=None)

    lookups = IdentityLookups(down, down, ttl=TTL, stale_if_error=STALE, max_entries=10)
    identity = parse_identity_settings({"presets": ["clerk", "remote-user"]})
    writer = IdentityHeaderWriter(IdentityHeaders(), identity=identity, lookups=lookups)
    headers = dict(await writer.headers(AuthState("signed-in", token="tok", claims=CLAIMS)))
    assert headers[b"x-clerk-user-id"] == b"user_1" and headers[b"remote-groups"] == b"acme,org:admin"
    assert b"remote-user" not in headers and b"remote-email" not in headers
    assert lookups.gaps == {"user": 1, "organization": 0}


async def test_sign_out_and_webhooks_forget_through_the_lookups() -> None:
    emails = iter(["first@x.io", "second@x.io"])

    async def fetch_user(_: str) -> ApiResponse:
        return user_body(next(emails))

    lookups = IdentityLookups(fetch_user, fetch_user, ttl=TTL, stale_if_error=STALE, max_entries=10)
    writer = IdentityHeaderWriter(
        IdentityHeaders(), identity=parse_identity_settings({"presets": ["grafana"]}), lookups=lookups
    )
    state = AuthState("signed-in", token="tok", claims=CLAIMS)
    assert (b"x-webauth-email", b"first@x.io") in await writer.headers(state)
    lookups.forget_user("user_1")
    assert (b"x-webauth-email", b"second@x.io") in await writer.headers(state)
