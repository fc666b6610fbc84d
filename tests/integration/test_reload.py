"""The real thing: `gateway serve` in a subprocess, its file changed, `kill -HUP`: the new routes take
effect in every worker, a broken file changes nothing, a request started before finishes, and what
only a restart can change keeps its value."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.edge.app import GatewayApp, create_app
from gateway.emulator.server import EmulatorServer
from gateway.revocation.deny_list import Revocation
from gateway.settings import Settings, load_settings
from tests.support.browser import FETCH
from tests.support.faults import faulty_proxy, mint_token, serve_environment
from tests.support.upstream import EchoUpstream, serving_asgi, unused_port, upstream_in_thread


def _poll(check: Callable[[], bool], what: str, attempts: int = 500) -> None:
    for _ in range(attempts):
        with contextlib.suppress(httpx.TransportError):
            if check():
                return
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


def _reloadable_app(config: Path, clerk: EmulatorServer, upstream: str, api_url: str | None = None) -> GatewayApp:
    """An in-process gateway that reads `config` again on each `app.live.reload()`."""
    environ = {"CLERK_PUBLISHABLE_KEY": clerk.publishable_key, "CLERK_SECRET_KEY": clerk.secret_key,
               "CLERK_API_URL": api_url or clerk.api_url, "CLERK_FAPI_URL": clerk.fapi_url,
               "GATEWAY_UPSTREAM": upstream}  # fmt: skip

    def load() -> Settings:
        return load_settings(config, environ, require_upstream=True)

    return create_app(load(), reload_settings=load)


def _config(port: int, workers: int, public: str, listen: int | None = None) -> str:
    address = f"127.0.0.1:{listen or port}"
    return f'[gateway]\nlisten = "{address}"\nworkers = {workers}\npublic_paths = [{public}, "/_/slow"]\n'


class Served:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, port: int, workers: int, config: Path) -> None:
        self.process, self.log, self.port, self.workers, self.config = process, log, port, workers, config
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> httpx.Response:
        """On a new connection each time, so that every worker gets its turn."""
        return httpx.get(f"{self.base}{path}", headers=FETCH, timeout=10)

    def status(self, path: str) -> int:
        return self.get(path).status_code

    def every_time(self, path: str, status: int, times: int = 20) -> bool:
        """`times` answers in a row (the workers take turns): none of them answers otherwise."""
        return all(self.status(path) == status for _ in range(times))

    def logged(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def hangup(self) -> None:
        self.process.send_signal(signal.SIGHUP)


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """granian with two workers; uvicorn with one (with several, uvicorn restarts them on SIGHUP itself)."""
    server = request.param
    workers = 2 if server == "granian" else 1
    with EmulatorServer() as clerk, upstream_in_thread() as echo:
        port = unused_port()
        config = tmp_path / "gateway.toml"
        config.write_text(_config(port, workers, '"/a/*"'))
        environment = serve_environment(clerk, echo.url, port)
        del environment["GATEWAY_LISTEN"]  # in the file, so that a reload can try to change it
        log = tmp_path / "stderr.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--server", server, "--config", str(config)],
                env=environment, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        try:
            running = Served(process, log, port, workers, config)
            _poll(lambda: running.status("/__gateway/readyz") == 200, f"{server} serves")
            yield running
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.parametrize("served", ["granian", "uvicorn"], indirect=True)
def test_sighup_reloads_the_configuration_in_place(served: Served) -> None:
    gateway, config, port, workers = served, served.config, served.port, served.workers
    assert gateway.every_time("/a/x", 200) and gateway.every_time("/b/x", 401)

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(gateway.get, "/_/slow?seconds=2")
        _poll(lambda: "gateway_requests_in_flight 1.0" in gateway.get("/__gateway/metrics").text,
              "the slow request is in flight")  # fmt: skip
        new = _config(port, workers, '"/b/*"')
        config.write_text(new)
        gateway.hangup()
        _poll(lambda: gateway.logged("configuration reloaded") == workers, "every worker reloaded")
        assert gateway.every_time("/b/x", 200) and gateway.every_time("/a/x", 401)
        answer = slow.result(timeout=10)
    assert answer.status_code == 200 and answer.text == "finally"
    sha = hashlib.sha256(new.encode()).hexdigest()
    metrics = gateway.get("/__gateway/metrics").text
    assert f'gateway_config_info{{sha256="{sha}"}} 1.0' in metrics
    assert 'gateway_config_reloads_total{result="applied"} 1.0' in metrics

    config.write_text('[gateway]\npublic_paths = ["/c/*"\n')  # not TOML
    gateway.hangup()
    _poll(lambda: gateway.logged("configuration reload refused; still serving") == workers, "refused")
    assert gateway.logged("invalid TOML") == workers
    assert gateway.every_time("/b/x", 200) and gateway.every_time("/c/x", 401)

    config.write_text(new + 'mode = "bogus"\n[[gateway.apps]]\nname = "x"\n')  # two problems, both logged
    gateway.hangup()
    _poll(lambda: gateway.logged("configuration reload refused; still serving") == 2 * workers, "refused again")
    assert gateway.logged("GATEWAY_MODE: expected one of protect, annotate, got 'bogus'") == workers
    assert gateway.logged("GATEWAY_APPS: apps[1] (x): upstream is missing") == workers
    assert gateway.every_time("/b/x", 200)

    other_port = unused_port()
    config.write_text(_config(port, workers, '"/c/*"', listen=other_port))
    gateway.hangup()
    _poll(lambda: gateway.logged("configuration reloaded") == 2 * workers, "reloaded again")
    assert gateway.logged(f"listen needs a restart; keeping 127.0.0.1:{port} (not 127.0.0.1:{other_port})") == workers
    assert gateway.every_time("/c/x", 200) and gateway.every_time("/b/x", 401)
    assert gateway.process.poll() is None


async def test_a_reload_keeps_the_deny_list_and_serves_the_new_rules(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, http_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """In process: the revocations live as long as the process, handed from runtime to runtime."""
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\npublic_paths = ["/a/*"]\n')
    app = _reloadable_app(config, dev_clerk, upstream.url)
    async with serving_asgi(app, lifespan="on") as url:
        old = app.live.current.runtime
        now = time.time()
        old.revocations.deny_list.apply(Revocation("user", "user_bob", now + 60, now + 600))
        anonymous = {"host": "app.test:8000", **FETCH}
        bob = {**anonymous, "authorization": f"Bearer {mint_token(dev_clerk, 'user_bob')}"}
        alice = {**anonymous, "authorization": f"Bearer {mint_token(dev_clerk, 'user_alice')}"}

        async def status(path: str, headers: dict[str, str]) -> int:
            return (await http_client.get(f"{url}{path}", headers=headers)).status_code

        assert (await status("/x", bob), await status("/x", alice), await status("/a/x", anonymous)) == (401, 200, 200)
        config.write_text('[gateway]\npublic_paths = ["/b/*"]\n')
        assert await app.live.reload() is True
        new = app.live.current.runtime
        assert new is not old and new.revocations is old.revocations and app.state.runtime is new
        assert (await status("/x", bob), await status("/x", alice)) == (401, 200)
        assert (await status("/b/x", anonymous), await status("/a/x", anonymous)) == (200, 401)
        config.write_text("[gateway\n")
        assert await app.live.reload() is False and app.live.current.runtime is new
        assert await status("/b/x", anonymous) == 200
        metrics = (await http_client.get(f"{url}/__gateway/metrics")).text
        assert 'gateway_config_reloads_total{result="applied"} 1.0' in metrics
        assert 'gateway_config_reloads_total{result="refused"} 1.0' in metrics


async def test_a_reload_while_the_jwks_cannot_be_fetched_keeps_the_keys_it_had(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, http_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The new rules take effect and signed-in users stay signed in: the keys of the same instance are
    carried over, not dropped because Clerk's JWKS endpoint failed at that moment."""
    async with faulty_proxy(dev_clerk.api_url) as bapi:
        config = tmp_path / "gateway.toml"
        config.write_text('[gateway]\npublic_paths = ["/a/*"]\n')
        app = _reloadable_app(config, dev_clerk, upstream.url, api_url=bapi.url)
        async with serving_asgi(app, lifespan="on") as url:
            anonymous = {"host": "app.test:8000", **FETCH}
            alice = {**anonymous, "authorization": f"Bearer {mint_token(dev_clerk, 'user_alice')}"}

            async def status(path: str, headers: dict[str, str]) -> int:
                return (await http_client.get(f"{url}{path}", headers=headers)).status_code

            assert await status("/x", alice) == 200
            bapi.fault("/v1/jwks", "error")
            config.write_text('[gateway]\npublic_paths = ["/b/*"]\n')
            assert await app.live.reload() is True
            assert (await status("/b/x", anonymous), await status("/a/x", anonymous)) == (200, 401)
            assert await status("/x", alice) == 200, "the new runtime verifies with the keys it was handed"
            ready = await http_client.get(f"{url}/__gateway/readyz", headers=anonymous)
            assert (ready.status_code, ready.json()["checks"]["keys"]) == (200, "ok")


async def test_a_watched_file_reloads_when_it_changes(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, http_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nreload_watch = 0.05\npublic_paths = ["/a/*"]\n')
    app = _reloadable_app(config, dev_clerk, upstream.url)
    anonymous = {"host": "app.test:8000", **FETCH}
    async with serving_asgi(app, lifespan="on") as url:
        assert (await http_client.get(f"{url}/b/x", headers=anonymous)).status_code == 401
        config.write_text('[gateway]\nreload_watch = 0.05\npublic_paths = ["/b/*"]\n')
        for _ in range(500):
            if app.live.reloads["applied"]:
                break
            await asyncio.sleep(0.01)
        assert app.live.reloads["applied"] == 1
        assert (await http_client.get(f"{url}/b/x", headers=anonymous)).status_code == 200
        config.write_text('[gateway]\nreload_watch = 0.05\npublic_paths = ["/c/*"\n')  # broken: refused, once
        for _ in range(500):
            if app.live.reloads["refused"]:
                break
            await asyncio.sleep(0.01)
        assert app.live.reloads["refused"] == 1
        assert (await http_client.get(f"{url}/b/x", headers=anonymous)).status_code == 200
