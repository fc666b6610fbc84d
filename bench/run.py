"""The side-by-side benchmark: the gateway beside nginx, Clerk's Node middleware and the Python ceiling.

    .venv/bin/python bench/run.py                 # full run (make bench): writes bench/RESULTS.md + RESULTS.png
    .venv/bin/python bench/run.py --smoke --out DIR   # a few seconds per contender (the test suite's smoke mode)
    .venv/bin/python bench/run.py --memo --out DIR    # signed-in GET only: the gateway with and without its
                                                      # session memo, access log off and on

Every contender listens on loopback in front of the same trivial upstream (nginx answering a small
body, or 1 MiB from /download/1mib.bin). Contenders and the upstream are started once; then, round
after round, each (scenario, contender) pair gets one `wrk` run of the same connection count and
duration (after one warm-up run each), so slow drifts of the machine hit every contender alike; each
round starts one pair further on than the last. The median round is reported, with the contender's CPU
time per request (a neighbour on the same core moves it far less than req/s).

Pinning (2 cores): the contender runs on core 0 alone; wrk and the upstream nginx share core 1. The
upstream is an order of magnitude faster than any contender but nginx `proxy_pass` itself, so only
the "upstream direct" and "nginx" rows are bounded by core 1 (they are the ceiling of the machine, not
of the contender). The 2-worker gateway runs on cores 0-1 (sharing core 1 with wrk and the upstream):
its row shows what a second worker buys on this machine, not on a bigger one.

Missing tools are installed when possible (`apt-get install wrk nginx` as root, `npm ci` in
bench/peer); otherwise the contender is skipped with a printed reason. In smoke mode nothing is
installed: wrk falls back to bench/loadgen.py and the nginx upstream to bench/pyupstream.py.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from gateway.clerk.keys import cookie_suffix, make_publishable_key  # noqa: E402

BENCH = ROOT / "bench"
PEER = BENCH / "peer"
PYTHON = sys.executable
SERVER_CORES = "0"
LOAD_CORES = "1"
BOTH_CORES = "0,1"
FAPI_HOST = "clerk.bench.test"
PUBLISHABLE_KEY = make_publishable_key(FAPI_HOST, "production")
SECRET_KEY = "sk_live_bench"
SMALL_BODY = "hello from the upstream\n"


def pinned(cores: str) -> list[str]:
    """`taskset -c CORES` (util-linux), or nothing where it is missing (the figures then say less)."""
    return ["taskset", "-c", cores] if shutil.which("taskset") else []


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ tokens


@dataclass(frozen=True)
class Tokens:
    public_pem: str
    private_key: rsa.RSAPrivateKey
    issued_at: int
    session: str
    expired: str

    def mint(self, issued_at: int, expires_at: int) -> str:
        claims = {"sub": "user_bench", "sid": "sess_bench", "iss": f"https://{FAPI_HOST}",
                  "iat": issued_at, "nbf": issued_at - 5, "exp": expires_at, "v": 2}
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": "ins_bench"})


def make_tokens(lifetime: int) -> Tokens:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    now = int(time.time())
    partial = Tokens(public_pem, private_key, now - 30, "", "")
    return Tokens(public_pem, private_key, now - 30, partial.mint(now - 30, now + lifetime),
                  partial.mint(now - 120, now - 60))


# ---------------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tree(self) -> list[int]:
        """The process and its descendants (granian and uvicorn workers are children)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    parent = int(stat.rsplit(")", 1)[1].split()[1])
                    children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def rss_mib(self) -> float:
        total = 0
        for pid in self.tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process tree so far."""
        ticks = 0
        for pid in self.tree():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_server(name: str, command: list[str], env: dict[str, str], cores: str, workdir: Path, cwd: Path = ROOT
                 ) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [*pinned(cores), *command], cwd=cwd, env={**os.environ, **env},
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    return Server(name, process, log)


def wait_until_answering(server: Server, port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/__bench_ready")
            connection.getresponse().read()
            connection.close()
            return True
        time.sleep(0.1)
    return False


def fetch_status(port: int, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# -------------------------------------------------------------------------------------- the upstream


NGINX_COMMON = """
worker_processes 1;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    {body}
}}
"""

UPSTREAM_SERVER = """
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /download/ {{ root {dir}/files; default_type application/octet-stream; }}
        location / {{ default_type text/plain; return 200 "{small}"; }}
    }}
"""

PROXY_SERVER = """
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}
"""


def write_nginx_config(workdir: Path, name: str, body: str) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.conf"
    path.write_text(NGINX_COMMON.format(dir=workdir, name=name, body=body))
    return path


def nginx_command(workdir: Path, config: Path) -> list[str]:
    return [shutil.which("nginx") or "nginx", "-p", str(workdir), "-e", str(workdir / "nginx-startup.log"),
            "-c", str(config), "-g", "daemon off;"]


# -------------------------------------------------------------------------------------------- tools


def ensure_tools(install: bool) -> None:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=False)
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            say(f"!!! {tool} is not installed and could not be installed: "
                + ("using bench/loadgen.py (figures are NOT comparable with wrk's)" if tool == "wrk"
                   else "the upstream is bench/pyupstream.py and the nginx proxy_pass contender is SKIPPED"))


def ensure_peer(install: bool) -> str | None:
    """None when the Node peer can run, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if (PEER / "node_modules" / "@clerk" / "express").is_dir():
        return None
    if not install:
        return "bench/peer/node_modules is missing (run `npm ci` in bench/peer)"
    if shutil.which("npm") is None:
        return "npm is not installed"
    say("npm ci in bench/peer")
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER, check=False)
    return None if done.returncode == 0 else f"npm ci failed (exit {done.returncode})"


# --------------------------------------------------------------------------------------- load runs


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    errors: int = 0
    requests: int = 0
    cpu_us: float = float("nan")
    """The contender's CPU time (user + system, whole process tree) per request: what a noisy neighbour
    on the same core moves far less than req/s."""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _milliseconds(output: str, label: str) -> float:
    found = re.search(r"^\s+" + label + r"\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")


def load(port: int, path: str, headers: dict[str, str], connections: int, seconds: float) -> Run:
    url = f"http://127.0.0.1:{port}{path}"
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    if shutil.which("wrk"):
        duration = f"-d{max(1, round(seconds))}s"
        command = [*pinned(LOAD_CORES), "wrk", "-t1", f"-c{connections}", duration, "--latency",
                   "--timeout", "10s", *header_args, url]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        found = re.search(r"Requests/sec:\s+([\d.]+)", output)
        if found is None:
            say(f"!!! unreadable wrk output: {output!r}")
        rate = float(found.group(1)) if found else 0.0
        p50, p99 = _milliseconds(output, "50%"), _milliseconds(output, "99%")
        errors = 0
        if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
            errors = sum(int(value) for value in found.groups())
        total = re.search(r"(\d+) requests in", output)
        return Run(rate, p50, p99, 0.0, errors, int(total.group(1)) if total else 0)
    command = [*pinned(LOAD_CORES), PYTHON, str(BENCH / "loadgen.py"), url,
               "--connections", str(connections), "--seconds", str(seconds), *header_args]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return Run(result["requests_per_second"], result["p50_ms"], result["p99_ms"], 0.0, 0, result["requests"])


# ----------------------------------------------------------------------------------- contenders


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    path: str
    headers: dict[str, str]
    expect: int


@dataclass
class Contender:
    key: str
    title: str
    port: int
    scenarios: tuple[str, ...]
    server: Server | None = None  # None: the upstream itself (measured through its own server)
    skipped: str | None = None
    wrong_status: dict[str, int] = field(default_factory=dict)


def scenarios_for(tokens: Tokens) -> list[Scenario]:
    signed_in = {"Cookie": f"__session={tokens.session}; __client_uat={tokens.issued_at - 10}", "Accept": "*/*"}
    return [
        Scenario("signed_in", "Signed-in GET (small body)", "/app/hello", signed_in, 200),
        Scenario("signed_out_api", "Signed-out API call (401)", "/api/items", {"Accept": "application/json"}, 401),
        Scenario(
            "handshake",
            "Handshake-needed document request (307)",
            "/dashboard",
            {"Accept": "text/html", "Sec-Fetch-Dest": "document", "Cookie": f"__client_uat={tokens.issued_at - 10}"},
            307,
        ),
        Scenario("download", "Signed-in 1 MiB download", "/download/1mib.bin", signed_in, 200),
    ]


def gateway_env(tokens: Tokens, upstream: int, port: int, workers: int = 1, api_url: str | None = None
                ) -> dict[str, str]:
    env = {
        "CLERK_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "CLERK_SECRET_KEY": SECRET_KEY,
        "CLERK_JWT_KEY": tokens.public_pem,
        "GATEWAY_UPSTREAM": f"http://127.0.0.1:{upstream}",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_WORKERS": str(workers),
        "GATEWAY_API_PATHS": "/api/*",
        "GATEWAY_FRONTEND_API_PATH": "",
        "GATEWAY_ACCESS_LOG": "false",  # like nginx (access_log off) and the Node peer: no request logging
    }
    if api_url:
        env["CLERK_API_URL"] = api_url
    return env


MEMO_CONTENDERS = (  # key, title, BENCH_SESSION_MEMO, GATEWAY_ACCESS_LOG (bench/run.py --memo)
    ("memo_on", "gateway, session memo on, access log off (granian)", "on", "false"),
    ("memo_off", "gateway, session memo off, access log off (granian)", "off", "false"),
    ("memo_on_log", "gateway, session memo on, access log on (granian)", "on", "true"),
    ("memo_off_log", "gateway, session memo off, access log on (granian)", "off", "true"),
)


def granian_command(target: str, port: int) -> list[str]:
    return [str(Path(PYTHON).parent / "granian"), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--no-ws", "--log-level", "warning", "--backlog", "2048", target]


# ------------------------------------------------------------------------------------- extra checks


class FakeBackendApi:
    """A Backend API that answers `POST /v1/sessions/{sid}/refresh` with a fresh token, and counts."""

    def __init__(self, tokens: Tokens, delay: float) -> None:
        self.tokens = tokens
        self.delay = delay
        self.refresh_calls = 0
        self.port = free_port()
        self._loop: object = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        from aiohttp import web

        async def refresh(request: web.Request) -> web.Response:
            self.refresh_calls += 1
            await asyncio.sleep(self.delay)
            now = int(time.time())
            fresh = self.tokens.mint(now - 1, now + 600)
            return web.json_response({"cookies": [f"__session={fresh}; Path=/; Secure; SameSite=Lax"]})

        async def main() -> None:
            app = web.Application()
            app.router.add_post("/v1/sessions/{sid}/refresh", refresh)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self.started.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            await runner.cleanup()

        asyncio.run(main())

    def __enter__(self) -> FakeBackendApi:
        self.started = threading.Event()
        self._thread.start()
        self.started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def refresh_burst(port: int, tokens: Tokens, backend: FakeBackendApi, concurrency: int) -> dict[str, object]:
    """`concurrency` document requests at once with the same expired token: one refresh call expected."""
    cookie = (f"__session={tokens.expired}; __client_uat={tokens.issued_at - 200}; "
              f"__refresh_{cookie_suffix(PUBLISHABLE_KEY)}=refresh_bench")
    headers = {"Cookie": cookie, "Accept": "text/html", "Sec-Fetch-Dest": "document"}
    barrier = threading.Barrier(concurrency)

    def one(_: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        connection.connect()
        barrier.wait()
        try:
            connection.request("GET", "/app/hello", headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(one, range(concurrency)))
    return {"requests": concurrency, "refresh_calls": backend.refresh_calls,
            "statuses": {str(code): statuses.count(code) for code in sorted(set(statuses))}}


def stream_through(server: Server, port: int, path: str, headers: dict[str, str], size: int) -> dict[str, float]:
    """Download `size` bytes through the contender while sampling its RSS; RSS must stay flat."""
    samples: list[float] = []
    before = server.rss_mib()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(server.rss_mib())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    received = 0
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        while chunk := response.read(1 << 20):
            received += len(chunk)
        connection.close()
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - started
    return {"bytes": received, "seconds": elapsed, "mib_per_second": received / elapsed / (1 << 20),
            "rss_before_mib": before, "rss_peak_mib": max(samples, default=before),
            "rss_after_mib": server.rss_mib()}


def jwt_decode_floor(tokens: Tokens, count: int) -> float:
    """Microseconds per bare `jwt.decode` of the signed-in token (key already parsed): the decision's floor."""
    key = serialization.load_pem_public_key(tokens.public_pem.encode())
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            jwt.decode(tokens.session, key, algorithms=["RS256"], options={"verify_aud": False})  # type: ignore[arg-type]
        timings.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(timings)


# ------------------------------------------------------------------------------------------ report


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for package in ("granian", "uvicorn", "litestar", "aiohttp", "pyjwt", "cryptography"):
        with contextlib.suppress(Exception):
            found[package] = version(package)
    for tool, command in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"]), ("node", ["node", "-v"])):
        with contextlib.suppress(OSError):
            output = subprocess.run(command, capture_output=True, text=True, check=False)
            text = (output.stdout + output.stderr).strip().splitlines()
            if text:
                found[tool] = text[0].replace("nginx version: ", "").split(" [")[0].split(" Copyright")[0]
    with contextlib.suppress(OSError, ValueError):
        for name, pinned in json.loads((PEER / "package.json").read_text())["dependencies"].items():
            found[name] = pinned
    return found


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "–"


def report(args: argparse.Namespace, scenarios: list[Scenario], contenders: list[Contender],
           results: dict[tuple[str, str], list[Run]], extras: dict[str, object], took: float
           ) -> tuple[str, dict[str, dict[str, Run]]]:
    medians: dict[str, dict[str, Run]] = {}
    for (scenario, contender), runs in results.items():
        medians.setdefault(scenario, {})[contender] = Run(
            statistics.median(run.requests_per_second for run in runs),
            statistics.median(run.p50_ms for run in runs),
            statistics.median(run.p99_ms for run in runs),
            max(run.rss_mib for run in runs),
            sum(run.errors for run in runs),
            sum(run.requests for run in runs),
            statistics.median(run.cpu_us for run in runs),
        )
    loadgen = "wrk -t1" if shutil.which("wrk") else "bench/loadgen.py (wrk missing: NOT comparable)"
    lines = [
        "# Benchmark results" + (" (smoke mode: not for comparison)" if args.smoke else ""),
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}; machine: {machine()}",
        "- Versions: " + ", ".join(f"{name} {value}" for name, value in versions().items()),
        f"- Load: {loadgen}, {args.connections} connections, {args.seconds:g} s per run after a {args.warmup:g} s "
        f"warm-up, {args.rounds} interleaved round(s), median reported (p50/p99 are medians of the rounds' "
        "figures; RSS is the largest after any round, whole process tree)",
        f"- Pinning: contenders on core {SERVER_CORES} (2-worker gateway on cores {BOTH_CORES}); load generator "
        f"and upstream nginx on core {LOAD_CORES}",
        f"- Upstream: {extras.get('upstream')}; signed-in requests carry a valid RS256 `__session` + "
        "`__client_uat` (networkless `CLERK_JWT_KEY` / `jwtKey`)",
        f"- Bare `jwt.decode` of the same token (the decision's floor): {extras['jwt_decode_us']:.1f} µs "
        f"= {1e6 / float(extras['jwt_decode_us']):,.0f} decodes/s on one core",  # type: ignore[arg-type]
        "- The gateway runs with `GATEWAY_ACCESS_LOG=false` (nginx has `access_log off`, the Node peer logs "
        "nothing) except in the \"access log on\" row; its Prometheus metrics stay on",
        f"- Whole run took {took:.0f} s",
        "",
    ]
    for scenario in scenarios:
        rows = medians.get(scenario.key, {})
        lines += [f"## {scenario.title}", ""]
        lines += ["| Contender | req/s | p50 ms | p99 ms | RSS MiB | ÷ nginx | ÷ Node peer | ÷ Python ceiling "
                  "| CPU µs/req |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        nginx, node, ceiling = rows.get("nginx"), rows.get("node"), rows.get("ceiling")
        for contender in contenders:
            if scenario.key not in contender.scenarios:
                continue
            if contender.skipped:
                lines.append(f"| {contender.title} | skipped: {contender.skipped} | | | | | | | |")
                continue
            if scenario.key in contender.wrong_status:
                status = contender.wrong_status[scenario.key]
                lines.append(f"| {contender.title} | answered {status}, expected {scenario.expect}: not measured"
                             " | | | | | | | |")
                continue
            run = rows.get(contender.key)
            if run is None:
                continue
            errors = f" ({run.errors} socket errors)" if run.errors else ""
            lines.append(
                f"| {contender.title} | {run.requests_per_second:,.0f}{errors} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | "
                f"{run.rss_mib:.0f} | {_ratio(run.requests_per_second, nginx and nginx.requests_per_second)} | "
                f"{_ratio(run.requests_per_second, node and node.requests_per_second)} | "
                f"{_ratio(run.requests_per_second, ceiling and ceiling.requests_per_second)} | {run.cpu_us:.0f} |"
            )
        lines.append("")
        lines += comparisons(rows, contenders)
    stream = extras.get("stream")
    if isinstance(stream, dict):
        lines += [
            "## Streaming a large body through the gateway (1 worker)", "",
            f"{stream['bytes'] / (1 << 20):,.0f} MiB in {stream['seconds']:.1f} s "
            f"({stream['mib_per_second']:,.0f} MiB/s);"
            f" RSS before {stream['rss_before_mib']:.0f} MiB, peak {stream['rss_peak_mib']:.0f} MiB, after "
            f"{stream['rss_after_mib']:.0f} MiB.", "",
        ]
    burst = extras.get("refresh")
    if isinstance(burst, dict):
        lines += [
            "## Expired token, concurrent requests (gateway, 1 worker)", "",
            f"{burst['requests']} concurrent document requests with the same expired `__session` and a refresh "
            f"cookie: {burst['refresh_calls']} Backend API refresh call(s); answers {burst['statuses']}.", "",
        ]
    lines += targets(medians, extras)
    return "\n".join(lines) + "\n", medians


COMPARISONS = (  # (with, without, what the difference is) for the lines under a scenario's table
    ("gateway_log", "gateway", "the access log (on vs off, 1 worker)"),
    ("baseline_log", "baseline", "the baseline's access log (on vs off, 1 worker)"),
    ("gateway_log", "baseline_log", "this tree's access log beside the baseline's (both on)"),
    ("memo_off", "memo_on", "no session memo (off vs on, access log off)"),
    ("memo_off_log", "memo_on_log", "no session memo (off vs on, access log on)"),
    ("memo_on_log", "memo_on", "the access log (on vs off, session memo on)"),
    ("memo_off_log", "memo_off", "the access log (on vs off, session memo off)"),
)


def comparisons(rows: dict[str, Run], contenders: list[Contender]) -> list[str]:
    """One line per pair of rows measured in this scenario: what the one costs beside the other."""
    titles = {c.key: c.title for c in contenders}
    lines = []
    for changed, base, what in COMPARISONS:
        if changed in rows and base in rows and rows[base].requests_per_second:
            ratio = rows[changed].requests_per_second / rows[base].requests_per_second
            cpu = rows[changed].cpu_us / rows[base].cpu_us - 1 if rows[base].cpu_us else float("nan")
            lines.append(f"- {what} costs {1 - ratio:.0%} of the throughput: {rows[changed].requests_per_second:,.0f}"
                         f" vs {rows[base].requests_per_second:,.0f} req/s ({ratio:.2f}x), and {cpu:+.0%} CPU per "
                         f"request ({rows[changed].cpu_us:.0f} vs {rows[base].cpu_us:.0f} µs): \"{titles[changed]}\""
                         f" ÷ \"{titles[base]}\"")
    return [*lines, ""] if lines else []


def targets(medians: dict[str, dict[str, Run]], extras: dict[str, object]) -> list[str]:
    signed_in = medians.get("signed_in", {})
    gateway, node, ceiling = signed_in.get("gateway"), signed_in.get("node"), signed_in.get("ceiling")
    checks: list[tuple[str, bool | None, str]] = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        checks.append((name, ok, detail))

    if gateway and node:
        ratio = gateway.requests_per_second / node.requests_per_second
        check("≥ 4x the Node peer's req/s (signed-in GET)", ratio >= 4, f"{ratio:.1f}x")
    else:
        check("≥ 4x the Node peer's req/s (signed-in GET)", None, "not measured")
    if gateway and ceiling:
        ratio = gateway.requests_per_second / ceiling.requests_per_second
        check("≥ 60 % of the Python ceiling's req/s", ratio >= 0.6, f"{ratio:.0%}")
        ratio = gateway.p99_ms / ceiling.p99_ms
        check("p99 ≤ 2x the ceiling's p99", ratio <= 2,
              f"{gateway.p99_ms:.1f} ms vs {ceiling.p99_ms:.1f} ms ({ratio:.2f}x)")
    logged = signed_in.get("gateway_log")
    if gateway and logged:
        cost = 1 - logged.requests_per_second / gateway.requests_per_second
        check("the access log costs ≤ 10 % of the signed-in req/s", cost <= 0.10,
              f"{cost:.0%} ({logged.requests_per_second:,.0f} vs {gateway.requests_per_second:,.0f} req/s; "
              f"CPU per request {logged.cpu_us:.0f} vs {gateway.cpu_us:.0f} µs)")
    for key, label in (("signed_out_api", "401"), ("handshake", "307")):
        answer = medians.get(key, {}).get("gateway")
        if gateway and answer:
            faster = answer.requests_per_second >= gateway.requests_per_second
            check(f"the {label} at least as fast as the signed-in GET", faster,
                  f"{answer.requests_per_second:,.0f} vs {gateway.requests_per_second:,.0f} req/s")
    stream = extras.get("stream")
    if isinstance(stream, dict):
        growth = float(stream["rss_peak_mib"]) - float(stream["rss_before_mib"])
        check(f"RSS flat while {stream['bytes'] / (1 << 30):.2g} GiB streams through (growth < 16 MiB)", growth < 16,
              f"{growth:+.1f} MiB")
    burst = extras.get("refresh")
    if isinstance(burst, dict):
        check("one Backend API refresh call for 50 concurrent expired requests", burst["refresh_calls"] == 1,
              f"{burst['refresh_calls']} call(s)")
    lines = ["## Targets (gateway with 1 worker, same run)", "", "| Target | Holds | Measured |", "|---|---|---|"]
    for name, ok, detail in checks:
        lines.append(f"| {name} | {'yes' if ok else 'n/a' if ok is None else '**no**'} | {detail} |")
    return [*lines, ""]


def chart(path: Path, scenarios: list[Scenario], contenders: list[Contender], medians: dict[str, dict[str, Run]]
          ) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("!!! matplotlib is not installed: no chart (pip install matplotlib, or make bench)")
        return
    shown = [s for s in scenarios if medians.get(s.key)]
    figure, axes = plt.subplots(len(shown), 2, figsize=(13, 2.6 * len(shown) + 0.6), squeeze=False)
    for row, scenario in enumerate(shown):
        rows = medians[scenario.key]
        names = [c for c in contenders if c.key in rows]
        labels = [c.title for c in names]
        for column, (attribute, unit) in enumerate((("requests_per_second", "requests/s"), ("p99_ms", "p99 ms"))):
            axis = axes[row][column]
            values = [getattr(rows[c.key], attribute) for c in names]
            colors = ["#d9534f" if c.key.startswith("gateway") else "#777777" for c in names]
            bars = axis.barh(labels, values, color=colors)
            axis.bar_label(bars, labels=[f"{v:,.0f}" if v >= 10 else f"{v:.1f}" for v in values], fontsize=7)
            axis.set_xscale("log")
            axis.invert_yaxis()
            axis.tick_params(labelsize=7)
            axis.set_title(f"{scenario.title}: {unit} (log)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ------------------------------------------------------------------------------------------- main


@contextlib.contextmanager
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        yield started
    finally:
        for server in reversed(started):
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="seconds per contender, 1 round, no installs")
    parser.add_argument("--out", type=Path, default=BENCH, help="where RESULTS.md and RESULTS.png go")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--connections", type=int)
    parser.add_argument("--only", help="comma-separated contender keys to run (others skipped)")
    parser.add_argument("--scenarios", help="comma-separated scenario keys to run (others skipped)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also the signed-in GET through `gateway serve` run from the source tree DIR (say "
                             "`git archive` of an earlier commit), access log off and on: before/after in one run")
    parser.add_argument("--memo", action="store_true",
                        help="only the signed-in GET through the gateway with and without its session memo "
                             "(bench.apps:gateway_app), access log off and on")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    args.seconds = args.seconds or (1.0 if args.smoke else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.0 if args.smoke else 2.0)
    args.connections = args.connections or (16 if args.smoke else 64)
    began = time.perf_counter()
    ensure_tools(install=not args.smoke)
    peer_problem = "not run in smoke mode" if args.smoke else ensure_peer(install=True)
    if peer_problem:
        say(f"!!! Node peer skipped: {peer_problem}")
    tokens = make_tokens(lifetime=3600)
    scenarios = scenarios_for(tokens)
    if args.memo:
        args.only = args.only or ",".join(key for key, _, _, _ in MEMO_CONTENDERS)
        args.scenarios = args.scenarios or "signed_in"
    if args.scenarios:
        scenarios = [s for s in scenarios if s.key in args.scenarios.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    atexit.register(shutil.rmtree, workdir, True)  # also when a run fails half-way
    workdir.chmod(0o755)  # nginx workers (user nobody when started as root) read the files below
    (workdir / "files" / "download").mkdir(parents=True)
    (workdir / "files" / "download" / "1mib.bin").write_bytes(b"\0" * (1 << 20))
    stream_name, stream_size = ("64mib.bin", 64 << 20) if args.smoke else ("1gib.bin", 1 << 30)
    with (workdir / "files" / "download" / stream_name).open("wb") as handle:
        handle.truncate(stream_size)  # sparse: nginx sends zeros
    all_scenarios = tuple(s.key for s in scenarios)
    proxied = ("signed_in", "download")
    with servers() as started, FakeBackendApi(tokens, delay=0.2) as backend:
        upstream_port = free_port()
        have_nginx = shutil.which("nginx") is not None
        if have_nginx:
            config = write_nginx_config(workdir, "upstream", UPSTREAM_SERVER.format(
                port=upstream_port, dir=workdir, small=SMALL_BODY.replace("\n", "\\n")))
            upstream = start_server("upstream", nginx_command(workdir, config), {}, LOAD_CORES, workdir)
            upstream_title = "nginx (1 worker, core 1)"
        else:
            upstream = start_server("upstream", [PYTHON, str(BENCH / "pyupstream.py"), str(upstream_port)], {},
                                    LOAD_CORES, workdir)
            upstream_title = "bench/pyupstream.py (nginx missing)"
        started.append(upstream)
        gateway = [str(Path(PYTHON).parent / "gateway"), "serve"]
        plans: list[tuple[Contender, list[str] | None, dict[str, str], str, Path]] = []

        def plan(key: str, title: str, scenario_keys: tuple[str, ...], command: list[str] | None,
                 env: dict[str, str] | None = None, cores: str = SERVER_CORES, skipped: str | None = None,
                 cwd: Path = ROOT) -> None:
            port = upstream_port if command is None else free_port()
            if args.only and key not in args.only.split(",") and key != "upstream":
                return
            contender = Contender(key, title, port, scenario_keys, skipped=skipped)
            plans.append((contender, command, dict(env or {}), cores, cwd))

        plan("upstream", "Upstream direct (no proxy)", proxied, None)
        if not args.smoke:
            plan("nginx", "nginx proxy_pass (no auth)", proxied, ["{nginx}"],
                 skipped=None if have_nginx else "nginx is not installed")
        plan("gateway", "gateway serve, 1 worker (granian)", all_scenarios, [*gateway, "--workers", "1"],
             gateway_env(tokens, upstream_port, 0))
        if not args.smoke:
            plan("gateway2", "gateway serve, 2 workers (granian, cores 0-1)", all_scenarios,
                 [*gateway, "--workers", "2"], gateway_env(tokens, upstream_port, 0, workers=2), cores=BOTH_CORES)
            plan("gateway_log", "gateway serve, 1 worker, access log on (granian)", ("signed_in",),
                 [*gateway, "--workers", "1"], {**gateway_env(tokens, upstream_port, 0), "GATEWAY_ACCESS_LOG": "true"})
            plan("gateway_uvicorn", "gateway serve, 1 worker (uvicorn)", ("signed_in",),
                 [*gateway, "--workers", "1", "--server", "uvicorn"], gateway_env(tokens, upstream_port, 0))
            plan("gateway_mount", "gateway behind a Litestar `asgi` mount (granian)", ("signed_in",),
                 granian_command("bench.apps:litestar_mount_app", 0), gateway_env(tokens, upstream_port, 0))
            plan("node", "Node: Express + @clerk/express + http-proxy-middleware", all_scenarios,
                 ["node", "server.js"], {"CLERK_JWT_KEY": tokens.public_pem, "CLERK_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
                                         "CLERK_SECRET_KEY": SECRET_KEY, "UPSTREAM": f"http://127.0.0.1:{upstream_port}"},
                 skipped=peer_problem, cwd=PEER)
        if args.baseline:
            baseline = {"PYTHONPATH": str(args.baseline.resolve())}  # its `gateway` package before this tree's
            plan("baseline", f"baseline {args.baseline.name}: gateway serve, 1 worker (granian)", ("signed_in",),
                 [*gateway, "--workers", "1"], {**gateway_env(tokens, upstream_port, 0), **baseline})
            plan("baseline_log", f"baseline {args.baseline.name}: gateway serve, 1 worker, access log on (granian)",
                 ("signed_in",), [*gateway, "--workers", "1"],
                 {**gateway_env(tokens, upstream_port, 0), **baseline, "GATEWAY_ACCESS_LOG": "true"})
        if args.memo:
            for key, title, memo, log in MEMO_CONTENDERS:
                plan(key, title, ("signed_in",), granian_command("bench.apps:gateway_app", 0),
                     {**gateway_env(tokens, upstream_port, 0), "BENCH_SESSION_MEMO": memo,
                      "GATEWAY_ACCESS_LOG": log})
        plan("ceiling", "Python ceiling: raw ASGI + Http1UpstreamClient, no auth (granian)", proxied,
             granian_command("bench.apps:ceiling_app", 0), {"GATEWAY_UPSTREAM": f"http://127.0.0.1:{upstream_port}"})
        refresh_port = free_port()
        plans_extra = gateway_env(tokens, upstream_port, refresh_port, api_url=f"http://127.0.0.1:{backend.port}")
        contenders: list[Contender] = []
        for contender, command, env, cores, cwd in plans:
            contenders.append(contender)
            if command is None or contender.skipped:
                continue
            port = contender.port
            if command == ["{nginx}"]:
                config = write_nginx_config(workdir, "proxy", PROXY_SERVER.format(upstream=upstream_port, port=port))
                command = nginx_command(workdir, config)
            if "--port" in command:
                command[command.index("--port") + 1] = str(port)
            env = {**env, "GATEWAY_LISTEN": f"127.0.0.1:{port}", "PORT": str(port)}
            contender.server = start_server(contender.key, command, env, cores, workdir, cwd)
            started.append(contender.server)
        refresher = start_server("gateway-refresh", [*gateway, "--workers", "1"], plans_extra, SERVER_CORES, workdir)
        started.append(refresher)
        wait_until_answering(upstream, upstream_port)
        for contender in contenders:
            if contender.server is not None and not wait_until_answering(contender.server, contender.port):
                tail = contender.server.log.read_text(errors="replace")[-600:]
                contender.skipped = "did not start"
                say(f"!!! {contender.key} did not start: {tail}")
        wait_until_answering(refresher, refresh_port)
        for scenario in scenarios:
            for contender in contenders:
                if scenario.key in contender.scenarios and not contender.skipped:
                    status = fetch_status(contender.port, scenario.path, scenario.headers)
                    if status != scenario.expect:
                        say(f"!!! {contender.key} answered {status} to {scenario.key}, expected {scenario.expect}")
                        contender.wrong_status[scenario.key] = status
        pairs = [(s, c) for s in scenarios for c in contenders
                 if s.key in c.scenarios and not c.skipped and s.key not in c.wrong_status]
        say(f"{len(pairs)} runs per round, {args.rounds} round(s) of {args.seconds:g} s, warm-up {args.warmup:g} s")
        if args.warmup:
            for scenario, contender in pairs:
                load(contender.port, scenario.path, scenario.headers, args.connections, args.warmup)
        results: dict[tuple[str, str], list[Run]] = {}
        for round_number in range(args.rounds):
            # Each round starts one pair further on: no contender always runs right after the same one.
            shift = round_number % len(pairs) if pairs else 0
            for scenario, contender in pairs[shift:] + pairs[:shift]:
                measured = contender.server or upstream
                cpu_before = measured.cpu_seconds()
                run = load(contender.port, scenario.path, scenario.headers, args.connections, args.seconds)
                if run.requests:
                    run.cpu_us = (measured.cpu_seconds() - cpu_before) / run.requests * 1e6
                run.rss_mib = measured.rss_mib()
                results.setdefault((scenario.key, contender.key), []).append(run)
                say(f"round {round_number + 1} {scenario.key:15} {contender.key:16} "
                    f"{run.requests_per_second:9,.0f} req/s"
                    f"  p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  RSS {run.rss_mib:5.0f} MiB"
                    f"  CPU {run.cpu_us:6.1f} µs/req")
        extras: dict[str, object] = {"upstream": upstream_title, "jwt_decode_us": jwt_decode_floor(tokens, 300)}
        gateway_contender = next((c for c in contenders if c.key == "gateway" and c.server and not c.skipped), None)
        if gateway_contender is not None and gateway_contender.server is not None:
            signed_in = scenarios[0].headers
            extras["stream"] = stream_through(gateway_contender.server, gateway_contender.port,
                                              f"/download/{stream_name}", signed_in, stream_size)
        extras["refresh"] = refresh_burst(refresh_port, tokens, backend, 50)
    took = time.perf_counter() - began
    text, medians = report(args, scenarios, contenders, results, extras, took)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(text)
    chart(args.out / "RESULTS.png", scenarios, contenders, medians)
    print(text)
    say(f"wrote {args.out / 'RESULTS.md'} in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
