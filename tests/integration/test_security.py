"""Security hardening over real loopback HTTP: redirects, limits, hosts, sign-out, cookies, request
smuggling shapes (literal bytes on a socket, uvicorn and granian), and the signed identity assertion."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.browser import FETCH, NAVIGATION
from tests.support.faults import mint_token, raw_request, status_of
from tests.support.upstream import EchoUpstream, unused_port, upstream_in_thread

HOST = "app.test:8000"


@pytest.fixture
async def gateway(dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any]) -> Any:
    return await run_gateway(
        gateway_settings(
            dev_clerk,
            upstream.url,
            GATEWAY_ALLOWED_HOSTS="app.test:8000",
            GATEWAY_ALLOWED_REDIRECT_ORIGINS="https://partner.example",
        )
    )


# ------------------------------------------------------------------------------------------ redirects


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("http://app.test:8000/back", True),  # the app's own origin
        ("https://partner.example/x", True),  # GATEWAY_ALLOWED_REDIRECT_ORIGINS
        ("https://evil.example/", False),
        ("https://partner.example.evil.example/", False),
        ("http://app.test:8000@evil.example/", False),
        ("//evil.example/", False),
        ("javascript:alert(1)", False),
        ("http://app.test:80/", False),
    ],
)
async def test_primary_sync_redirect_follows_only_own_and_allowed_origins(
    target: str, allowed: bool, gateway: RunningGateway, http_client: httpx.AsyncClient
) -> None:
    """PROTOCOL.md row D5: Clerk itself follows `__clerk_redirect_url` anywhere; the gateway does not."""
    response = await http_client.get(
        f"{gateway.url}/sign-in?__clerk_redirect_url={quote(target, safe='')}",
        headers={**NAVIGATION, "host": HOST, "cookie": "__clerk_db_jwt=dvb_x"},
    )
    if allowed:
        assert response.status_code == 307 and response.headers["location"].startswith(target.split("?")[0])
    else:
        assert response.status_code == 400, response.headers.get("location")
        assert "location" not in response.headers


async def test_sign_out_posts_need_an_origin_of_this_app_or_a_token(
    gateway: RunningGateway, http_client: httpx.AsyncClient
) -> None:
    url = f"{gateway.url}/__gateway/sign-out"
    page = await http_client.get(url, headers={"host": HOST})  # a confirmation page: GET signs nobody out
    assert page.status_code == 200 and 'name="csrf"' in page.text
    assert [cookie.partition("=")[0] for cookie in page.headers.get_list("set-cookie")] == ["__gateway_sign_out"]
    assert (await http_client.post(url, headers={"host": HOST})).status_code == 403  # no Origin, no Referer
    for origin in ("https://evil.example", "null", "http://app.test:8000.evil.example"):
        assert (await http_client.post(url, headers={"host": HOST, "origin": origin})).status_code == 403
    for target, expected in (
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("https://partner.example/bye", "https://partner.example/bye"),
    ):
        out = await http_client.post(
            url, headers={"host": HOST, "origin": f"http://{HOST}"}, data={"redirect_url": target}
        )
        assert out.status_code == 303 and out.headers["location"] == expected


async def test_cookies_are_secure_behind_tls(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url))  # trusts 127.0.0.1 as its proxy
    tls = {"host": HOST, "x-forwarded-proto": "https", "origin": f"https://{HOST}"}
    out = await http_client.post(f"{gateway.url}/__gateway/sign-out", headers=tls)
    cookies = out.headers.get_list("set-cookie")
    assert cookies and all("; Secure" in cookie and "SameSite=Lax" in cookie for cookie in cookies)
    plain = await http_client.post(
        f"{gateway.url}/__gateway/sign-out", headers={"host": HOST, "origin": f"http://{HOST}"}
    )
    assert not any("Secure" in cookie for cookie in plain.headers.get_list("set-cookie"))
    handshake = await http_client.get(f"{gateway.url}/x", headers={**NAVIGATION, "host": HOST})
    # Clerk's own redirect counter, exactly as Clerk's SDK writes it (PROTOCOL.md §4.2), and the gateway's
    # memory of redirects (loops.py), Secure behind TLS like the gateway's other cookies
    clerks = [c for c in handshake.headers.get_list("set-cookie") if not c.startswith("__gateway_loop=")]
    assert clerks == ["__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"]
    behind_tls = await http_client.get(f"{gateway.url}/x", headers={**NAVIGATION, **tls})
    [memory] = [c for c in behind_tls.headers.get_list("set-cookie") if c.startswith("__gateway_loop=")]
    assert memory.endswith("; HttpOnly; SameSite=Lax; Secure")


# ------------------------------------------------------------------------------------------ limits, hosts


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/x?" + "q" * 9000, {}, 414, "uri_too_long"),
        ("/x", {"x-long": "a" * 20_000}, 431, "headers_too_large"),
        ("/x", {"cookie": "; ".join(f"c{i}=1" for i in range(101))}, 431, "too_many_cookies"),
        ("/x", {"host": "evil.example"}, 421, "host_not_allowed"),
        ("/x", {"host": "APP.test:8000.evil"}, 421, "host_not_allowed"),
    ],
)
async def test_limits_and_hosts_get_precise_answers(
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
    gateway: RunningGateway,
    http_client: httpx.AsyncClient,
) -> None:
    response = await http_client.get(f"{gateway.url}{path}", headers={"host": HOST, **FETCH, **headers})
    assert response.status_code == status
    assert response.json()["error"] == code


async def test_a_hundred_cookies_are_still_fine(gateway: RunningGateway, http_client: httpx.AsyncClient) -> None:
    cookies = "; ".join(f"c{i}=1" for i in range(100))
    response = await http_client.get(f"{gateway.url}/public/x", headers={"host": HOST, **FETCH, "cookie": cookies})
    assert response.status_code == 200


# ------------------------------------------------------------------------------------------ smuggling

# Each of these is refused: a 4xx, or the connection closed without an answer.
REFUSED = {
    "cl_and_te": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.test:8000\r\n\r\n",
    "two_lengths": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n"
    b"abcd",
    "te_not_chunked": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"0\r\n\r\n",
    "te_xchunked": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te_space_before_colon": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nTransfer-Encoding : chunked\r\n"
    b"Content-Length: 4\r\n\r\n0\r\n\r\n",
    "negative_length": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nContent-Length: -1\r\n\r\n",
    "plus_length": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nContent-Length: +4\r\n\r\nabcd",
    "nul_in_header": b"GET /public/x HTTP/1.1\r\nHost: app.test:8000\r\nX-A: a\x00b\r\n\r\n",
}
# Lenient parsers may accept these (h11 unfolds obs-fold, takes bare LF, ignores chunk extensions). That
# is safe only because the gateway re-frames every body it forwards: one request in, at most one
# request to the app, one answer out, and the identity headers stripped whatever the line endings.
NORMALISED = {
    "te_obs_fold": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "chunk_extension_nul": b"POST /public/x HTTP/1.1\r\nHost: app.test:8000\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;\x00\r\nabcd\r\n0\r\n\r\n",
    "bare_lf_with_spoof": b"GET /public/x HTTP/1.1\nHost: app.test:8000\nX-Clerk-User-Id: user_alice\n\n",
}
SMUGGLING = {**REFUSED, **NORMALISED}


def _assert_refused_or_clean(name: str, answer: bytes, *, transfer_encoding_wins: bool = False) -> None:
    status = status_of(answer)
    if name == "cl_and_te" and transfer_encoding_wins:
        # granian (hyper) takes RFC 9112 §6.3's other branch: the body by Transfer-Encoding alone, then the
        # connection closed, so the bytes after the chunked body are never read as a second request.
        assert status == 200 and b"connection: close" in answer.lower(), answer[:400]
    elif name in REFUSED:
        assert status == 0 or 400 <= status < 500, (name, answer[:200])
    else:
        assert status == 0 or status < 500, (name, answer[:200])
    assert answer.count(b"HTTP/1.1 ") <= 1, (name, answer[:400])  # never a second, smuggled answer
    assert b"user_alice" not in answer and b"/smuggled" not in answer


@pytest.mark.parametrize("name", sorted(SMUGGLING))
async def test_smuggling_shapes_never_reach_the_app_through_uvicorn(
    name: str, gateway: RunningGateway, upstream: EchoUpstream
) -> None:
    import asyncio

    answer = await asyncio.to_thread(raw_request, gateway.url, SMUGGLING[name])
    _assert_refused_or_clean(name, answer)


async def test_the_gate_itself_rejects_content_length_with_transfer_encoding(
    dev_clerk: EmulatorServer, upstream: EchoUpstream
) -> None:
    """Whatever a server lets through, the gate refuses an ambiguous body length (400) before the app."""
    from gateway.edge.app import create_app

    app = create_app(gateway_settings(dev_clerk, upstream.url))
    for headers in (
        [(b"content-length", b"4"), (b"transfer-encoding", b"chunked")],
        [(b"transfer-encoding", b"chunked"), (b"content-length", b"4")],
        [(b"content-length", b"4"), (b"content-length", b"5")],
        [(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")],
        [(b"transfer-encoding", b"gzip")],
        [(b"content-length", b"four")],
    ):
        assert await _call_gate(app, headers) == 400, headers


async def _call_gate(app: Any, headers: list[tuple[bytes, bytes]]) -> int:
    """One ASGI request straight into the app (no server in between to normalise the headers)."""
    runtime = app.state.runtime
    await runtime.start()
    sent: list[dict[str, Any]] = []
    bodies = [{"type": "http.request", "body": b"abcd", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return bodies.pop() if bodies else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/public/x", "raw_path": b"/public/x", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"app.test:8000"), *[(n, v) for n, v in headers if n not in (b"host",)]],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    try:
        await app(scope, receive, send)
    finally:
        await runtime.aclose()
    return int(sent[0]["status"])


@pytest.fixture(scope="module")
def granian_gateway() -> Iterator[str]:
    """`gateway serve` on granian (its own HTTP parser) in a subprocess, for the same smuggling shapes."""
    with EmulatorServer() as clerk, upstream_in_thread() as echo:
        port = unused_port()
        environment = {
            **os.environ,
            "CLERK_PUBLISHABLE_KEY": clerk.publishable_key,
            "CLERK_SECRET_KEY": clerk.secret_key,
            "CLERK_API_URL": clerk.api_url,
            "CLERK_FAPI_URL": clerk.fapi_url,
            "GATEWAY_UPSTREAM": echo.url,
            "GATEWAY_PUBLIC_PATHS": "/public/*",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "GATEWAY_ACCESS_LOG": "false",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--server", "granian"],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/__gateway/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.02)
            else:
                raise AssertionError("granian did not start")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_shapes_never_reach_the_app_through_granian(name: str, granian_gateway: str) -> None:
    _assert_refused_or_clean(name, raw_request(granian_gateway, SMUGGLING[name]), transfer_encoding_wins=True)


# ------------------------------------------------------------------------------------------ assertion


async def test_identity_assertion_uses_its_own_key_and_a_short_lifetime(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "assertion.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_ASSERTION_KEY=str(key_file)))
    token = mint_token(dev_clerk, "user_alice")
    response = await http_client.get(
        f"{gateway.url}/api/me",
        headers={"host": HOST, "authorization": f"Bearer {token}", "x-gateway-identity-assertion": "forged", **FETCH},
    )
    values = [value for name, value in response.json()["headers"] if name.lower() == "x-gateway-identity-assertion"]
    assert len(values) == 1 and values[0] != "forged"
    assertion = values[0]
    jwks = (await http_client.get(f"{gateway.url}/__gateway/jwks.json")).json()
    assert jwks["keys"][0]["kid"] not in {k["kid"] for k in dev_clerk.jwks()["keys"]}
    claims = jwt.decode(assertion, key.public_key(), algorithms=["ES256"])
    assert claims["sub"] == "user_alice" and 0 < claims["exp"] - claims["iat"] <= 60
    assert jwt.get_unverified_header(assertion)["kid"] == jwks["keys"][0]["kid"]  # signed with the gateway's key
