"""Attacks on every entrance, as literal bytes, through both ASGI servers the gateway runs on.

Each test asks one question: can a request mean one thing to the gateway and another to the app (or
to the proxy in front)? The answer is checked twice: the status the client gets, and what the echo
app received (its path and headers), so "refused" also means "the app never saw it".

`served` runs `gateway serve` on granian and on uvicorn (httptools) in subprocesses, facing the
clients directly (no trusted proxy); `gateway` is an in-process gateway that trusts 127.0.0.1 as its
proxy, for the forwarding headers and forward-auth.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.faults import mint_token, raw_request, serve_environment, status_of
from tests.support.upstream import EchoUpstream, unused_port, upstream_in_thread

HOST = "app.test:8000"
ALLOWED_HOSTS = "app.test:8000,*.example.com"
ROUTES = '[{"path": "/admin/*", "org_role": "admin"}, {"path": "/secret", "org_role": "admin"}]'
SERVERS = ("granian", "uvicorn")
JSON = ("Accept", "application/json")


def request(
    target: str, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (), *, method: str = "GET",
    host: str | None = HOST, body: bytes = b"",
) -> bytes:  # fmt: skip
    """Literal request bytes (`host=None`: no `Host` line); non-ASCII text goes out as raw UTF-8."""
    lines = [f"{method} {target} HTTP/1.1", *([f"Host: {host}"] if host is not None else []), "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


@dataclass(frozen=True)
class Answer:
    status: int
    head: bytes
    body: bytes

    @property
    def app(self) -> dict[str, Any] | None:
        """What the echo app received (path, query, headers), or None when the gateway answered itself."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return None
        return document if isinstance(document, dict) and "path" in document else None

    def app_headers(self, name: str) -> list[str]:
        app = self.app
        assert app is not None, (self.status, self.body[:300])
        return [value for key, value in app["headers"] if key.lower() == name]

    def app_header_names(self) -> list[str]:
        app = self.app
        assert app is not None, (self.status, self.body[:300])
        return [key.lower() for key, _ in app["headers"]]

    @property
    def error(self) -> str | None:
        try:
            return json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            return None


def exchange(url: str, data: bytes) -> Answer:
    raw = raw_request(url, data, timeout=5)
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = _dechunked(body)
    return Answer(status_of(raw), head, body)


async def exchange_async(url: str, data: bytes) -> Answer:
    """`exchange` for a gateway running in the test's own event loop."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)  # `Connection: close` was sent
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = _dechunked(body)
    return Answer(status_of(raw), head, body)


def _dechunked(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body


# ------------------------------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Served:
    clerk: EmulatorServer
    urls: dict[str, str]

    def token(self, user: str = "user_bob") -> str:
        return mint_token(self.clerk, user)


def _serve(clerk: EmulatorServer, echo: EchoUpstream, server: str) -> tuple[subprocess.Popen[bytes], str]:
    port = unused_port()
    environment = serve_environment(
        clerk, echo.url, port, GATEWAY_PUBLIC_PATHS="/public/*", GATEWAY_API_PATHS="/api/*", GATEWAY_ROUTES=ROUTES,
        GATEWAY_ALLOWED_HOSTS=ALLOWED_HOSTS,
    )  # fmt: skip
    environment.pop("GATEWAY_TRUSTED_PROXIES", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--server", server],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """`gateway serve` on granian and on uvicorn, no trusted proxy, in front of one echo app."""
    with EmulatorServer() as clerk, upstream_in_thread() as echo:
        running = {server: _serve(clerk, echo, server) for server in SERVERS}
        try:
            for server, (process, url) in running.items():
                for _ in range(500):
                    try:
                        if httpx.get(f"{url}/__gateway/healthz", timeout=2).status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.02)
                else:
                    raise AssertionError(f"{server} did not start (exit code {process.poll()})")
            yield Served(clerk, {server: url for server, (_, url) in running.items()})
        finally:
            for process, _ in running.values():
                process.terminate()
            for process, _ in running.values():
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def send(served: Served, server: str) -> Callable[[bytes], Answer]:
    url = served.urls[server]
    return lambda data: exchange(url, data)


@pytest.fixture
async def gateway(dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]) -> Any:
    """In-process (uvicorn), trusting 127.0.0.1 as its proxy (`gateway_settings`' default)."""
    return await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_ROUTES=ROUTES, GATEWAY_ALLOWED_HOSTS=ALLOWED_HOSTS)
    )


def signed_in(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}"), JSON]


# ------------------------------------------------------------------------------------------ Host


NOT_ONE_HOST = [
    "evil.example/.example.com",  # ends with the allowed suffix, names evil.example to the app
    "evil.example?.example.com",
    "evil.example#.example.com",
    "evil.example@a.example.com",  # userinfo
    "a.example.com:evil",  # a port that is not a number
    "a.example.com:99999",  # a port out of range (was a 500 on the gateway's own endpoints)
    "a.example.com, b.example.com",  # what two Host lines merge into
    "evil.example .example.com",
]
ENTRANCES = ("/x", "/public/x", "/__gateway/whoami", "/__gateway/sign-out", "/__clerk/v1/environment")


@pytest.mark.parametrize("host", NOT_ONE_HOST)
def test_a_host_that_is_not_one_host_name_is_not_allowed_by_a_suffix(
    host: str, send: Callable[[bytes], Answer], served: Served
) -> None:
    token = served.token()
    for target in ENTRANCES:
        answer = send(request(target, signed_in(token), host=host))
        assert answer.app is None, (target, answer)
        if target.startswith("/__gateway/"):  # Litestar refuses some of them itself, in its own words
            assert answer.status in (400, 421), (target, answer)
        else:
            assert (answer.status, answer.error) == (421, "host_not_allowed"), (target, answer)


@pytest.mark.parametrize("host", NOT_ONE_HOST)
async def test_without_an_allow_list_a_host_that_is_not_one_host_name_is_a_400_never_a_500(
    host: str, dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_TRUSTED_PROXIES=""))
    token = mint_token(dev_clerk, "user_bob")
    for target in ENTRANCES:
        answer = await exchange_async(gateway.url, request(target, signed_in(token), host=host))
        assert answer.status == 400 and answer.app is None, (target, answer)
        if not target.startswith("/__gateway/"):
            assert answer.error == "bad_host", (target, answer)


def test_two_host_lines_are_refused_even_when_each_is_allowed(send: Callable[[bytes], Answer]) -> None:
    answer = send(request("/public/x", [("Host", "b.example.com"), JSON], host="a.example.com"))
    assert answer.status in (400, 421) and answer.app is None


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("APP.TEST:8000", 200),  # names are case-insensitive
        ("a.example.com", 200),
        ("a.B.example.com:8443", 200),
        ("app.test:8000.", 421),  # a dot after the port: not a host at all
        ("app.test.:8000", 421),  # the trailing-dot spelling is another name to the allow-list
        ("app.test:08000", 421),
        ("app.test", 421),
        ("app.test:80", 421),
        ("example.com", 421),  # `*.example.com` is for sub-domains only
        ("example.com.evil", 421),
    ],
)
def test_host_spellings_are_judged_as_the_allow_list_names_them(
    host: str, status: int, send: Callable[[bytes], Answer]
) -> None:
    answer = send(request("/public/x", [JSON], host=host))
    assert answer.status == status, (host, answer)
    if status == 200:
        assert answer.app_headers("host") == [host] and answer.app_headers("x-forwarded-host") == [host]
    else:
        assert answer.app is None


def test_an_absolute_form_target_is_judged_by_its_path_and_the_host_header(
    send: Callable[[bytes], Answer], served: Served
) -> None:
    answer = send(request("http://evil.example/admin/x", signed_in(served.token())))
    assert answer.status in (400, 403) and answer.app is None
    answer = send(request("http://evil.example/public/x", [JSON]))
    if answer.status == 200:  # the server took the path; the app gets the Host the gateway judged
        assert answer.app is not None and answer.app["path"] == "/public/x"
        assert answer.app_headers("host") == [HOST]
    else:
        assert answer.status == 400 and answer.app is None


# ------------------------------------------------------------------------------------ forwarding headers

UNDERSCORE_FORWARDING = [
    ("X_Forwarded_Host", "evil.example"),
    ("x_forwarded_for", "6.6.6.6"),
    ("X_FORWARDED_PROTO", "https"),
    ("x_forwarded_prefix", "/evil"),
    ("X_Real_IP", "6.6.6.6"),
    ("cf_connecting_ip", "6.6.6.6"),
]


def test_underscore_spellings_of_forwarding_headers_never_reach_the_app(send: Callable[[bytes], Answer]) -> None:
    """CGI-style servers (`HTTP_X_FORWARDED_HOST`) fold `x_forwarded_host` into the header the gateway writes."""
    answer = send(request("/public/x", [*UNDERSCORE_FORWARDING, JSON]))
    assert answer.status == 200
    names = answer.app_header_names()
    assert not [name for name in names if "_" in name], names
    assert answer.app_headers("x-forwarded-host") == [HOST] and answer.app_headers("x-forwarded-for") == ["127.0.0.1"]
    assert answer.app_headers("x-forwarded-proto") == ["http"] and "x-real-ip" not in names


def test_forwarding_headers_of_an_untrusted_peer_are_replaced_not_appended(send: Callable[[bytes], Answer]) -> None:
    spoofed = [("X-Forwarded-Host", "evil.example"), ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"),
               ("Forwarded", "for=6.6.6.6;host=evil.example;proto=https"), ("X-Real-IP", "6.6.6.6"),
               ("X-Forwarded-Prefix", "/evil"), JSON]  # fmt: skip
    answer = send(request("/public/x", spoofed))
    assert answer.status == 200
    names = answer.app_header_names()
    assert answer.app_headers("x-forwarded-host") == [HOST] and answer.app_headers("x-forwarded-for") == ["127.0.0.1"]
    assert answer.app_headers("x-forwarded-proto") == ["http"]
    assert not {"forwarded", "x-real-ip", "x-forwarded-prefix"} & set(names), names


async def test_a_trusted_proxy_passes_its_own_forwarding_headers_but_no_underscore_twins(
    gateway: RunningGateway,
) -> None:
    headers = [("X-Forwarded-Host", "a.example.com"), ("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "203.0.113.9"),
               *UNDERSCORE_FORWARDING, JSON]  # fmt: skip
    answer = await exchange_async(gateway.url, request("/public/x", headers))
    assert answer.status == 200
    names = answer.app_header_names()
    assert not [name for name in names if "_" in name], names
    assert answer.app_headers("x-forwarded-host") == ["a.example.com"]
    assert answer.app_headers("x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
    assert answer.app_headers("x-real-ip") == ["203.0.113.9"]


# ------------------------------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("target", "statuses"),
    [
        ("/public/x%", (400,)),  # a `%` at the end
        ("/public/x%4", (400,)),
        ("/public/x%zz", (400,)),
        ("/public/%2e%2e/secret", (401,)),  # judged as /secret, where it leads
        ("/public/..%2fsecret", (400,)),
        ("/public/" + "a" * 9000, (414, 400)),  # past GATEWAY_MAX_URL_LENGTH (or the server's own limit)
        ("/public/" + "a" * 100_000, (414, 400, 431)),
        ("/public/x?" + "q" * 9000, (414, 400)),
    ],
)
def test_path_spellings_are_refused_or_judged_as_the_app_reads_them(
    target: str, statuses: tuple[int, ...], send: Callable[[bytes], Answer]
) -> None:
    answer = send(request(target, [JSON]))
    assert answer.status in statuses and answer.app is None, (target[:60], answer.status, answer.body[:200])


def test_raw_non_ascii_reaches_the_app_percent_encoded_or_not_at_all(send: Callable[[bytes], Answer]) -> None:
    answer = send(request("/public/\udcc3\udca9", [JSON]))  # the raw bytes C3 A9 (é)
    if answer.status == 200:  # granian passes raw bytes on; the app gets the canonical escape
        assert answer.app is not None and answer.app["path"] == "/public/%C3%A9"
    else:  # httptools refuses raw non-ASCII itself
        assert answer.status == 400 and answer.app is None
    answer = send(request("/admin/\udcc3\udca9", [JSON]))
    assert answer.status in (400, 401) and answer.app is None


def test_a_fragment_or_a_query_cannot_carry_a_path_past_the_policy(
    send: Callable[[bytes], Answer], served: Served
) -> None:
    answer = send(request("/public/x#/../../secret", [JSON]))
    assert answer.status == 200 and answer.app is not None and answer.app["path"] == "/public/x"
    for target, path, query in (("/public/x?/../../secret", "/public/x", "/../../secret"),
                                ("/public/x?a=1;b=/../secret", "/public/x", "a=1;b=/../secret")):  # fmt: skip
        answer = send(request(target, [JSON]))
        assert answer.status == 200 and answer.app is not None, target
        assert (answer.app["path"], answer.app["query"]) == (path, query)
    answer = send(request("/admin;x=/../public/x", signed_in(served.token())))  # `;` in the path is judged
    assert answer.status == 200 and answer.app is not None and answer.app["path"] == "/public/x"
    answer = send(request("/public/x;/../../admin/x", signed_in(served.token())))
    assert answer.status == 403 and answer.app is None


@pytest.mark.parametrize("target", ["//__gateway/whoami", "/__GATEWAY/whoami", "/__gateway/whoami/", "/__gateway/x"])
def test_an_app_path_that_looks_like_the_gateways_is_judged_as_any_app_path(
    target: str, send: Callable[[bytes], Answer]
) -> None:
    answer = send(request(target, [JSON]))
    assert answer.status == 401 and answer.app is None and answer.error == "unauthenticated", (target, answer)


@pytest.mark.parametrize("target", ["/__gateway/%77hoami", "/__gateway/./whoami", "/__gateway/x/../whoami"])
def test_the_gateways_own_endpoints_are_routed_by_their_canonical_path(
    target: str, send: Callable[[bytes], Answer], served: Served
) -> None:
    answer = send(request(target, signed_in(served.token())))
    assert answer.status == 200 and answer.app is None
    assert json.loads(answer.body)["identity"]["user_id"] == "user_bob"


@pytest.mark.parametrize("target", ["/__gateway/healthz/../../admin/x", "/__gateway/%2e%2e/admin/x"])
def test_a_gateway_prefix_cannot_carry_a_path_past_the_policy(
    target: str, send: Callable[[bytes], Answer], served: Served
) -> None:
    answer = send(request(target, signed_in(served.token())))
    assert answer.status == 403 and answer.app is None, (target, answer)


# ------------------------------------------------------------------------------------------ forward-auth


def forward_auth(uri: str | None, *headers: tuple[str, str], method: str = "GET", host: str = HOST) -> bytes:
    described = [("X-Forwarded-Method", method), ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", host)]
    if uri is not None:
        described.append(("X-Forwarded-Uri", uri))
    return request("/__gateway/auth", [*described, *headers])


@pytest.mark.parametrize(
    ("uri", "status", "code"),
    [
        ("http://evil.example/admin/x", 400, "bad_request_target"),  # an absolute URL is not a path
        ("//evil.example/admin/x", 401, "unauthenticated"),  # a path (`//` and all), judged as one
        ("/public/../admin/x", 403, "forbidden"),
        ("/public/%2e%2e/admin/x", 403, "forbidden"),
        ("/public/x#/../../admin/x", 400, "ambiguous_path"),  # a fragment never travels: it is refused
        ("", 400, "missing_original_request"),  # an empty description is no request to judge
        ("   ", 400, "missing_original_request"),
        ("*", 400, "bad_request_target"),
    ],
)
async def test_forward_auth_judges_the_described_path_as_the_proxy_does(
    uri: str, status: int, code: str, gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    headers = signed_in(mint_token(dev_clerk, "user_bob"))
    if code == "unauthenticated":
        headers = [JSON]
    answer = await exchange_async(gateway.url, forward_auth(uri, *headers))
    assert (answer.status, answer.error) == (status, code), (uri, answer)


@pytest.mark.parametrize(
    ("method", "status"),
    [("GET", 200), ("get", 200), ("PROPFIND", 200), ("G\u00c9T", 400), ("GET /x", 400), ("G-T", 400), ("", 200)],
)
async def test_forward_auth_reads_the_method_as_a_method_or_refuses_it(
    method: str, status: int, gateway: RunningGateway
) -> None:
    answer = await exchange_async(gateway.url, forward_auth("/public/x", JSON, method=method))
    assert answer.status == status, (method, answer)


@pytest.mark.parametrize("host", ["evil.example@a.example.com", "evil.example/.example.com", "a.example.com:99999"])
async def test_forward_auth_holds_the_described_host_to_the_allow_list(host: str, gateway: RunningGateway) -> None:
    answer = await exchange_async(gateway.url, forward_auth("/public/x", JSON, host=host))
    assert (answer.status, answer.error) == (421, "host_not_allowed"), (host, answer)
    answer = await exchange_async(
        gateway.url, request("/__gateway/auth", [("X-Original-URL", f"http://{host}/x"), JSON])
    )
    assert answer.status == 403, (host, answer)  # nginx's spelling: its refusals are 401 or 403


# ------------------------------------------------------------------------------------ identity headers


def test_identity_headers_a_client_sends_never_reach_the_app_in_any_spelling(send: Callable[[bytes], Answer]) -> None:
    spoofed = [
        ("X-Clerk-User-Id", "user_evil"), ("x_clerk_user_id", "user_evil"), ("X-CLERK-ORG-ROLE", "org:admin"),
        ("X-Clerk-Auth-Status", "signed-in"), ("x-clerk-auth-status", "signed-in"), ("X_Clerk_Org_Id", "org_x"),
        ("X-Gateway-Identity-Assertion", "forged"), ("x_gateway_identity_assertion", "forged"), JSON,
    ]  # fmt: skip
    answer = send(request("/public/x", spoofed))
    assert answer.status == 200
    names = answer.app_header_names()
    assert answer.app_headers("x-clerk-auth-status") == ["signed-out"]
    assert not [name for name in names if name.replace("_", "-").startswith(("x-clerk-user", "x-clerk-org"))]
    assert not [name for name in names if "identity-assertion" in name.replace("_", "-")]


@pytest.mark.parametrize(
    "line",
    [
        b"X-Clerk-User-Id : user_evil",  # a space before the colon
        b"X-Clerk-User-Id\t: user_evil",
        b" X-Clerk-User-Id: user_evil",  # obs-fold: a continuation line
        b"X-Foo: a\r\n\tX-Clerk-User-Id: user_evil",
        b"X-Clerk-User-Id:user_evil\rX-Bar: b",  # a bare CR
    ],
)
def test_header_lines_a_parser_could_read_two_ways_are_refused_by_both_servers(
    line: bytes, send: Callable[[bytes], Answer]
) -> None:
    data = (
        b"GET /public/x HTTP/1.1\r\nHost: "
        + HOST.encode()
        + b"\r\nX-Pad: 1\r\n"
        + line
        + b"\r\nConnection: close\r\n\r\n"
    )
    answer = send(data)
    if answer.status == 200:  # read as a value of the line before: still never an identity header
        assert answer.app_headers("x-clerk-user-id") == [] and answer.app_headers("x-clerk-auth-status") == [
            "signed-out"
        ]
    else:
        assert answer.status == 400 and answer.app is None, (line, answer)


# ------------------------------------------------------------------------------------------ WebSockets


def websocket_upgrade(path: str, *headers: tuple[str, str], protocol: str | None = "chat") -> bytes:
    upgrade = [
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    if protocol:
        upgrade.append(("Sec-WebSocket-Protocol", protocol))
    return request(path, [*upgrade, *headers]).replace(b"Connection: close", b"Connection: Upgrade")


def handshake_status(url: str, data: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as connection:
        connection.sendall(data)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return status_of(received), received.partition(b"\r\n\r\n")[0]


def test_a_websocket_upgrade_reaches_the_app_only_where_the_policy_allows(served: Served, server: str) -> None:
    url = served.urls[server]
    token = [("Authorization", f"Bearer {served.token()}")]
    status, head = handshake_status(url, websocket_upgrade("/_/ws", *token))
    assert status == 101 and b"sec-websocket-protocol: chat" in head.lower()
    for path in ("/admin/x", "/%61dmin/x", "/ADMIN/x", "/public/%2e%2e/admin/x", "/admin;x/x", "//admin/x"):
        status, _ = handshake_status(url, websocket_upgrade(path, *token))
        assert status in (0, 400, 403), (path, status)  # granian may close the refused handshake without an answer
    status, _ = handshake_status(url, websocket_upgrade("/_/ws"))
    assert status in (0, 401, 403), status
    status, _ = handshake_status(url, websocket_upgrade("/_/ws", ("X-Clerk-User-Id", "user_bob")))
    assert status in (0, 401, 403), status


def test_a_websocket_subprotocol_list_cannot_smuggle_another_request(served: Served, server: str) -> None:
    url = served.urls[server]
    token = ("Authorization", f"Bearer {served.token()}")
    status, head = handshake_status(url, websocket_upgrade("/_/ws", token, protocol="x, chat"))
    assert status == 101 and b"sec-websocket-protocol: chat" in head.lower()
    status, _ = handshake_status(url, websocket_upgrade("/_/ws", token, protocol="chat\r\nX-Clerk-User-Id: user_x"))
    assert status in (101, 400)  # the injected line is a header of its own, stripped as any identity header


def test_an_upgrade_the_gateway_does_not_relay_is_not_passed_to_the_app(send: Callable[[bytes], Answer]) -> None:
    answer = send(request("/public/x", [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"),
                                        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"), JSON]))  # fmt: skip
    assert answer.status == 200
    names = answer.app_header_names()
    assert not {"upgrade", "http2-settings"} & set(names), names


# ------------------------------------------------------------------------------------------ /__clerk


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/__clerk/../admin/x", 403),  # leaves the prefix: judged as the app path it names
        ("/__clerk/%2e%2e/admin/x", 403),
        ("/__clerk/v1/../../admin/x", 403),
        ("/__clerk%2F../admin/x", 400),
        ("/__clerkX/v1/environment", 200),  # not the prefix: an app path like any other
        ("/__CLERK/v1/environment", 200),
        ("/__clerk;x/v1/environment", 200),
    ],
)
def test_the_frontend_api_prefix_is_matched_on_the_canonical_path_only(
    target: str, status: int, send: Callable[[bytes], Answer], served: Served
) -> None:
    answer = send(request(target, signed_in(served.token())))
    assert answer.status == status, (target, answer)
    if status == 200:
        assert answer.app is not None and answer.app_headers("x-clerk-user-id") == ["user_bob"]
    else:
        assert answer.app is None


def test_a_frontend_api_path_cannot_name_another_host(send: Callable[[bytes], Answer]) -> None:
    for target in ("/__clerk//evil.example/v1/environment", "/__clerk/@evil.example/v1/environment"):
        answer = send(request(target, [JSON]))
        assert answer.status in (400, 404) and answer.app is None, (target, answer)
    answer = send(request("/__clerk/v1/environment", [JSON]))
    assert answer.status == 200 and answer.app is None


# ------------------------------------------------------------------------------------------ metrics


def test_the_metrics_endpoint_is_matched_on_the_canonical_path(send: Callable[[bytes], Answer]) -> None:
    """An edge that blocks `/__gateway/metrics` (SECURITY.md) sees `/__gateway%2Fmetrics` as another path."""
    assert b"# HELP" in send(request("/__gateway/metrics")).body
    answer = send(request("/__gateway%2Fmetrics", [JSON]))
    assert (answer.status, answer.error) == (400, "ambiguous_path") and b"# HELP" not in answer.body
    answer = send(request("/__gateway/%6Detrics", [JSON]))  # canonical spelling: the same endpoint
    assert answer.status == 200 and b"# HELP" in answer.body


# ------------------------------------------------------------------------------------------ the session memo


def test_a_remembered_session_is_judged_again_on_every_path_method_and_host(
    send: Callable[[bytes], Answer], served: Served
) -> None:
    """The memo keys the decision, never the route: the same token and headers, another request."""
    headers = signed_in(served.token())
    for _ in range(2):  # the second round is answered from the memo
        answer = send(request("/home", headers))
        assert answer.status == 200 and answer.app_headers("x-clerk-user-id") == ["user_bob"]
        for target in ("/admin/x", "/%61dmin/x", "/secret", "/home/../admin/x"):
            answer = send(request(target, headers))
            assert answer.status == 403 and answer.app is None, target
        answer = send(request("/admin/x", headers, method="HEAD"))
        assert answer.status == 403
        answer = send(request("/home", headers, host="evil.example"))
        assert answer.status == 421 and answer.app is None
    cookie = [("Cookie", f"__session={served.token()}"), ("Authorization", "Bearer not-a-token"), JSON]
    answer = send(request("/home", cookie))  # a valid cookie does not vouch for a bad header token
    assert answer.app is None or answer.app_headers("x-clerk-user-id") == []


# ------------------------------------------------------------------------------------------ sign-out


def test_sign_out_refuses_a_cross_site_post_and_an_off_site_redirect(send: Callable[[bytes], Answer]) -> None:
    form = b"redirect_url=https%3A%2F%2Fevil.example%2F"
    post = [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(form)))]
    for origin in ("https://evil.example", "null", f"http://{HOST}.evil.example", f"http://user@{HOST}"):
        answer = send(request("/__gateway/sign-out", [*post, ("Origin", origin)], method="POST", body=form))
        assert (answer.status, answer.error) == (403, "origin_not_allowed"), origin
    answer = send(request("/__gateway/sign-out", [*post, ("Origin", f"http://{HOST}")], method="POST", body=form))
    assert answer.status == 303 and b"\r\nlocation: /\r\n" in answer.head.lower() + b"\r\n"
    page = send(
        request("/__gateway/sign-out?redirect_url=%22%3E%3Cscript%3Ealert(1)%3C/script%3E", [("Accept", "text/html")])
    )
    assert page.status == 200 and b"<script>alert" not in page.body and b"frame-ancestors 'none'" in page.head


# ------------------------------------------------------------------------------------------ no 5xx


@pytest.mark.parametrize(
    "data",
    [
        b"GET /public/x HTTP/1.1\r\nHost: app.test:8000\r\nCookie: __session=\xff\xfe\r\nConnection: close\r\n\r\n",
        b"GET /public/x HTTP/1.1\r\nHost: app.test:8000\r\nAuthorization: Bearer \xc3\xa9.\xc3\xa9.\xc3\xa9\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /public/x?__clerk_handshake=%ff%fe HTTP/1.1\r\nHost: app.test:8000\r\nConnection: close\r\n\r\n",
        b"GET /x?__clerk_db_jwt=\xff HTTP/1.1\r\nHost: app.test:8000\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        b"GET /public/x HTTP/1.1\r\nHost: app.test:8000\r\nCookie: " + b"a" * 12000 + b"\r\nConnection: close\r\n\r\n",
        b"GET /public/x HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
        b"GET /public/x HTTP/1.1\r\nHost: \xc3\xa9.example.com\r\nConnection: close\r\n\r\n",
        b"GET /__gateway/whoami HTTP/1.1\r\nHost: app.test:8000\r\nCookie: __client_uat=abc; __session=x.y.z\r\n"
        b"Connection: close\r\n\r\n",
        b"POST /__gateway/sign-out HTTP/1.1\r\nHost: app.test:8000\r\nOrigin: \xff\r\nContent-Length: 3\r\n"
        b"Connection: close\r\n\r\n%ff",
        b"GET /__gateway/auth HTTP/1.1\r\nHost: app.test:8000\r\nX-Forwarded-Uri: /\xff\r\nConnection: close\r\n\r\n",
        b"GET /__clerk/v1/\xff HTTP/1.1\r\nHost: app.test:8000\r\nConnection: close\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: app.test:8000\r\nConnection: close\r\n\r\n",
        b"CONNECT app.test:8000 HTTP/1.1\r\nHost: app.test:8000\r\nConnection: close\r\n\r\n",
    ],
)
def test_bad_input_is_never_answered_with_a_5xx(data: bytes, send: Callable[[bytes], Answer]) -> None:
    answer = send(data)
    assert 0 < answer.status < 500, (data[:80], answer)
    assert b"Traceback" not in answer.body


# ------------------------------------------------------------------------------------------ smuggling


SMUGGLED = b"GET /admin/x HTTP/1.1\r\nHost: app.test:8000\r\nAccept: application/json\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 4, 4\r\n",  # a list of lengths
        b"Content-Length: 4\r\nTransfer-Encoding: identity\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        b"Transfer-Encoding: chunked, identity\r\n",
        b"Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n",
        b"Content-Length: 0x4\r\n",
    ],
)
def test_a_body_length_two_parsers_could_read_differently_smuggles_nothing(
    head: bytes, served: Served, server: str
) -> None:
    data = b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\n" + head + b"\r\n0\r\n\r\n" + SMUGGLED
    answer = raw_request(served.urls[server], data, timeout=3)
    assert answer.count(b"HTTP/1.1 ") <= 1, answer[:400]  # never a second answer, for the smuggled request
    assert b'"/admin/x"' not in answer and status_of(answer) < 500


def test_keep_alive_requests_are_each_judged_on_their_own_headers(served: Served, server: str) -> None:
    token = served.token()
    first = (
        f"GET /home HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    second = f"GET /home HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\nConnection: close\r\n\r\n".encode()
    parts = urlsplit(served.urls[server])
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as connection:
        connection.sendall(first + second)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]
    assert statuses == [200, 401], statuses
    assert received.count(b"user_bob") == 1  # the identity of the first request only


@pytest.mark.parametrize(
    "spelling", ["/admin%EF%BC%8E/x", "/admin%E2%80%A4/x", "/admin%C2%A0/x", "/admin%EF%BC%9Bx/x", "/admin%EF%BC%8F/x"]
)
def test_a_unicode_spelling_folded_and_then_read_another_way_is_still_judged_as_admin(
    spelling: str, send: Callable[[bytes], Answer], served: Served
) -> None:
    answer = send(request(spelling, signed_in(served.token())))
    assert answer.status in (400, 403) and answer.app is None, (spelling, answer)


async def test_a_trusted_proxys_repeated_forwarding_headers_are_read_once_the_same_way(
    gateway: RunningGateway, dev_clerk: EmulatorServer
) -> None:
    """The allow-list, Clerk's URL and the app all read the first `X-Forwarded-Host` item, never a later one."""
    token = signed_in(mint_token(dev_clerk, "user_bob"))
    repeated = [("X-Forwarded-Host", "a.example.com"), ("X-Forwarded-Host", "evil.example"), *token]
    answer = await exchange_async(gateway.url, request("/home", repeated))
    assert answer.status == 200 and answer.app_headers("x-forwarded-host") == ["a.example.com"]
    for first in ("evil.example, a.example.com", "evil.example/.example.com", "a.example.com:99999"):
        answer = await exchange_async(gateway.url, request("/home", [("X-Forwarded-Host", first), *token]))
        assert (answer.status, answer.error) == (421, "host_not_allowed") and answer.app is None, first
    proto = [("X-Forwarded-Proto", "https, http"), ("X-Forwarded-Proto", "http"), *token]
    answer = await exchange_async(gateway.url, request("/home", proto))
    assert answer.status == 200 and answer.app_headers("x-forwarded-proto") == ["https"]


async def test_a_clients_x_original_url_can_change_the_answers_format_but_never_its_verdict(
    gateway: RunningGateway,
) -> None:
    """Traefik and Caddy pass a client's `X-Original-URL` on; agreeing with theirs, it only selects nginx's format."""
    navigation = [("Accept", "text/html"), ("Sec-Fetch-Dest", "document")]
    answer = await exchange_async(gateway.url, forward_auth("/secret", *navigation))
    assert answer.status == 307
    answer = await exchange_async(gateway.url, forward_auth("/secret", ("X-Original-URL", "/secret"), *navigation))
    assert answer.status == 401 and b"\r\nlocation: " in answer.head.lower()
    for described in ("/public/x", f"http://{HOST}/public/x", "http://a.example.com/secret"):
        answer = await exchange_async(gateway.url, forward_auth("/secret", ("X-Original-URL", described), JSON))
        assert answer.status in (400, 403), described


def test_connection_cannot_name_the_gateways_own_headers_away(send: Callable[[bytes], Answer], served: Served) -> None:
    """`Connection` lists hop-by-hop headers to drop: a client listing ours must not remove what the gateway adds."""
    named = ("Connection", "x-clerk-user-id, x-clerk-auth-status, x-forwarded-for, host, x-gateway-identity-assertion")
    answer = send(request("/home", [*signed_in(served.token()), named]))
    assert answer.status == 200
    assert answer.app_headers("x-clerk-user-id") == ["user_bob"] and answer.app_headers("x-clerk-auth-status") == [
        "signed-in"
    ]
    assert answer.app_headers("x-forwarded-for") == ["127.0.0.1"] and answer.app_headers("host") == [HOST]
