"""Answers that have no body by rule (304, 204, the answer to HEAD) but carry `Content-Length`, relayed
by `gateway serve` under each ASGI server we run (a real server process in front of a real app on
loopback): status and headers arrive, no body, no error, and the connection stays usable."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from tests.support.faults import serve_environment
from tests.support.upstream import unused_port


class _BodilessApp(BaseHTTPRequestHandler):
    """`/_/304` and `/_/204` with a `Content-Length` (as some apps send them), `/_/page` for HEAD; keep-alive."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/_/304":
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", "123")  # the representation's length (RFC 9110 §8.6)
        elif self.path == "/_/204":
            self.send_response(204)
            self.send_header("Content-Length", "0")
        else:
            body = b"x" * 123
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "123")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def bodiless_app() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BodilessApp)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def served(request: pytest.FixtureRequest, bodiless_app: str) -> Iterator[str]:
    """`gateway serve --server <name>` in a subprocess in front of the app; yields its base URL."""
    with EmulatorServer() as clerk:
        port = unused_port()
        environment = serve_environment(clerk, bodiless_app, port, GATEWAY_PUBLIC_PATHS="/_/*")
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--server", request.param],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(500):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/__gateway/healthz", timeout=2).status_code == 200:
                        break
                time.sleep(0.02)
            else:
                raise AssertionError(f"{request.param} did not start")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/_/304", 304),
        ("GET", "/_/204", 204),
        ("HEAD", "/_/page", 200),
    ],
)
def test_an_answer_without_a_body_by_rule_is_relayed_whole_with_its_headers(
    served: str, method: str, path: str, status: int
) -> None:
    with httpx.Client(base_url=served, timeout=10) as client:
        for _ in range(2):  # the same client connection again: it was not reset
            response = client.request(method, path, headers={"accept": "*/*"})
            assert response.status_code == status
            assert response.content == b""
            if status == 304:
                assert response.headers["etag"] == '"v1"'
                assert "content-length" not in response.headers  # never taken from a 304 (RFC 9111 §3.2)
            if method == "HEAD":
                assert response.headers["content-length"] == "123"
        assert client.get("/_/page").content == b"x" * 123
