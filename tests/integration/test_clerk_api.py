"""BackendApi and JwksCache against a fake Backend API over real loopback HTTP.

The fake server runs in the test's own event loop (aiohttp), so a test can hold responses behind a gate,
count calls and switch behaviour between requests; time moves through a fake clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import RSAAlgorithm

from gateway import __version__
from gateway.clerk.asks import ApiResponse, FetchHandshakePayload, FetchKeys, RefreshSession
from gateway.clerk_api.backend import BackendApi
from gateway.clerk_api.jwks import JwksCache

SECRET_KEY = "sk_test_c2VjcmV0LWZvci10ZXN0cw"
JSON = "application/json"


# ---------------------------------------------------------------------------------------------- fakes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON

    @classmethod
    def json(cls, document: Any, status: int = 200) -> Reply:
        return cls(status=status, body=json.dumps(document).encode())


@dataclass
class Received:
    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeBapi:
    """A Backend API whose every answer the test sets (`replies`) and whose every request it sees."""

    replies: dict[tuple[str, str], Reply] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    gate: asyncio.Event | None = None
    """When set to an Event, requests wait for it before answering (to hold many callers in flight)."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()  # listening once this returns: no readiness polling needed
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def hold(self) -> asyncio.Event:
        self.gate = asyncio.Event()
        self.arrived.clear()
        return self.gate

    def calls(self, path: str) -> int:
        return sum(1 for request in self.received if request.raw_path.split("?")[0] == path)

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(
            Received(
                method=request.method,
                raw_path=request.raw_path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        reply = self.replies.get((request.method, request.path)) or Reply.json(
            {"errors": [{"code": "resource_not_found", "message": "not found"}]}, status=404
        )
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class RecordedSleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def signing_keys() -> dict[str, RSAPrivateKey]:
    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("ins_1", "ins_2")}


def jwk(private_key: RSAPrivateKey, kid: str) -> dict[str, Any]:
    entry: dict[str, Any] = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**entry, "kid": kid, "alg": "RS256", "use": "sig"}


def jwks(signing_keys: dict[str, RSAPrivateKey], *kids: str) -> dict[str, Any]:
    return {"keys": [jwk(signing_keys[kid], kid) for kid in kids]}


@pytest.fixture
async def bapi(signing_keys: dict[str, RSAPrivateKey]) -> AsyncIterator[FakeBapi]:
    fake = FakeBapi()
    fake.replies[("GET", "/v1/jwks")] = Reply.json(jwks(signing_keys, "ins_1"))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def backend(bapi: FakeBapi) -> AsyncIterator[BackendApi]:
    async with BackendApi(SECRET_KEY, api_url=bapi.url) as api:
        yield api


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
async def cache(backend: BackendApi, clock: FakeClock, sleeps: RecordedSleeps) -> AsyncIterator[JwksCache]:
    keys = JwksCache(backend, clock=clock, sleep=sleeps, jitter=lambda: 0.5)
    yield keys
    await keys.aclose()


def a_refresh(**overrides: Any) -> RefreshSession:
    values: dict[str, Any] = {
        "session_id": "sess_2abc",
        "expired_token": "eyJ.expired.token",
        "refresh_token": "refresh-token-value",
        "request_origin": "https://app.example.com",
        "request_headers": {"accept": ["text/html"], "user-agent": ["Mozilla/5.0"]},
        "suffixed_cookies": True,
    }
    return RefreshSession(**{**values, **overrides})


REFRESHED = {"object": "cookies", "cookies": ["__session_abc=eyJ.new.token; Path=/; Secure; SameSite=Lax"]}


# ----------------------------------------------------------------------------------------------- JWKS


async def test_initial_load_serves_the_parsed_keys(
    cache: JwksCache, bapi: FakeBapi, signing_keys: dict[str, RSAPrivateKey]
) -> None:
    answer = await cache.load()

    assert answer.failure is None
    loaded = answer.keys.get("ins_1")
    assert loaded is not None
    assert loaded.public_numbers() == signing_keys["ins_1"].public_key().public_numbers()
    assert cache.current is answer.keys
    assert (cache.fetch_count, cache.request_count, cache.failure_count) == (1, 1, 0)
    assert cache.last_success_at is not None
    [request] = bapi.received
    assert (request.method, request.raw_path) == ("GET", "/v1/jwks")
    assert request.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert request.headers["Clerk-API-Version"] == "2026-05-12"
    assert request.headers["User-Agent"] == f"session-gateway/{__version__}"


async def test_known_kid_within_ttl_needs_no_fetch_and_expiry_refetches(
    cache: JwksCache, bapi: FakeBapi, clock: FakeClock, signing_keys: dict[str, RSAPrivateKey]
) -> None:
    await cache.load()
    clock.now += 299.9
    assert (await cache.answer(FetchKeys("ins_1"))).keys.get("ins_1") is not None
    assert bapi.calls("/v1/jwks") == 1

    # Keys rotated at Clerk: after the TTL the whole snapshot is replaced, the old kid is gone.
    bapi.replies[("GET", "/v1/jwks")] = Reply.json(jwks(signing_keys, "ins_2"))
    clock.now += 0.1
    answer = await cache.answer(FetchKeys("ins_1"))

    assert bapi.calls("/v1/jwks") == 2
    assert answer.failure is None
    assert set(answer.keys.by_kid) == {"ins_2"}


async def test_refresh_if_stale_fetches_only_after_the_ttl(cache: JwksCache, bapi: FakeBapi, clock: FakeClock) -> None:
    await cache.load()
    await cache.refresh_if_stale()
    assert bapi.calls("/v1/jwks") == 1
    clock.now += 300
    assert cache.is_stale
    await cache.refresh_if_stale()
    assert bapi.calls("/v1/jwks") == 2
    assert not cache.is_stale


async def test_background_refresh_serves_current_keys_while_fetching(
    cache: JwksCache, bapi: FakeBapi, clock: FakeClock
) -> None:
    await cache.load()
    clock.now += 301
    release = bapi.hold()

    cache.refresh_in_background_if_stale()
    cache.refresh_in_background_if_stale()  # already running: no second fetch
    await bapi.arrived.wait()
    assert cache.current.get("ins_1") is not None  # the hot path is not blocked by the fetch
    release.set()
    await cache.refresh_if_stale()  # joins the running fetch

    assert bapi.calls("/v1/jwks") == 2
    assert not cache.is_stale


async def test_concurrent_asks_share_one_fetch(cache: JwksCache, bapi: FakeBapi, clock: FakeClock) -> None:
    await cache.load()
    clock.now += 10
    release = bapi.hold()

    waiters = [asyncio.create_task(cache.answer(FetchKeys("unknown"))) for _ in range(100)]
    await bapi.arrived.wait()
    release.set()
    answers = await asyncio.gather(*waiters)

    assert bapi.calls("/v1/jwks") == 2  # the initial load and one shared refetch
    assert all(answer == answers[0] for answer in answers)
    assert answers[0].failure is None and answers[0].keys.get("unknown") is None


async def test_never_loaded_concurrent_asks_share_one_fetch(cache: JwksCache, bapi: FakeBapi) -> None:
    release = bapi.hold()
    waiters = [asyncio.create_task(cache.answer(FetchKeys("ins_1"))) for _ in range(100)]
    await bapi.arrived.wait()
    release.set()
    answers = await asyncio.gather(*waiters)

    assert bapi.calls("/v1/jwks") == 1
    assert all(answer.keys.get("ins_1") is not None for answer in answers)


async def test_unknown_kids_refetch_at_most_once_per_interval(
    cache: JwksCache, bapi: FakeBapi, clock: FakeClock
) -> None:
    await cache.load()
    clock.now += 5

    for index in range(50):
        answer = await cache.answer(FetchKeys(f"forged-{index}"))
        assert answer.failure is None and answer.keys.get("ins_1") is not None
    assert bapi.calls("/v1/jwks") == 2

    clock.now += 4.9
    await cache.answer(FetchKeys("forged-again"))
    assert bapi.calls("/v1/jwks") == 2
    clock.now += 0.1
    await cache.answer(FetchKeys("forged-again"))
    assert bapi.calls("/v1/jwks") == 3


async def test_stale_keys_are_served_while_the_endpoint_fails(
    cache: JwksCache, bapi: FakeBapi, clock: FakeClock, sleeps: RecordedSleeps
) -> None:
    await cache.load()
    bapi.replies[("GET", "/v1/jwks")] = Reply.json({"errors": [{"code": "internal"}]}, status=500)
    clock.now += 301

    answer = await cache.answer(FetchKeys("ins_1"))

    assert answer.failure is None
    assert answer.keys.get("ins_1") is not None
    failure = cache.last_failure
    assert failure is not None and failure.reason == "jwk-remote-failed-to-load"
    assert cache.failure_count == 1
    assert bapi.calls("/v1/jwks") == 1 + 3  # a 5xx is retried
    assert sleeps.delays == [0.125, 0.25]

    await bapi.stop()  # now nothing answers at all
    clock.now += 5
    answer = await cache.answer(FetchKeys("ins_1"))

    assert answer.failure is None and answer.keys.get("ins_1") is not None
    failure = cache.last_failure
    assert failure is not None and failure.reason == "unexpected-error"
    assert cache.failure_count == 2


async def test_a_success_after_failures_clears_the_failure(cache: JwksCache, bapi: FakeBapi, clock: FakeClock) -> None:
    working = bapi.replies[("GET", "/v1/jwks")]
    bapi.replies[("GET", "/v1/jwks")] = Reply(status=503, body=b"unavailable", content_type="text/plain")
    assert (await cache.load()).failure is not None

    bapi.replies[("GET", "/v1/jwks")] = working
    clock.now += 5
    answer = await cache.answer(FetchKeys("ins_1"))

    assert answer.failure is None and answer.keys.get("ins_1") is not None
    assert cache.last_failure is None
    assert (cache.fetch_count, cache.failure_count) == (2, 1)


async def test_never_loaded_and_unreachable_is_unexpected_error(
    closed_port_url: str, clock: FakeClock, sleeps: RecordedSleeps
) -> None:
    async with BackendApi(SECRET_KEY, api_url=closed_port_url) as backend:
        cache = JwksCache(backend, clock=clock, sleep=sleeps, jitter=lambda: 0.5)

        answer = await cache.load()

        assert len(answer.keys) == 0
        assert answer.failure is not None and answer.failure.reason == "unexpected-error"
        assert cache.request_count == 3
        assert sleeps.delays == [0.125, 0.25]
        assert sum(sleeps.delays) < 2

        # Within the refetch interval the failure is reported again without another attempt.
        again = await cache.answer(FetchKeys("ins_1"))
        assert again.failure == answer.failure
        assert cache.request_count == 3


async def test_backoff_stays_bounded_with_the_largest_jitter(
    closed_port_url: str, clock: FakeClock, sleeps: RecordedSleeps
) -> None:
    async with BackendApi(SECRET_KEY, api_url=closed_port_url) as backend:
        cache = JwksCache(backend, clock=clock, sleep=sleeps, jitter=lambda: 0.999)
        await cache.load()
    assert len(sleeps.delays) == 2 and sum(sleeps.delays) < 1


@pytest.mark.parametrize(
    ("reply", "reason", "message"),
    [
        pytest.param(
            Reply.json(
                {"errors": [{"code": "clerk_key_invalid", "message": "The provided Clerk Secret Key is invalid."}]},
                status=401,
            ),
            "secret-key-invalid",
            "The provided Clerk Secret Key is invalid.",
            id="401-clerk-key-invalid",
        ),
        pytest.param(
            Reply.json({"errors": [{"code": "authorization_invalid", "message": "no"}]}, status=403),
            "jwk-remote-failed-to-load",
            "Error loading Clerk JWKS from {url}/v1/jwks with code=403",
            id="other-4xx",
        ),
        pytest.param(
            Reply.json({"keys": []}),
            "jwk-remote-failed-to-load",
            "The JWKS endpoint did not contain any signing keys. Contact support@clerk.com.",
            id="empty-key-list",
        ),
        pytest.param(
            Reply.json({"keys": [{"kty": "EC", "kid": "ec_1", "crv": "P-256"}]}),
            "jwk-remote-failed-to-load",
            "The JWKS endpoint did not contain any signing keys. Contact support@clerk.com.",
            id="no-rsa-signing-key",
        ),
        pytest.param(
            Reply.json({"not": "a jwks"}), "jwk-remote-invalid", "The JWKS document has no keys list.", id="no-keys"
        ),
        pytest.param(
            Reply.json({"keys": [{"kty": "RSA", "kid": "broken"}]}),
            "jwk-remote-invalid",
            None,
            id="rsa-key-without-modulus",
        ),
        pytest.param(Reply(body=b"{not json"), "unexpected-error", None, id="unparsable-json"),
        pytest.param(
            Reply(status=404, body=b"<html>not found</html>", content_type="text/html"),
            "unexpected-error",
            None,
            id="error-page-not-json",
        ),
    ],
)
async def test_a_failed_load_reports_clerks_reason(
    cache: JwksCache, bapi: FakeBapi, reply: Reply, reason: str, message: str | None
) -> None:
    bapi.replies[("GET", "/v1/jwks")] = reply

    answer = await cache.load()

    assert len(answer.keys) == 0
    assert answer.failure is not None
    assert answer.failure.reason == reason
    if message is not None:
        assert answer.failure.message == message.format(url=bapi.url)
    assert cache.last_failure == answer.failure


async def test_a_client_error_is_not_retried(cache: JwksCache, bapi: FakeBapi, sleeps: RecordedSleeps) -> None:
    bapi.replies[("GET", "/v1/jwks")] = Reply.json({"errors": [{"code": "clerk_key_invalid"}]}, status=401)
    await cache.load()
    assert bapi.calls("/v1/jwks") == 1
    assert sleeps.delays == []


# -------------------------------------------------------------------------------------------- refresh


async def test_refresh_request_has_clerks_shape(backend: BackendApi, bapi: FakeBapi) -> None:
    bapi.replies[("POST", "/v1/sessions/sess_2abc/refresh")] = Reply.json(REFRESHED)
    ask = a_refresh()

    response = await backend.refresh_session(ask)

    assert response == ApiResponse(status=200, body=REFRESHED, body_is_json=True)
    [request] = bapi.received
    assert request.method == "POST"
    assert request.raw_path == "/v1/sessions/sess_2abc/refresh?suffixed_cookies=true"
    assert request.query == {"suffixed_cookies": "true"}
    assert request.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert request.headers["Clerk-API-Version"] == "2026-05-12"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"session-gateway/{__version__}"
    body = json.loads(request.body)
    assert list(body) == ["format", "expired_token", "refresh_token", "request_origin", "request_headers"]
    assert body == {
        "format": "cookie",
        "expired_token": "eyJ.expired.token",
        "refresh_token": "refresh-token-value",
        "request_origin": "https://app.example.com",
        "request_headers": {"accept": ["text/html"], "user-agent": ["Mozilla/5.0"]},
    }


async def test_refresh_for_unsuffixed_cookies_says_false(backend: BackendApi, bapi: FakeBapi) -> None:
    await backend.refresh_session(a_refresh(suffixed_cookies=False))
    assert bapi.received[0].query == {"suffixed_cookies": "false"}


async def test_concurrent_identical_refreshes_share_one_call(backend: BackendApi, bapi: FakeBapi) -> None:
    bapi.replies[("POST", "/v1/sessions/sess_2abc/refresh")] = Reply.json(REFRESHED)
    release = bapi.hold()

    waiters = [asyncio.create_task(backend.refresh_session(a_refresh())) for _ in range(50)]
    await bapi.arrived.wait()
    release.set()
    responses = await asyncio.gather(*waiters)

    assert len(bapi.received) == 1
    assert all(response == ApiResponse(status=200, body=REFRESHED) for response in responses)

    # A burst arriving just after completion reuses the answer; another refresh token does not.
    await asyncio.gather(*(backend.refresh_session(a_refresh()) for _ in range(10)))
    assert len(bapi.received) == 1
    await backend.refresh_session(a_refresh(refresh_token="another-refresh-token"))
    assert len(bapi.received) == 2
    assert backend.refresh_calls_started == 2


async def test_a_cancelled_refresh_waiter_leaves_the_call_to_the_others(backend: BackendApi, bapi: FakeBapi) -> None:
    bapi.replies[("POST", "/v1/sessions/sess_2abc/refresh")] = Reply.json(REFRESHED)
    release = bapi.hold()
    first = asyncio.create_task(backend.refresh_session(a_refresh()))
    second = asyncio.create_task(backend.refresh_session(a_refresh()))
    await bapi.arrived.wait()

    first.cancel()
    release.set()

    assert (await second).status == 200
    assert first.cancelled()
    assert len(bapi.received) == 1


async def test_refresh_error_response_keeps_clerks_envelope(backend: BackendApi, bapi: FakeBapi) -> None:
    envelope = {"errors": [{"code": "authentication_invalid", "message": "Unauthorized"}]}
    bapi.replies[("POST", "/v1/sessions/sess_2abc/refresh")] = Reply.json(envelope, status=401)

    assert await backend.refresh_session(a_refresh()) == ApiResponse(status=401, body=envelope)


async def test_refresh_transport_failure_is_status_none(closed_port_url: str) -> None:
    async with BackendApi(SECRET_KEY, api_url=closed_port_url) as backend:
        assert await backend.refresh_session(a_refresh()) == ApiResponse(status=None)


async def test_refresh_timeout_is_status_none_and_not_reused(bapi: FakeBapi) -> None:
    bapi.hold()  # never released: the server does not answer in time
    async with BackendApi(SECRET_KEY, api_url=bapi.url, read_timeout=0.05) as backend:
        assert await backend.refresh_session(a_refresh()) == ApiResponse(status=None)
        assert await backend.refresh_session(a_refresh()) == ApiResponse(status=None)
    assert len(bapi.received) == 2


async def test_refresh_with_a_body_declared_json_that_is_not_is_status_none(
    backend: BackendApi, bapi: FakeBapi
) -> None:
    bapi.replies[("POST", "/v1/sessions/sess_2abc/refresh")] = Reply(body=b"<!doctype html>")
    assert await backend.refresh_session(a_refresh()) == ApiResponse(status=None)


async def test_a_forged_session_id_stays_inside_its_path_segment(backend: BackendApi, bapi: FakeBapi) -> None:
    await backend.refresh_session(a_refresh(session_id="../users/user_1"))
    path = bapi.received[0].raw_path.split("?")[0]
    assert path == "/v1/sessions/%2E%2E%2Fusers%2Fuser_1/refresh"


# ---------------------------------------------------------------------------------- handshake & misc


async def test_handshake_payload_returns_the_directives(backend: BackendApi, bapi: FakeBapi) -> None:
    payload = {"directives": ["__session=eyJ.a.b; Path=/", "__client_uat=1700000000; Path=/"]}
    bapi.replies[("GET", "/v1/clients/handshake_payload")] = Reply.json(payload)

    response = await backend.handshake_payload(FetchHandshakePayload("nonce-123"))

    assert response == ApiResponse(status=200, body=payload)
    assert bapi.received[0].query == {"nonce": "nonce-123"}
    assert bapi.received[0].headers["Authorization"] == f"Bearer {SECRET_KEY}"


async def test_handshake_payload_of_an_unknown_nonce_is_404(backend: BackendApi, bapi: FakeBapi) -> None:
    response = await backend.handshake_payload(FetchHandshakePayload("unknown"))
    assert response.status == 404
    assert response.body_is_json
    assert response.body["errors"][0]["code"] == "resource_not_found"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param(Reply(body=b"\x00garbage"), ApiResponse(status=None), id="declared-json-garbage"),
        pytest.param(
            Reply(status=502, body=b"Bad Gateway", content_type="text/plain"),
            ApiResponse(status=502, body=None, body_is_json=False),
            id="plain-text-error",
        ),
        pytest.param(Reply(status=200, body=b""), ApiResponse(status=200, body=None, body_is_json=False), id="empty"),
    ],
)
async def test_handshake_payload_garbage(
    backend: BackendApi, bapi: FakeBapi, reply: Reply, expected: ApiResponse
) -> None:
    bapi.replies[("GET", "/v1/clients/handshake_payload")] = reply
    assert await backend.handshake_payload(FetchHandshakePayload("nonce-123")) == expected


@pytest.mark.parametrize(
    ("call", "method", "path"),
    [
        ("get_session", "GET", "/v1/sessions/sess_1"),
        ("revoke_session", "POST", "/v1/sessions/sess_1/revoke"),
        ("get_user", "GET", "/v1/users/user_1"),
    ],
)
async def test_thin_helpers_call_their_endpoint(
    backend: BackendApi, bapi: FakeBapi, call: str, method: str, path: str
) -> None:
    bapi.replies[(method, path)] = Reply.json({"id": "x"})
    identifier = "user_1" if call == "get_user" else "sess_1"

    response = await getattr(backend, call)(identifier)

    assert response == ApiResponse(status=200, body={"id": "x"})
    assert (bapi.received[0].method, bapi.received[0].raw_path) == (method, path)


async def test_a_shared_client_is_used_and_left_open(bapi: FakeBapi) -> None:
    async with httpx.AsyncClient() as client:
        backend = BackendApi(SECRET_KEY, api_url=bapi.url, client=client)
        assert (await backend.fetch_jwks()).status == 200
        await backend.aclose()
        assert not client.is_closed
