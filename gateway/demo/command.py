"""`gateway demo`: the emulator, two apps behind one gateway (the sample tool, and a team wiki on its own
host name with another identity preset), and a second gateway for a satellite domain.

Host names under `.localhost` resolve to loopback in browsers with no hosts-file edit, and give the
primary app, the wiki, the satellite and the Frontend API cookie jars of their own, as in production.
Both apps get a signed identity assertion (a key made at start), each with its own audience.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.clerk.keys import make_publishable_key

CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.toml"


@dataclass(frozen=True)
class DemoPlan:
    """Ports and host names of every process, and the environment each gets."""

    fapi_port: int
    bapi_port: int
    app_port: int
    gateway_port: int
    satellite_port: int
    token_lifetime: int
    secret_key: str
    wiki_port: int = 3001
    assertion_key_path: str = ""
    """The PEM key signing the identity assertion (written by `Demo.start`); empty: no assertion."""
    webhook_secret: str = ""
    """The emulator signs its webhooks with it and both gateways verify them; empty: no webhooks."""

    @property
    def fapi_host(self) -> str:
        return f"clerk.localhost:{self.fapi_port}"

    @property
    def publishable_key(self) -> str:
        return make_publishable_key(self.fapi_host, "development")

    @property
    def primary_origin(self) -> str:
        return f"http://tools.localhost:{self.gateway_port}"

    @property
    def wiki_origin(self) -> str:
        """The second app: another host name on the primary gateway's address."""
        return f"http://wiki.localhost:{self.gateway_port}"

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/__gateway/jwks.json"

    @property
    def satellite_origin(self) -> str:
        return f"http://satellite.localhost:{self.satellite_port}"

    @property
    def sign_in_url(self) -> str:
        return f"http://{self.fapi_host}/sign-in"

    @property
    def bapi_url(self) -> str:
        return f"http://127.0.0.1:{self.bapi_port}"

    @property
    def api_url(self) -> str:
        """The sample tool's API through the primary gateway, by address (curl needs no host name)."""
        return f"http://127.0.0.1:{self.gateway_port}/api/me"

    def clerk_environment(self) -> dict[str, str]:
        webhooks = {"CLERK_WEBHOOK_SIGNING_SECRET": self.webhook_secret} if self.webhook_secret else {}
        return {
            "CLERK_PUBLISHABLE_KEY": self.publishable_key,
            "CLERK_SECRET_KEY": self.secret_key,
            "CLERK_API_URL": f"http://127.0.0.1:{self.bapi_port}",
            "CLERK_FAPI_URL": f"http://{self.fapi_host}",
            **webhooks,
        }

    def webhook_arguments(self) -> list[str]:
        """The emulator's webhooks go to both gateways, so signing out ends access at once on each."""
        if not self.webhook_secret:
            return []
        ports = (self.gateway_port, self.satellite_port)
        endpoints = [f"http://127.0.0.1:{port}/__gateway/webhooks/clerk" for port in ports]
        return ["--webhook-secret", self.webhook_secret, *(part for url in endpoints for part in ("--webhook", url))]

    def assertion_environment(self) -> dict[str, str]:
        if not self.assertion_key_path:
            return {}
        return {"GATEWAY_ASSERTION_KEY": self.assertion_key_path, "GATEWAY_ASSERTION_AUDIENCE": "tools"}

    def wiki_app(self) -> dict[str, object]:
        """The wiki as `[[gateway.apps]]` (its host carries the port chosen at start, so it comes as
        `GATEWAY_APPS`; the sample tool is the top-level upstream, the app of every other host)."""
        return {
            "name": "wiki",
            "hosts": [self.wiki_origin.removeprefix("http://")],
            "upstream": f"http://127.0.0.1:{self.wiki_port}",
            "assertion_audience": "wiki",
            "identity": {"presets": ["remote-user"], "user": "email",
                         "headers": {"X-Wiki-Author": "{full_name} <{email}>"}},
        }

    def primary_environment(self) -> dict[str, str]:
        return {
            **self.clerk_environment(),
            **self.assertion_environment(),
            "CLERK_SIGN_IN_URL": self.sign_in_url,
            "GATEWAY_UPSTREAM": f"http://127.0.0.1:{self.app_port}",
            "GATEWAY_APPS": json.dumps([self.wiki_app()]),
            "GATEWAY_LISTEN": f"127.0.0.1:{self.gateway_port}",
            "GATEWAY_PUBLIC_ORIGIN": self.primary_origin,
            # the satellite may ask the primary to send browsers back to it (sync)
            "GATEWAY_ALLOWED_REDIRECT_ORIGINS": self.satellite_origin,
        }

    def satellite_environment(self) -> dict[str, str]:
        return {
            **self.clerk_environment(),
            "CLERK_IS_SATELLITE": "true",
            "CLERK_DOMAIN": "satellite.localhost",
            "CLERK_SIGN_IN_URL": f"{self.primary_origin}/sign-in",
            "CLERK_SATELLITE_AUTO_SYNC": "true",
            **self.assertion_environment(),
            "GATEWAY_UPSTREAM": f"http://127.0.0.1:{self.app_port}",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.satellite_port}",
            "GATEWAY_PUBLIC_ORIGIN": self.satellite_origin,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fapi-port", type=int, default=4500)
    parser.add_argument("--bapi-port", type=int, default=4501)
    parser.add_argument("--app-port", type=int, default=3000)
    parser.add_argument("--port", type=int, default=8000, help="the primary gateway's port")
    parser.add_argument("--satellite-port", type=int, default=8001)
    parser.add_argument("--wiki-port", type=int, default=3001, help="the second app's own (loopback) port")
    parser.add_argument("--token-lifetime", type=int, default=60, help="session token lifetime in seconds")


def run(args: argparse.Namespace) -> int:
    plan = DemoPlan(args.fapi_port, args.bapi_port, args.app_port, args.port, args.satellite_port,
                    args.token_lifetime, "sk_test_demo_" + secrets.token_urlsafe(24), wiki_port=args.wiki_port,
                    webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    ports = (plan.fapi_port, plan.bapi_port, plan.app_port, plan.wiki_port, plan.gateway_port, plan.satellite_port)
    busy = [port for port in ports if not port_is_free(port)]
    if busy:
        print(f"demo: port(s) {', '.join(map(str, busy))} already in use (another demo still running?)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    with Demo(plan) as demo:
        demo.start(progress=lambda text: print(f"  … {text}", flush=True))
        print(banner(plan, demo.api_key), flush=True)
        demo.wait()
    return 0


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _exit_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through `Demo.__exit__`, which stops every child


def api_curl_line(plan: DemoPlan, api_key: str) -> str:
    """The one line that calls the sample tool's API with an API key instead of a browser session."""
    return f'curl -H "Authorization: Bearer {api_key}" {plan.api_url}'


def banner(plan: DemoPlan, api_key: str | None = None) -> str:
    api = (
        f"""
  Call the tool's API with alice's API key (no browser, no session):
        {api_curl_line(plan, api_key)}
"""
        if api_key
        else ""
    )
    return f"""
session-gateway demo is running.

  Open  {plan.primary_origin}/            (the internal tool, behind the gateway)
  Also  {plan.wiki_origin}/             (a second app on its own host name: the remote-user headers)
        {plan.satellite_origin}/       (a satellite domain, signed in through the sync round trip)
        {plan.primary_origin}/sdk         (the tool signing in with Clerk's own browser SDK, clerk-js)

  Sign in as  alice@example.com / alice-password   (org admin: can open /admin)
          or  bob@example.com   / bob-password     (org member: /admin answers 403)

  Clerk emulator  http://{plan.fapi_host}  (session tokens last {plan.token_lifetime} s, refreshed transparently)
{api}  Ctrl-C stops everything.
"""


def mint_api_key(bapi_url: str, secret_key: str, subject: str, *, name: str, scopes: tuple[str, ...] = ()) -> str:
    """`POST /v1/api_keys` at the Backend API (the emulator's here): a new API key's secret (`ak_…`)."""
    response = httpx.post(
        f"{bapi_url}/v1/api_keys",
        json={"name": name, "subject": subject, "scopes": list(scopes)},
        headers={"Authorization": f"Bearer {secret_key}"},
        timeout=10,
    )
    response.raise_for_status()
    secret: str = response.json()["secret"]
    return secret


def write_assertion_key(directory: Path) -> Path:
    """A fresh P-256 key for the identity assertion, readable by this user only."""
    path = directory / "assertion-key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


class Demo:
    """Starts the processes in order, waits for each to be ready, stops them all on exit."""

    def __init__(self, plan: DemoPlan) -> None:
        self.plan = plan
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
        self.api_key: str | None = None
        """alice's API key, minted at the emulator once it runs (`Authorization: Bearer ak_…`)."""

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, progress: object = None) -> None:
        report = progress if callable(progress) else (lambda text: None)
        if not self.plan.assertion_key_path:
            self.plan = replace(self.plan, assertion_key_path=str(write_assertion_key(self.logs)))
        plan = self.plan
        python = sys.executable
        report(f"Clerk emulator on {plan.fapi_host}")
        self._spawn("emulator", [python, "-m", "gateway", "emulator", "--fapi-port", str(plan.fapi_port),
                                 "--bapi-port", str(plan.bapi_port), "--fapi-host", plan.fapi_host,
                                 "--secret-key", plan.secret_key, "--token-lifetime", str(plan.token_lifetime),
                                 "--sign-in-url", plan.sign_in_url, *plan.webhook_arguments()], {})
        self._wait_ready("emulator", f"http://127.0.0.1:{plan.fapi_port}/v1/health")
        self.api_key = mint_api_key(plan.bapi_url, plan.secret_key, "user_alice", name="demo-cli")
        report(f"sample tool on 127.0.0.1:{plan.app_port}")
        self._spawn("sample app", [python, "-m", "gateway.demo.sample_app", "--port", str(plan.app_port)], {
            "DEMO_SATELLITE_URL": f"{plan.satellite_origin}/",
            "DEMO_PRIMARY_URL": f"{plan.primary_origin}/",
            "DEMO_SIGN_IN_URL": plan.sign_in_url,
            "DEMO_CLERK_PUBLISHABLE_KEY": plan.publishable_key,  # for the clerk-js page, /sdk
            "DEMO_GATEWAY_JWKS_URL": plan.jwks_url,
            "DEMO_ASSERTION_AUDIENCE": "tools",
        })
        report(f"team wiki on 127.0.0.1:{plan.wiki_port}")
        self._spawn("wiki", [python, "-m", "gateway.demo.wiki_app", "--port", str(plan.wiki_port)], {
            "DEMO_GATEWAY_JWKS_URL": plan.jwks_url,
            "DEMO_ASSERTION_AUDIENCE": "wiki",
        })
        self._wait_ready("sample app", f"http://127.0.0.1:{plan.app_port}/healthz")
        self._wait_ready("wiki", f"http://127.0.0.1:{plan.wiki_port}/healthz")
        report(f"gateway on {plan.primary_origin}")
        self._spawn("gateway", [python, "-m", "gateway", "serve", "--config", str(CONFIG)], plan.primary_environment())
        report(f"satellite gateway on {plan.satellite_origin}")
        self._spawn("satellite gateway", [python, "-m", "gateway", "serve", "--config", str(CONFIG)],
                    plan.satellite_environment())
        self._wait_ready("gateway", f"http://127.0.0.1:{plan.gateway_port}/__gateway/readyz")
        self._wait_ready("satellite gateway", f"http://127.0.0.1:{plan.satellite_port}/__gateway/readyz")

    def wait(self) -> None:
        """Until Ctrl-C, or until a process dies (then say which)."""
        try:
            while True:
                for name, process in self.processes:
                    if process.poll() is not None:
                        print(f"demo: the {name} stopped (exit {process.returncode}); stopping the rest; "
                              f"its log: {self.logs}", file=sys.stderr)
                        return
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping…", flush=True)

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for _, process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def _spawn(self, name: str, command: list[str], environment: dict[str, str]) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("CLERK_", "GATEWAY_"))}
        env.update(environment)
        log = (self.logs / f"{name.replace(' ', '-')}.log").open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append((name, process))

    def _wait_ready(self, name: str, url: str, timeout: float = 30.0) -> None:
        process = next(process for label, process in self.processes if label == name)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    output = (self.logs / f"{name.replace(' ', '-')}.log").read_text(errors="replace")
                    raise SystemExit(f"demo: the {name} failed to start:\n{output.strip()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise SystemExit(f"demo: the {name} was not ready after {timeout:.0f} s ({url})")
