"""One door: every entrance (proxy, forward-auth, WebSocket upgrades, `/__clerk`) admits a request the
same way, over real loopback HTTP, and the policy judges the path the app will route.

The spellings below each name the protected `/admin/x` (or, signed out, the protected `/secret`) to
some app; through every entrance they are refused (400) or judged as what they name (403 / 401), and
never reach the app as an allowed request. Requests go out as literal bytes: HTTP clients would
normalise the very spellings under test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import websockets

from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.faults import mint_token
from tests.support.upstream import EchoUpstream

HOST = "app.test:8000"
ROUTES = '[{"path": "/admin/*", "org_role": "admin"}, {"path": "/secret", "org_role": "admin"}]'

# Each names /admin/x to some app (decoding, Tomcat, Windows, nginx, NFKC, case-insensitive).
ADMIN_SPELLINGS = [
    "/%61dmin/x",
    "/%41DMIN/x",
    "/ADMIN/x",
    "/Admin/x",
    "/admin;jsessionid=1/x",
    "/admin;/x",
    "/admin./x",
    "/admin%20/x",
    "/admin../x",
    "//admin/x",
    "/public/../admin/x",
    "/public/%2e%2e/admin/x",
    "/public/.%2E/admin/x",
    "/public/..;/admin/x",
    "/public/..%2fadmin/x",
    "/public%2f..%2fadmin/x",
    "/public/..%5cadmin/x",
    "/admin%00/x",
    "/%EF%BD%81dmin/x",
    "/%ef%bd%81dmin/x",
    "/x/%2e%2e/admin/x",
]
# Each names /secret to some app while starting like the public /public/*.
SECRET_SPELLINGS = [
    "/public/..%2fsecret",
    "/public/%2e%2e/secret",
    "/public/..;/secret",
    "/public/../secret",
    "/public/.%2e/secret",
    "/public/secret/..%2f..%2fsecret",
    "/public/%2E%2E/SECRET",
]


@pytest.fixture
async def gateway(dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]) -> Any:
    return await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_ROUTES=ROUTES, GATEWAY_ALLOWED_HOSTS=HOST)
    )


async def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Literal request bytes to `url`; (status, headers, body) of the answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        else:  # `Connection: close` was sent: the body ends with the connection
            body = await asyncio.wait_for(reader.read(), 10)
            if headers.get("transfer-encoding") == "chunked":
                body = _dechunked(body)
        return status, headers, body
    finally:
        writer.close()


async def raw_head_of(url: str, request: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return int(head.split(b" ")[1]), head
    finally:
        writer.close()


def _dechunked(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body


def http_get(target: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def reached_the_app(body: bytes) -> bool:
    try:
        return "path" in json.loads(body)
    except ValueError:
        return False


def signed_in(clerk: EmulatorServer) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(clerk, 'user_bob')}", "accept": "application/json"}


# ------------------------------------------------------------------------------------------------ proxy


async def test_the_app_receives_the_canonical_path_the_policy_judged(
    gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    for sent, received in (("/%7Euser/%61b", "/~user/ab"), ("/a/./b/../c", "/a/c"), ("/files/%41%20b", "/files/A%20b")):
        status, _, body = await raw_exchange(gateway.url, http_get(sent, signed_in(dev_clerk)))
        assert status == 200 and json.loads(body)["path"] == received, sent


@pytest.mark.parametrize("spelling", ADMIN_SPELLINGS)
async def test_a_member_cannot_reach_an_admin_page_by_another_spelling(
    spelling: str, gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    status, headers, body = await raw_exchange(gateway.url, http_get(spelling, signed_in(dev_clerk)))
    assert status in (400, 403) and not reached_the_app(body), (spelling, status, body)
    assert headers["content-type"].startswith("application/json")


async def test_the_same_member_reaches_pages_the_policy_allows(
    gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    for path in ("/home", "/administrator", "/public/x"):
        status, _, body = await raw_exchange(gateway.url, http_get(path, signed_in(dev_clerk)))
        assert status == 200 and reached_the_app(body), path


@pytest.mark.parametrize("spelling", SECRET_SPELLINGS)
async def test_a_signed_out_visitor_cannot_reach_a_protected_page_through_a_public_prefix(
    spelling: str, gateway: RunningGateway
) -> None:
    status, _, body = await raw_exchange(gateway.url, http_get(spelling, {"accept": "application/json"}))
    assert status in (400, 401) and not reached_the_app(body), (spelling, status)


@pytest.mark.parametrize("target", ["*", "http://evil.example/admin/x"])
@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
async def test_a_request_target_that_is_not_a_path_is_a_400(
    target: str, method: str, gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    request = http_get(target, signed_in(dev_clerk)).replace(b"GET ", method.encode() + b" ", 1)
    status, _, body = await raw_exchange(gateway.url, request)
    # `*` is refused; an absolute form is turned into its path by the server, then judged as any path
    assert status == (400 if target == "*" else 403) and not reached_the_app(body)


# ------------------------------------------------------------------------------------------ forward-auth


def forward_auth(uri: str, headers: dict[str, str], **original: str) -> bytes:
    sent = {"x-forwarded-method": "GET", "x-forwarded-proto": "http", "x-forwarded-host": HOST,
            "x-forwarded-uri": uri, **headers, **original}  # fmt: skip
    return http_get("/__gateway/auth", {name: value for name, value in sent.items() if value})


@pytest.mark.parametrize("spelling", ADMIN_SPELLINGS)
async def test_forward_auth_judges_the_same_path_as_the_proxy(
    spelling: str, gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    status, _, _ = await raw_exchange(gateway.url, forward_auth(spelling, signed_in(dev_clerk)))
    assert status in (400, 403), (spelling, status)


@pytest.mark.parametrize("spelling", SECRET_SPELLINGS)
async def test_forward_auth_refuses_a_signed_out_visitor_through_a_public_prefix(
    spelling: str, gateway: RunningGateway
) -> None:
    status, _, _ = await raw_exchange(gateway.url, forward_auth(spelling, {"accept": "application/json"}))
    assert status in (400, 401), (spelling, status)


@pytest.mark.parametrize(
    ("name", "original", "status", "code"),
    [
        ("a client's X-Original-URL beside the proxy's X-Forwarded-Uri", {"x-original-url": "/public/x"}, 400,
         "conflicting_original_request"),
        ("an absolute X-Original-URL naming another path", {"x-original-url": f"http://{HOST}/public/x"}, 400,
         "conflicting_original_request"),
        ("an X-Original-URL naming another host", {"x-original-url": "http://evil.example/secret"}, 400,
         "conflicting_original_request"),
        ("an X-Original-Method that differs", {"x-original-method": "POST"}, 400, "conflicting_original_request"),
        ("nginx's spelling alone", {"x-forwarded-uri": "", "x-forwarded-method": "", "x-original-url": "/secret"},
         401, "unauthenticated"),
        ("the proxy's spelling alone", {}, 401, "unauthenticated"),
        ("nothing to judge", {"x-forwarded-uri": ""}, 400, "missing_original_request"),
    ],
)  # fmt: skip
async def test_forward_auth_believes_one_description_of_the_original_request(
    name: str, original: dict[str, str], status: int, code: str, gateway: RunningGateway
) -> None:
    answer_status, _, body = await raw_exchange(gateway.url, forward_auth("/secret", {"accept": "application/json"},
                                                                         **original))  # fmt: skip
    if answer_status == 403:  # nginx's spelling: it understands 401 and 403 only
        assert "x-original-url" in original
    assert (answer_status, json.loads(body)["error"]) == (status if answer_status != 403 else 403, code), name


async def test_forward_auth_answers_only_trusted_proxies(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_TRUSTED_PROXIES="10.0.0.0/8"))
    status, _, body = await raw_exchange(gateway.url, forward_auth("/public/x", {"x-original-url": "/public/x"}))
    assert (status, json.loads(body)["error"]) == (403, "untrusted_forward_auth")


async def test_forward_auth_names_the_status_once_and_no_identity_for_a_visitor(gateway: RunningGateway) -> None:
    request = forward_auth("/public/x", {"accept": "application/json"})
    status, headers, _ = await raw_exchange(gateway.url, request)
    assert status == 200 and headers["x-clerk-auth-status"] == "signed-out" and "x-clerk-user-id" not in headers
    _, raw_head = await raw_head_of(gateway.url, request)
    assert raw_head.lower().count(b"\r\nx-clerk-auth-status:") == 1


# ------------------------------------------------------------------------------------------- WebSockets


@pytest.mark.parametrize("spelling", ["/%61dmin/x", "/ADMIN/x", "/admin;x/x", "/public/%2e%2e/admin/x"])
async def test_a_websocket_upgrade_is_judged_like_any_request(
    spelling: str, gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    real = urlsplit(gateway.url)
    headers = signed_in(dev_clerk)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(
            f"ws://{HOST}{spelling}", host=real.hostname, port=real.port, additional_headers=headers
        ):
            pass
    assert refused.value.response.status_code == 403


# ----------------------------------------------------------------------------------------------- /__clerk


@pytest.mark.parametrize(
    ("target", "headers", "status", "code"),
    [
        ("/__clerk/v1/environment", {"host": "evil.example"}, 421, "host_not_allowed"),
        ("/__clerk/v1/environment?" + "q" * 9000, {}, 414, "uri_too_long"),
        ("/__clerk/v1/environment", {"x-long": "a" * 20_000}, 431, "headers_too_large"),
        ("/__clerk/v1/..%2f..%2fenvironment", {}, 400, "ambiguous_path"),
    ],
)
async def test_the_frontend_api_proxy_is_behind_the_same_limits_and_host_allow_list(
    target: str, headers: dict[str, str], status: int, code: str, gateway: RunningGateway
) -> None:
    request = http_get(target, {"accept": "application/json", **{k: v for k, v in headers.items() if k != "host"}})
    if "host" in headers:
        request = request.replace(f"Host: {HOST}".encode(), f"Host: {headers['host']}".encode())
    answer_status, _, body = await raw_exchange(gateway.url, request)
    assert (answer_status, json.loads(body)["error"]) == (status, code)


async def test_the_frontend_api_proxy_url_comes_from_the_settings_not_the_clients_host(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]
) -> None:
    gateway = await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_PUBLIC_ORIGIN="https://app.example.com")
    )
    request = http_get("/__clerk/v1/environment", {"accept": "application/json"}).replace(
        f"Host: {HOST}".encode(), b"Host: attacker.example"
    )
    status, _, body = await raw_exchange(gateway.url, request)
    assert status == 200
    assert b"https://app.example.com/__clerk" in body and b"attacker.example" not in body
