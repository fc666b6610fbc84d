"""What an operator sees: health, readiness, Prometheus metrics, JSON access logs, request ids, and a
graceful shutdown (in-flight requests finish, new ones are refused), over real loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gateway.edge.app import create_app
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import gateway_settings
from tests.support.browser import FETCH, NAVIGATION
from tests.support.faults import mint_token, serve_environment
from tests.support.upstream import EchoUpstream, serving_asgi, unused_port, upstream_in_thread


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def gateway_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of the `gateway` loggers (Litestar's logging set-up replaces pytest's root handler)."""
    logger = logging.getLogger("gateway")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def counted(decision: str, reason: str, route_class: str, status: str, app: str = "default") -> str:
    labels = f'app="{app}",decision="{decision}",reason="{reason}",route_class="{route_class}",status="{status}"'
    return f"gateway_requests_total{{{labels}}} 1.0"


def echoed_headers(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


async def test_readiness_reports_each_check_and_health_only_the_process(
    dev_clerk: EmulatorServer, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, f"http://127.0.0.1:{unused_port()}"))
    assert (await http_client.get(f"{gateway.url}/__gateway/healthz")).status_code == 200
    ready = await http_client.get(f"{gateway.url}/__gateway/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"settings": "ok", "keys": "ok", "upstream": "unreachable"}
    assert ready.headers["cache-control"] == "no-store"


async def test_metrics_count_requests_by_route_class_decision_and_reason(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url))
    token = mint_token(dev_clerk, "user_alice")
    headers = {"host": gateway.host, **FETCH}
    assert (
        await http_client.get(f"{gateway.url}/api/a", headers={**headers, "authorization": f"Bearer {token}"})
    ).status_code == 200
    assert (await http_client.get(f"{gateway.url}/api/a", headers=headers)).status_code == 401
    assert (await http_client.get(f"{gateway.url}/x", headers={**headers, **NAVIGATION})).status_code == 307
    assert (await http_client.get(f"{gateway.url}/x?" + "q" * 9000, headers=headers)).status_code == 414
    await http_client.get(f"{gateway.url}/__clerk/v1/environment", headers=headers)
    await http_client.get(f"{gateway.url}/__gateway/healthz")
    expected = (
        counted("signed-in", "none", "proxy", "2xx"),
        counted("signed-out", "dev-browser-missing", "proxy", "4xx"),
        counted("handshake", "dev-browser-missing", "proxy", "3xx"),
        counted("refused", "uri_too_long", "proxy", "4xx", app="none"),
        counted("none", "none", "frontend_api", "2xx", app="none"),
        counted("none", "none", "gateway", "2xx", app="none"),
        'gateway_handshakes_total{reason="dev-browser-missing"} 1.0',
        'gateway_request_duration_seconds_count{app="default",route_class="proxy"} 3.0',
        'gateway_request_duration_seconds_count{app="none",route_class="proxy"} 1.0',
        "gateway_upstream_duration_seconds_count 1.0",
        "gateway_jwks_fetches_total 1.0",
        "gateway_jwks_fetch_failures_total 0.0",
        "gateway_jwks_keys 1.0",
        "gateway_session_refreshes_total 0.0",
    )
    for _ in range(100):  # a request is counted just after its last byte is sent
        scrape = await http_client.get(f"{gateway.url}/__gateway/metrics")
        text = scrape.text
        if all(line in text for line in expected):
            break
        await asyncio.sleep(0.01)
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    for line in expected:
        assert line in text, line
    assert token not in text


async def test_access_log_is_one_json_line_a_request_without_secrets(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
    gateway_logs: list[logging.LogRecord],
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url))
    token = mint_token(dev_clerk, "user_alice")
    secret_query = "__clerk_db_jwt=dvb_secret&__clerk_handshake=hs_secret"
    response = await http_client.get(
        f"{gateway.url}/api/items?{secret_query}",
        headers={
            "host": gateway.host,
            "authorization": f"Bearer {token}",
            "cookie": "__session=cookie_secret",
            **FETCH,
        },
    )
    for _ in range(100):  # the line is written just after the last byte is sent
        lines = [json.loads(r.getMessage()) for r in gateway_logs if r.name == "gateway.access"]
        if lines:
            break
        await asyncio.sleep(0.01)
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {
        "time", "request_id", "method", "path", "status", "route", "app", "decision", "reason", "user_id",
        "upstream_seconds", "upstream_error", "total_seconds",
    }  # fmt: skip
    assert line["method"] == "GET" and line["path"] == "/api/items" and line["status"] == response.status_code
    assert line["decision"] == "signed-in" and line["user_id"] == "user_alice" and line["app"] == "default"
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["upstream_seconds"] > 0 and line["total_seconds"] >= line["upstream_seconds"]
    everything = "\n".join(record.getMessage() for record in gateway_logs)
    for secret in (token, token.split(".")[2], "dvb_secret", "hs_secret", "cookie_secret", dev_clerk.secret_key):
        assert secret not in everything


async def test_access_log_can_be_switched_off(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
    gateway_logs: list[logging.LogRecord],
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_ACCESS_LOG="false"))
    await http_client.get(f"{gateway.url}/public/x", headers={"host": gateway.host, **FETCH})
    await http_client.get(f"{gateway.url}/__gateway/healthz")  # the first request is done by now
    assert not [record for record in gateway_logs if record.name == "gateway.access"]


async def test_request_id_is_generated_or_taken_from_a_trusted_proxy_and_passed_to_the_app(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
) -> None:
    public = {"host": "app.test:8000", **FETCH}
    trusted = await run_gateway(gateway_settings(dev_clerk, upstream.url))  # trusts 127.0.0.1
    untrusted = await run_gateway(gateway_settings(dev_clerk, upstream.url, GATEWAY_TRUSTED_PROXIES=""))

    generated = await http_client.get(f"{trusted.url}/public/x", headers=public)
    request_id = generated.headers["x-request-id"]
    assert len(request_id) == 16 and echoed_headers(generated)["x-request-id"] == request_id

    kept = await http_client.get(f"{trusted.url}/public/x", headers={**public, "x-request-id": "lb-42"})
    assert kept.headers["x-request-id"] == "lb-42" and echoed_headers(kept)["x-request-id"] == "lb-42"

    for spoof in ("lb-42", "bad id\twith tab"):
        replaced = await http_client.get(f"{untrusted.url}/public/x", headers={**public, "x-request-id": spoof})
        assert replaced.headers["x-request-id"] != spoof
        ids = [value for name, value in replaced.json()["headers"] if name.lower() == "x-request-id"]
        assert ids == [replaced.headers["x-request-id"]]


@pytest.mark.parametrize(
    ("answer", "path", "headers", "status"),
    [
        ("proxied", "/public/x", FETCH, 200),
        ("signed-out API call", "/api/x", FETCH, 401),
        ("handshake", "/x", NAVIGATION, 307),
        ("refusal before the decision", "/x?" + "q" * 9000, FETCH, 414),
        ("Frontend API proxy", "/__clerk/v1/environment", FETCH, 200),
        ("gateway endpoint", "/__gateway/healthz", {}, 200),
    ],
)
async def test_every_answer_carries_exactly_one_request_id_and_is_counted_by_status(
    dev_clerk: EmulatorServer,
    upstream: EchoUpstream,
    run_gateway: Callable[..., Any],
    http_client: httpx.AsyncClient,
    answer: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url))
    response = await http_client.get(f"{gateway.url}{path}", headers={"host": gateway.host, **headers})
    assert response.status_code == status, answer
    assert len(response.headers.get_list("x-request-id")) == 1, answer
    status_class = f"{status // 100}xx"
    for _ in range(100):  # counted just after the last byte
        scrape = (await http_client.get(f"{gateway.url}/__gateway/metrics")).text
        if f'status="{status_class}"}} 1.0' in scrape:
            break
        await asyncio.sleep(0.01)
    assert f'status="{status_class}"}} 1.0' in scrape, answer


async def test_a_failing_upstream_answer_carries_a_request_id(
    dev_clerk: EmulatorServer, run_gateway: Callable[..., Any], http_client: httpx.AsyncClient
) -> None:
    gateway = await run_gateway(gateway_settings(dev_clerk, f"http://127.0.0.1:{unused_port()}"))
    response = await http_client.get(f"{gateway.url}/public/x", headers={"host": gateway.host, **FETCH})
    assert response.status_code == 502 and len(response.headers.get_list("x-request-id")) == 1


async def test_shutdown_lets_in_flight_requests_finish_and_refuses_new_ones(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, http_client: httpx.AsyncClient
) -> None:
    settings = gateway_settings(dev_clerk, upstream.url, GATEWAY_PUBLIC_PATHS="/public/*,/_/*")
    app = create_app(settings)
    runtime = app.state.runtime
    public = {"host": "app.test:8000", **FETCH}
    async with serving_asgi(app, lifespan="on") as url:
        slow = asyncio.create_task(http_client.get(f"{url}/_/slow?seconds=0.5", headers=public))
        for _ in range(200):
            if runtime.in_flight:
                break
            await asyncio.sleep(0.01)
        assert runtime.in_flight == 1
        drained = asyncio.create_task(runtime.drain(5))
        refused = await http_client.get(f"{url}/public/x", headers=public)
        assert refused.status_code == 503 and refused.json()["error"] == "shutting_down"
        assert refused.headers["connection"] == "close"
        finished = await slow
        assert finished.status_code == 200 and finished.text == "finally"
        assert await drained is True


def _poll(check: Callable[[], bool], what: str, attempts: int = 300) -> None:
    for _ in range(attempts):
        with contextlib.suppress(httpx.TransportError):
            if check():
                return
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_sigterm_to_gateway_serve_finishes_the_in_flight_request(server: str) -> None:
    """The real thing: `gateway serve` in a subprocess, SIGTERM while a request is in flight."""
    with EmulatorServer() as clerk, upstream_in_thread() as echo:
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        environment = serve_environment(clerk, echo.url, port, GATEWAY_PUBLIC_PATHS="/_/*")
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--server", server],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with httpx.Client(timeout=10) as client, ThreadPoolExecutor(1) as pool:
                _poll(lambda: client.get(f"{base}/__gateway/healthz").status_code == 200, f"{server} serves")
                slow = pool.submit(client.get, f"{base}/_/slow?seconds=1", headers={"accept": "*/*"})
                in_flight = "gateway_requests_in_flight 1.0"
                _poll(lambda: in_flight in client.get(f"{base}/__gateway/metrics").text, "the request is in flight")
                process.send_signal(signal.SIGTERM)
                answer = slow.result(timeout=10)
            assert answer.status_code == 200 and answer.text == "finally"
            assert process.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_gateway_serve_writes_every_access_line_to_stdout_in_order_by_its_graceful_exit(server: str) -> None:
    """Access lines are written in batches: by the end of a graceful shutdown every one is on stdout,
    in the order the requests ended, valid JSON whatever the path holds."""
    with EmulatorServer() as clerk, upstream_in_thread() as echo:
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        environment = serve_environment(clerk, echo.url, port, GATEWAY_PUBLIC_PATHS="/_/*", GATEWAY_ACCESS_LOG="true")
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--server", server],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        paths = [f"/_/{number}" for number in range(40)] + ['/_/q"uote\\back', "/_/ünï", "/_/\x01ctl"]
        refused = {'/_/q"uote\\back', "/_/\x01ctl"}  # an escaped backslash or control character: 400 by rule
        try:
            with httpx.Client(timeout=10) as client:
                _poll(lambda: client.get(f"{base}/__gateway/healthz").status_code == 200, f"{server} serves")
                for path in paths:
                    raw = path.encode("utf-8").decode("latin-1").replace("\\", "%5C").replace('"', "%22")
                    raw = "".join(c if 0x20 < ord(c) < 0x7F else "".join(f"%{b:02X}" for b in c.encode("latin-1"))
                                  for c in raw)  # fmt: skip
                    answer = client.get(f"{base}{raw}", headers={"accept": "*/*"})
                    assert answer.status_code == (400 if path in refused else 200), path
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    lines = [json.loads(line) for line in output.decode("ascii").splitlines() if line.startswith('{"time":')]
    assert [line["path"] for line in lines if line["path"].startswith("/_/")] == paths
    assert all(
        line["status"] == (400 if line["path"] in refused else 200) and line["route"] == "proxy"
        for line in lines
        if line["path"] in paths
    )
