"""UpstreamProxy over real loopback HTTP: client (httpx / websockets) → uvicorn → proxy → echo app.

Everything runs in the test's event loop; servers listen before they are used (no readiness waits).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.edge import answers
from gateway.edge.navigation import is_navigation
from gateway.edge.outcomes import Deny
from gateway.forwarded import ForwardedPolicy
from gateway.upstream.client import UpstreamTimeout, UpstreamUnreachable
from gateway.upstream.proxy import ProxyOutcome, UpstreamProxy
from gateway.upstream.websocket import _translate
from tests.support.upstream import EchoUpstream, serving_asgi, unused_port

IDENTITY = frozenset({b"x-clerk-auth-status", b"x-clerk-user-id"})
ADDED_REQUEST = [(b"x-clerk-auth-status", b"signed-in"), (b"x-clerk-user-id", b"user_gateway")]
ADDED_RESPONSE = [(b"set-cookie", b"__session=refreshed; Path=/; HttpOnly")]
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
MiB = 1024 * 1024


@dataclass
class MiniGateway:
    """The smallest ASGI app around the proxy: identity headers in, a refreshed cookie out."""

    proxy: UpstreamProxy
    outcomes: list[ProxyOutcome] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] == "websocket":
            failure = await self.proxy.forward_websocket(
                scope, receive, send, add_request_headers=ADDED_REQUEST, remove_request_headers=IDENTITY
            )
            if failure is not None:  # the gate's part: refuse the handshake
                refusal = Deny(failure.status, failure.code, failure.public_message)
                await answers.refuse_websocket(scope, receive, send, refusal, connected=True)
            return
        outcome = await self.proxy.forward(
            scope,
            receive,
            send,
            add_request_headers=ADDED_REQUEST,
            remove_request_headers=IDENTITY,
            add_response_headers=ADDED_RESPONSE,
        )
        if outcome.failure is not None:  # the gate's part: the error answer
            error = outcome.failure
            html_page = is_navigation({name.decode(): value.decode() for name, value in scope["headers"]})
            await answers.error(
                send, error.status, error.code, error.public_message, html_page=html_page, headers=list(ADDED_RESPONSE)
            )
        self.outcomes.append(outcome)
        self.finished.set()


@dataclass
class Running:
    url: str
    gateway: MiniGateway
    client: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


GatewayFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
def gateway(stack: AsyncExitStack, upstream: EchoUpstream) -> GatewayFactory:
    async def start(
        upstream_url: str | None = None,
        *,
        trusted: tuple[Any, ...] = (),
        preserve_host: bool = True,
        read_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> Running:
        proxy = UpstreamProxy(
            upstream_url or upstream.url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            preserve_host=preserve_host,
            forwarded=ForwardedPolicy(trusted),
        )
        await proxy.start()
        stack.push_async_callback(proxy.aclose)
        mini = MiniGateway(proxy)
        url = await stack.enter_async_context(serving_asgi(mini))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        return Running(url, mini, client)

    return start


def header_values(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------------------------------ URL, headers


async def test_raw_path_and_query_reach_the_app_byte_for_byte(gateway: GatewayFactory) -> None:
    running = await gateway()
    response = await running.client.get("/a%2Fb?x=%20&y")
    echo = response.json()
    assert (echo["method"], echo["path"], echo["query"]) == ("GET", "/a%2Fb", "x=%20&y")


async def test_upstream_path_prefix_is_prepended(gateway: GatewayFactory, upstream: EchoUpstream) -> None:
    running = await gateway(upstream.url + "/base/")
    echo = (await running.client.get("/a%2Fb/%7Euser?q=%2B")).json()
    assert (echo["path"], echo["query"]) == ("/base/a%2Fb/%7Euser", "q=%2B")


async def test_hop_by_hop_headers_are_not_forwarded(gateway: GatewayFactory) -> None:
    running = await gateway()
    response = await running.client.get(
        "/h",
        headers={
            "Connection": "keep-alive, X-Hop-Named",
            "X-Hop-Named": "dropped",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Upgrade": "h2c",
            "X-End-To-End": "kept",
            "Authorization": "Bearer token",
            "Expect": "something",
        },
    )
    echo = response.json()
    names = {name.lower() for name, _ in echo["headers"]}
    assert not names & {"x-hop-named", "keep-alive", "te", "proxy-authorization", "upgrade", "expect"}
    assert header_values(echo, "x-end-to-end") == ["kept"]
    assert header_values(echo, "authorization") == ["Bearer token"]
    # nothing invented by the client library either
    assert not names & {"user-agent", "accept-encoding"} - {name.lower() for name in response.request.headers}


async def test_identity_headers_from_the_client_are_removed_including_underscore_spellings(
    gateway: GatewayFactory,
) -> None:
    running = await gateway()
    headers = [
        ("X-Clerk-User-Id", "user_attacker"),
        ("x_clerk_user_id", "user_attacker"),
        ("X_CLERK_AUTH_STATUS", "signed-in"),
        ("X-Clerk-Auth-Status", "signed-in"),
    ]
    echo = (await running.client.get("/me", headers=headers)).json()
    assert header_values(echo, "x-clerk-user-id") == ["user_gateway"]
    assert header_values(echo, "x-clerk-auth-status") == ["signed-in"]
    assert not [name for name, _ in echo["headers"] if "_" in name]


async def test_forwarding_headers_from_an_untrusted_peer_are_replaced(gateway: GatewayFactory) -> None:
    running = await gateway(trusted=())
    spoofs = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "203.0.113.9",
        "Forwarded": "for=203.0.113.9",
        "CF-Connecting-IP": "203.0.113.9",
    }
    echo = (await running.client.get("/f", headers={"Host": "app.example:8443", **spoofs})).json()
    assert header_values(echo, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(echo, "x-forwarded-proto") == ["http"]
    assert header_values(echo, "x-forwarded-host") == ["app.example:8443"]
    assert header_values(echo, "x-real-ip") == header_values(echo, "forwarded") == []
    assert header_values(echo, "cf-connecting-ip") == []


async def test_forwarding_headers_from_a_trusted_proxy_are_believed_and_extended(gateway: GatewayFactory) -> None:
    running = await gateway(trusted=LOOPBACK)
    headers = {
        "X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.5",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "app.example.com, inner.example",
        "X-Real-IP": "203.0.113.7",
    }
    echo = (await running.client.get("/f", headers=headers)).json()
    # 127.0.0.5 is a trusted hop, 203.0.113.7 the client; what lies left of it is not believed
    assert header_values(echo, "x-forwarded-for") == ["203.0.113.7, 127.0.0.5, 127.0.0.1"]
    assert header_values(echo, "x-forwarded-proto") == ["https"]
    assert header_values(echo, "x-forwarded-host") == ["app.example.com"]
    assert header_values(echo, "x-real-ip") == ["203.0.113.7"]


async def test_host_is_preserved_or_rewritten_to_the_upstream(gateway: GatewayFactory, upstream: EchoUpstream) -> None:
    preserving = await gateway(preserve_host=True)
    echo = (await preserving.client.get("/", headers={"Host": "app.example"})).json()
    assert header_values(echo, "host") == ["app.example"]
    rewriting = await gateway(preserve_host=False)
    echo = (await rewriting.client.get("/", headers={"Host": "app.example"})).json()
    assert header_values(echo, "host") == [f"127.0.0.1:{upstream.port}"]
    assert header_values(echo, "x-forwarded-host") == ["app.example"]


# ------------------------------------------------------------------------------------ response shape


async def test_every_set_cookie_is_kept_and_the_gateways_cookie_appended(gateway: GatewayFactory) -> None:
    running = await gateway()
    response = await running.client.get("/_/cookies")
    assert response.headers.get_list("set-cookie") == [
        "a=1; Path=/",
        "b=2; Path=/; HttpOnly",
        "c=3; Path=/; Secure; SameSite=Lax",
        "__session=refreshed; Path=/; HttpOnly",
    ]


async def test_redirects_are_returned_not_followed(gateway: GatewayFactory) -> None:
    running = await gateway()
    response = await running.client.get("/_/redirect", params={"to": "https://elsewhere.example/x?y=1", "status": 307})
    assert response.status_code == 307
    assert response.headers["location"] == "https://elsewhere.example/x?y=1"


async def test_compressed_bodies_pass_through_untouched(gateway: GatewayFactory) -> None:
    running = await gateway()
    async with running.client.stream("GET", "/_/gzip", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == b"hello" * 100


async def test_head_204_and_304_have_no_body(gateway: GatewayFactory) -> None:
    running = await gateway()
    head = await running.client.head("/_/stream", params={"bytes": 1000})
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "1000", b"")
    for status in (204, 304):
        response = await running.client.get(f"/_/status/{status}")
        assert (response.status_code, response.content) == (status, b"")


async def test_large_upstream_headers_pass(gateway: GatewayFactory) -> None:
    running = await gateway()
    response = await running.client.get("/_/big-header", params={"bytes": 48 * 1024})
    assert response.status_code == 200
    assert len(response.headers["x-big"]) == 48 * 1024


async def test_expect_100_continue_is_answered_by_the_server_and_not_forwarded(gateway: GatewayFactory) -> None:
    running = await gateway()
    port = int(running.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /_/upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"hello")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["bytes"] == 5


# --------------------------------------------------------------------------------------- streaming


async def test_upload_streams_with_flat_memory(gateway: GatewayFactory) -> None:
    running = await gateway()
    size = 256 * MiB
    block = bytes(range(256)) * (MiB // 256)
    baseline = rss_bytes()
    peak = baseline
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        nonlocal peak
        for _ in range(size // MiB):
            digest.update(block)
            peak = max(peak, rss_bytes())
            yield block

    response = await running.client.post("/_/upload", content=body(), headers={"Content-Length": str(size)})
    assert response.json() == {"bytes": size, "sha256": digest.hexdigest()}
    growth = peak - baseline
    print(f"upload 256 MiB: RSS baseline {baseline / MiB:.1f} MiB, peak growth {growth / MiB:.1f} MiB")
    assert growth < 50 * MiB
    assert running.gateway.outcomes[-1].request_bytes == size


async def test_chunked_upload_is_forwarded_chunked(gateway: GatewayFactory) -> None:
    running = await gateway()
    pieces = [b"x" * 100_000, b"y" * 3, b"z" * 70_000]

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    response = await running.client.post("/_/upload", content=body())
    assert response.json() == {"bytes": 170_003, "sha256": hashlib.sha256(b"".join(pieces)).hexdigest()}


async def test_download_streams_with_flat_memory(gateway: GatewayFactory) -> None:
    running = await gateway()
    size = 256 * MiB
    baseline = rss_bytes()
    peak = baseline
    received = 0
    chunks = 0
    async with running.client.stream("GET", "/_/stream", params={"bytes": size}) as response:
        assert response.headers["content-length"] == str(size)
        async for chunk in response.aiter_raw():
            received += len(chunk)
            chunks += 1
            if chunks % 16 == 0:
                peak = max(peak, rss_bytes())
    growth = peak - baseline
    print(f"download 256 MiB: RSS baseline {baseline / MiB:.1f} MiB, peak growth {growth / MiB:.1f} MiB")
    assert received == size
    assert growth < 50 * MiB


async def test_chunked_download_is_relayed(gateway: GatewayFactory) -> None:
    running = await gateway()
    response = await running.client.get("/_/stream", params={"bytes": 300_000, "chunked": 1})
    assert len(response.content) == 300_000
    assert "content-length" not in response.headers


# ---------------------------------------------------------------------------------------- failures


async def test_unreachable_upstream_is_a_502_json(gateway: GatewayFactory) -> None:
    running = await gateway(f"http://127.0.0.1:{unused_port()}")
    response = await running.client.get("/x", headers={"Accept": "application/json"})
    assert response.status_code == 502
    assert response.json() == {"error": "bad_gateway", "message": "The application is not reachable."}
    assert response.headers["cache-control"] == "no-store"
    assert "__session=refreshed" in response.headers["set-cookie"]


async def test_unreachable_upstream_gives_browsers_an_html_page(gateway: GatewayFactory) -> None:
    running = await gateway(f"http://127.0.0.1:{unused_port()}")
    response = await running.client.get("/x", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text and "Traceback" not in response.text


async def test_slow_upstream_is_a_504(gateway: GatewayFactory) -> None:
    running = await gateway(read_timeout=0.3)
    response = await running.client.get("/_/slow", params={"seconds": 10})
    assert response.status_code == 504
    assert response.json()["error"] == "gateway_timeout"
    outcome = running.gateway.outcomes[-1]
    assert outcome.status == 0 and outcome.failure is not None and outcome.failure.status == 504


def test_aiohttp_errors_map_to_gateway_statuses() -> None:
    assert isinstance(_translate(aiohttp.ConnectionTimeoutError("connect")), UpstreamUnreachable)
    assert isinstance(_translate(aiohttp.SocketTimeoutError("read")), UpstreamTimeout)
    assert UpstreamUnreachable.status == 502 and UpstreamTimeout.status == 504


async def test_upstream_reset_mid_body_aborts_the_client_response_and_the_next_request_works(
    gateway: GatewayFactory,
) -> None:
    running = await gateway()
    with pytest.raises(httpx.RemoteProtocolError):
        await running.client.get("/_/reset")
    assert running.gateway.outcomes[-1].error is not None
    assert running.gateway.outcomes[-1].status == 200
    assert running.gateway.outcomes[-1].response_bytes == 64 * 1024
    follow_up = await running.client.get("/after")
    assert follow_up.status_code == 200 and follow_up.json()["path"] == "/after"


async def test_client_leaving_mid_upload_is_recorded_and_nothing_is_sent(gateway: GatewayFactory) -> None:
    running = await gateway()
    port = int(running.url.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /_/upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 100_000)
    await writer.drain()
    writer.close()
    await asyncio.wait_for(running.gateway.finished.wait(), 10)
    outcome = running.gateway.outcomes[-1]
    assert outcome.client_disconnected and outcome.status == 0
    assert (await running.client.get("/after")).status_code == 200


async def test_client_leaving_mid_download_stops_the_transfer(gateway: GatewayFactory) -> None:
    running = await gateway()
    async with running.client.stream("GET", "/_/stream", params={"bytes": 512 * MiB}) as response:
        async for _ in response.aiter_raw():
            break
    # the gateway notices the disconnect and stops long before 512 MiB
    await asyncio.wait_for(running.gateway.finished.wait(), 10)
    outcome = running.gateway.outcomes[-1]
    assert outcome.client_disconnected
    assert outcome.response_bytes < 64 * MiB


# --------------------------------------------------------------------------------------- WebSocket


async def test_websocket_messages_are_relayed_both_ways(gateway: GatewayFactory) -> None:
    running = await gateway()
    async with websockets.connect(running.ws_url + "/_/ws", subprotocols=["superchat"]) as socket:  # type: ignore[list-item]
        assert socket.subprotocol == "superchat"
        await socket.send("hello")
        assert await socket.recv() == "hello"
        await socket.send(b"\x00\x01\xff")
        assert await socket.recv() == b"\x00\x01\xff"


async def test_websocket_close_codes_travel_both_ways(gateway: GatewayFactory, upstream: EchoUpstream) -> None:
    running = await gateway()
    async with websockets.connect(running.ws_url + "/_/ws") as socket:
        await socket.send("close:4001")
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

    upstream.websocket_closed.clear()
    async with websockets.connect(running.ws_url + "/_/ws") as socket:
        await socket.send("ping")
        assert await socket.recv() == "ping"
        await socket.close(code=4002)
    await asyncio.wait_for(upstream.websocket_closed.wait(), 5)
    assert upstream.websocket_close_codes[-1] == 4002


async def test_websocket_to_an_unreachable_upstream_is_refused(gateway: GatewayFactory) -> None:
    running = await gateway(f"http://127.0.0.1:{unused_port()}")
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(running.ws_url + "/_/ws"):
            pass
    assert refused.value.response.status_code == 502
    assert json.loads(refused.value.response.body or b"{}")["error"] == "bad_gateway"


async def test_websocket_refused_by_the_app_keeps_the_apps_status(gateway: GatewayFactory) -> None:
    running = await gateway()
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(running.ws_url + "/_/status/404"):
            pass
    assert refused.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as not_upgraded:
        async with websockets.connect(running.ws_url + "/plain-http"):
            pass
    assert not_upgraded.value.response.status_code == 502
