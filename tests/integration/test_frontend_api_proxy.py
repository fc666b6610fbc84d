"""FrontendApiProxy (PROTOCOL.md §8) over loopback: client → uvicorn → proxy → fake FAPI (the echo app)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.clerk.keys import make_publishable_key
from gateway.edge.frontend_api import FrontendApiProxy, frontend_api_base_url
from gateway.forwarded import ForwardedPolicy
from tests.support.upstream import EchoUpstream, serving_asgi, unused_port

SECRET_KEY = "sk_test_proxy-secret-0123456789"
PUBLISHABLE_KEY = make_publishable_key("clerk.example.lcl.dev")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@dataclass
class Running:
    url: str
    client: httpx.AsyncClient
    fapi_host: str


@pytest.fixture
def fapi(upstream: EchoUpstream) -> EchoUpstream:
    """The echo app stands in for Clerk's Frontend API."""
    return upstream


Factory = Callable[..., Awaitable[Running]]


@pytest.fixture
def gateway(stack: AsyncExitStack, fapi: EchoUpstream) -> Factory:
    async def start(
        fapi_url: str | None = None, *, trusted: tuple[Any, ...] = (), secret_key: str | None = SECRET_KEY
    ) -> Running:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0)))
        proxy = FrontendApiProxy(
            prefix="/__clerk",
            fapi_url=fapi_url or fapi.url,
            secret_key=secret_key,
            publishable_key=PUBLISHABLE_KEY,
            forwarded=ForwardedPolicy(trusted),
            client=http,
        )

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert proxy.matches(scope["path"]), scope["path"]
            await proxy.handle(scope, receive, send)

        url = await stack.enter_async_context(serving_asgi(app))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
        return Running(url, client, (fapi_url or fapi.url).removeprefix("http://"))

    return start


def values(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name]


async def test_fapi_receives_clerks_proxy_headers(gateway: Factory) -> None:
    running = await gateway()
    response = await running.client.get(
        "/__clerk/v1/client?_clerk_js_version=5.0.0&x=%20",
        headers={
            "Host": "app.example:8443",
            "Cookie": "__client_uat=0; __session=abc",
            "Authorization": "Bearer abc",
            "Accept-Encoding": "gzip, br",
            "Connection": "keep-alive",
            "Clerk-Secret-Key": "spoofed",
        },
    )
    echo = response.json()
    assert (echo["method"], echo["path"], echo["query"]) == ("GET", "/v1/client", "_clerk_js_version=5.0.0&x=%20")
    assert values(echo, "clerk-proxy-url") == ["http://app.example:8443/__clerk"]
    assert values(echo, "clerk-secret-key") == [SECRET_KEY]
    assert values(echo, "host") == [running.fapi_host]
    assert values(echo, "accept-encoding") == ["identity"]
    assert values(echo, "x-forwarded-host") == ["app.example:8443"]
    assert values(echo, "x-forwarded-proto") == ["http"]
    assert values(echo, "x-forwarded-for") == ["127.0.0.1"]
    assert values(echo, "cookie") == ["__client_uat=0; __session=abc"]
    assert values(echo, "authorization") == ["Bearer abc"]
    assert values(echo, "connection") in ([], ["keep-alive"])  # httpx's own hop header, not the client's


async def test_untrusted_forwarding_headers_never_reach_fapi(gateway: Factory) -> None:
    running = await gateway(trusted=())
    echo = (
        await running.client.get(
            "/__clerk/v1/environment",
            headers={
                "Host": "app.example",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "evil.example",
                "X-Forwarded-For": "6.6.6.6",
                "X-Real-IP": "6.6.6.6",
                "CF-Connecting-IP": "6.6.6.6",
            },
        )
    ).json()
    assert values(echo, "clerk-proxy-url") == ["http://app.example/__clerk"]
    assert values(echo, "x-forwarded-host") == ["app.example"]
    assert values(echo, "x-forwarded-proto") == ["http"]
    assert values(echo, "x-forwarded-for") == ["127.0.0.1"]
    assert values(echo, "x-real-ip") == values(echo, "cf-connecting-ip") == []


async def test_trusted_forwarding_headers_build_the_public_proxy_url(gateway: Factory) -> None:
    running = await gateway(trusted=LOOPBACK)
    echo = (
        await running.client.get(
            "/__clerk",
            headers={
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "app.example.com",
                "X-Forwarded-For": "6.6.6.6, 198.51.100.4",
                "CF-Connecting-IP": "198.51.100.4",
            },
        )
    ).json()
    assert echo["path"] == "/"
    assert values(echo, "clerk-proxy-url") == ["https://app.example.com/__clerk"]
    assert values(echo, "x-forwarded-host") == ["app.example.com"]  # present: kept
    assert values(echo, "x-forwarded-proto") == ["https"]
    assert values(echo, "x-forwarded-for") == ["198.51.100.4"]  # replaced by one value


async def test_request_body_is_streamed_to_fapi(gateway: Factory) -> None:
    running = await gateway()
    body = b"identifier=user%40example.com&" * 10_000

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    echo = (await running.client.post("/__clerk/v1/client/sign_ins", content=chunks())).json()
    assert (echo["method"], echo["body_bytes"]) == ("POST", len(body))
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_response_keeps_every_cookie_and_drops_length_and_encoding(gateway: Factory) -> None:
    running = await gateway()
    response = await running.client.get("/__clerk/_/cookies")
    assert response.headers.get_list("set-cookie") == [
        "a=1; Path=/",
        "b=2; Path=/; HttpOnly",
        "c=3; Path=/; Secure; SameSite=Lax",
    ]
    assert "content-length" not in response.headers
    gzipped = await running.client.get("/__clerk/_/gzip")
    assert "content-encoding" not in gzipped.headers
    assert gzipped.content == b"hello" * 100  # decoded, as Clerk's proxy (fetch) hands it on


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("{fapi}/v1/oauth_callback?code=1#frag", "http://app.example/__clerk/v1/oauth_callback?code=1#frag"),
        ("/v1/verify?token=t", "http://app.example/__clerk/v1/verify?token=t"),
        ("https://accounts.google.com/o/oauth2/auth?x=1", "https://accounts.google.com/o/oauth2/auth?x=1"),
    ],
)
async def test_redirects_to_fapi_are_rewritten_through_the_proxy(
    gateway: Factory, location: str, expected: str
) -> None:
    running = await gateway()
    target = location.replace("{fapi}", f"http://{running.fapi_host}")
    response = await running.client.get(
        "/__clerk/_/redirect", params={"to": target, "status": 307}, headers={"Host": "app.example"}
    )
    assert response.status_code == 307
    assert response.headers["location"] == expected


async def test_unreachable_fapi_is_a_502_in_clerks_shape(gateway: Factory) -> None:
    running = await gateway(f"http://127.0.0.1:{unused_port()}")
    response = await running.client.get("/__clerk/v1/client")
    assert response.status_code == 502
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["code"] == "proxy_request_failed"
    assert error["message"].startswith("Failed to proxy request to Clerk FAPI: ")


async def test_missing_secret_key_is_a_configuration_error(gateway: Factory) -> None:
    running = await gateway(secret_key=None)
    response = await running.client.get("/__clerk/v1/client")
    assert response.status_code == 500
    assert response.json()["errors"][0]["code"] == "proxy_configuration_error"


async def test_path_outside_the_prefix_is_a_400() -> None:
    async with httpx.AsyncClient() as http:
        proxy = FrontendApiProxy("/__clerk", "http://127.0.0.1:1", SECRET_KEY, PUBLISHABLE_KEY, ForwardedPolicy(), http)
        assert proxy.matches("/__clerk") and proxy.matches("/__clerk/v1") and not proxy.matches("/__clerkx")
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            raise AssertionError("no body expected")

        scope = {"type": "http", "method": "GET", "path": "/__clerkx/v1", "raw_path": b"/__clerkx/v1", "headers": []}
        await proxy.handle(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b"proxy_path_mismatch" in sent[1]["body"]


def test_fapi_base_url_is_the_configured_url_else_the_host_in_the_key() -> None:
    assert frontend_api_base_url(PUBLISHABLE_KEY, "http://127.0.0.1:4500/") == "http://127.0.0.1:4500"
    assert frontend_api_base_url(PUBLISHABLE_KEY) == "https://clerk.example.lcl.dev"
