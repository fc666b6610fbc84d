"""Run the emulator's two apps (FAPI, BAPI) on loopback ports from Python: the test fixture's engine.

    with EmulatorServer() as clerk:
        httpx.get(f"{clerk.fapi_url}/v1/environment")

Sockets are bound before the instance is configured, so port 0 works and the publishable key can
name the real port. Both uvicorn servers share one event loop in a background thread; `start()`
returns once both have started and answered `/v1/health`.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.emulator.app_bapi import create_bapi_app
from gateway.emulator.app_fapi import create_fapi_app
from gateway.emulator.clock import Clock, system_clock
from gateway.emulator.config import EmulatorConfig
from gateway.emulator.ids import IdFactory
from gateway.emulator.instance import Instance
from gateway.emulator.instance_keys import new_secret_key
from gateway.emulator.seed import Seed, load_seed
from gateway.emulator.signing import SigningKey
from gateway.emulator.state import EmulatorState
from gateway.emulator.webhooks import WebhookSender

START_TIMEOUT = 10.0


class EmulatorStartError(RuntimeError):
    """The servers did not come up (port in use, bad settings); the message says why."""


class _ReadyServer(uvicorn.Server):
    """A uvicorn server that signals a thread-safe event once it listens."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


class _Dated:
    """Every answer's `Date` header from the emulator's clock (not uvicorn's wall clock), so a clock set
    off by a test is what a client comparing clocks (`gateway doctor`) sees."""

    def __init__(self, app: Any, clock: Clock) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Any) -> None:
            if message["type"] == "http.response.start":
                date = email.utils.formatdate(self.clock(), usegmt=True).encode()
                message = {**message, "headers": [*message.get("headers", []), (b"date", date)]}
            await send(message)

        await self.app(scope, receive, dated)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise EmulatorStartError(f"cannot listen on {host}:{port}: {error}") from error
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class EmulatorServer:
    """A running emulator: FAPI at `fapi_url`, BAPI at `bapi_url` (both `http://host:port`, no path).

    `fapi_host` and `public_url` may contain `{port}`, replaced by the FAPI port actually bound.
    Defaults: `fapi_host="{host}:{port}"` (so the publishable key names the loopback address) and
    `public_url="http://<fapi_host>"`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        fapi_port: int = 0,
        bapi_port: int = 0,
        production: bool = False,
        fapi_host: str | None = None,
        public_url: str | None = None,
        secret_key: str | None = None,
        cookie_domain: str | None = None,
        token_lifetime: int = 60,
        rotation_grace: int = 300,
        sign_in_url: str | None = None,
        satellite_domains: tuple[str, ...] = (),
        nonce_in_query: bool = False,
        webhook_urls: tuple[str, ...] = (),
        webhook_secret: str | None = None,
        seed: Seed | Path | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        clock: Clock = system_clock,
        ids: IdFactory | None = None,
    ) -> None:
        self.host = host
        self._ports = (fapi_port, bapi_port)
        self._settings: dict[str, Any] = {
            "production": production,
            "cookie_domain": cookie_domain,
            "token_lifetime": token_lifetime,
            "rotation_grace": rotation_grace,
            "sign_in_url": sign_in_url,
            "satellite_domains": tuple(satellite_domains),
            "nonce_in_query": nonce_in_query,
            "webhook_urls": tuple(webhook_urls),
            "webhook_secret": webhook_secret,
        }
        self._fapi_host_template = fapi_host
        self._public_url_template = public_url
        self._secret_key = secret_key
        self._seed = seed if isinstance(seed, Seed) else load_seed(seed)
        self._signing_key = signing_key
        self._clock = clock
        self._ids = ids or IdFactory()
        self._instance: Instance | None = None
        self._servers: list[_ReadyServer] = []
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.fapi_port = 0
        self.bapi_port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            raise EmulatorStartError("already started")
        fapi_socket = _bind(self.host, self._ports[0])
        try:
            bapi_socket = _bind(self.host, self._ports[1])
        except EmulatorStartError:
            fapi_socket.close()
            raise
        self.fapi_port = fapi_socket.getsockname()[1]
        self.bapi_port = bapi_socket.getsockname()[1]
        config = self._build_config()
        instance = Instance.create(config, self._seed, clock=self._clock, ids=self._ids, signing_key=self._signing_key)
        self._instance = instance
        ready = [threading.Event(), threading.Event()]
        self._servers = [
            _ReadyServer(self._uvicorn_config(_Dated(create_fapi_app(instance), self._clock)), ready[0]),
            _ReadyServer(self._uvicorn_config(_Dated(create_bapi_app(instance), self._clock)), ready[1]),
        ]
        self._thread = threading.Thread(
            target=self._run, args=([fapi_socket], [bapi_socket]), name="clerk-emulator", daemon=True
        )
        self._thread.start()
        for event in ready:
            if not event.wait(START_TIMEOUT) or self._failure is not None:
                self.stop()
                raise EmulatorStartError(f"emulator did not start: {self._failure!r}")
        self._check_health()
        return self

    def _build_config(self) -> EmulatorConfig:
        url_host = _url_host(self.host)
        fapi_host = (self._fapi_host_template or f"{url_host}:{{port}}").format(port=self.fapi_port)
        public_url = (self._public_url_template or f"http://{fapi_host}").format(port=self.fapi_port)
        production = bool(self._settings["production"])
        secret_key = self._secret_key or new_secret_key(self._ids, production=production)
        return EmulatorConfig(fapi_host=fapi_host, public_url=public_url, secret_key=secret_key, **self._settings)

    @staticmethod
    def _uvicorn_config(app: Any) -> uvicorn.Config:
        return uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", log_level="warning", timeout_graceful_shutdown=1,
            date_header=False,
        )  # fmt: skip

    def _run(self, fapi_sockets: list[socket.socket], bapi_sockets: list[socket.socket]) -> None:
        async def serve_both() -> None:
            fapi, bapi = self._servers
            await asyncio.gather(fapi.serve(sockets=fapi_sockets), bapi.serve(sockets=bapi_sockets))

        try:
            asyncio.run(serve_both())
        except BaseException as error:  # reported to the starting thread
            self._failure = error
        finally:
            for sock in (*fapi_sockets, *bapi_sockets):
                sock.close()

    def _check_health(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            for url in (self.fapi_url, self.bapi_url):
                response = client.get(f"{url}/v1/health")
                if response.status_code != 200:
                    self.stop()
                    raise EmulatorStartError(f"{url}/v1/health answered {response.status_code}")

    def stop(self) -> None:
        if self._instance is not None:
            self._instance.webhooks.close()
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                for server in self._servers:
                    server.force_exit = True
                self._thread.join(timeout=2.0)
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmulatorServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what tests use ------------------------------------------------------------------------

    @property
    def instance(self) -> Instance:
        if self._instance is None:
            raise EmulatorStartError("not started")
        return self._instance

    @property
    def config(self) -> EmulatorConfig:
        return self.instance.config

    @property
    def state(self) -> EmulatorState:
        return self.instance.state

    @property
    def fapi_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.fapi_port}"

    @property
    def bapi_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.bapi_port}"

    @property
    def api_url(self) -> str:
        """Value for `CLERK_API_URL` (BAPI base without `/v1`)."""
        return self.bapi_url

    @property
    def public_url(self) -> str:
        return self.config.public_url

    @property
    def publishable_key(self) -> str:
        return self.config.publishable_key

    @property
    def secret_key(self) -> str:
        return self.config.secret_key

    @property
    def cookie_suffix(self) -> str:
        return self.config.cookie_suffix

    @property
    def sign_in_url(self) -> str:
        return self.config.hosted_sign_in_url

    @property
    def signing_key(self) -> SigningKey:
        return self.instance.keys.current

    def jwks(self) -> dict[str, Any]:
        return self.instance.keys.jwks()

    @property
    def webhooks(self) -> WebhookSender:
        """Where Clerk's webhooks go (`add_url`), their secret, and the deliveries (`wait_for`)."""
        return self.instance.webhooks

    def rotate_keys(self) -> str:
        """Make a new key the signer (old one stays published for the grace period); returns its kid."""
        return self.instance.keys.rotate().kid
