"""`gateway doctor` against the emulator: each cause Clerk users hit, staged, and the line that names it.

Every test runs the real checks over loopback HTTP and asserts the verdict line and the exit status.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.doctor import diagnose
from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from gateway.settings import Settings
from tests.integration.conftest import gateway_settings
from tests.support.redis_server import needs_redis, running_redis
from tests.support.upstream import EchoUpstream, unused_port

REPO = Path(__file__).resolve().parents[2]
ORIGIN = "http://app.test:8000"


async def doctor(settings: Settings, clock: Callable[[], float] = time.time) -> tuple[int, dict[str, str]]:
    """The exit status and the verdict lines, by check name (the first line of each check)."""
    out = io.StringIO()
    code = await diagnose(settings, out, clock=clock)
    lines: dict[str, str] = {}
    for line in out.getvalue().splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3:
            lines.setdefault(parts[1], line)
    return code, lines


def settings_for(clerk: EmulatorServer, upstream: str, **environment: str) -> Settings:
    return gateway_settings(clerk, upstream, GATEWAY_PUBLIC_ORIGIN=ORIGIN, **environment)


async def test_a_healthy_set_up_passes_every_check(dev_clerk: EmulatorServer, upstream: EchoUpstream,
                                                   clock: FakeClock) -> None:  # fmt: skip
    code, lines = await doctor(settings_for(dev_clerk, upstream.url), clock)
    assert code == 0, lines
    for check in ("jwks", "secret-key", "frontend-api", "same-instance", "clock", "public-origin",
                  "frontend-api-proxy", "upstream"):  # fmt: skip
        assert lines[check].startswith("ok "), lines[check]
    assert lines["satellite"].startswith("skip")
    assert lines["redis"].startswith("skip redis")


async def test_a_wrong_secret_key_is_refused_by_the_backend_api(dev_clerk: EmulatorServer, upstream: EchoUpstream,
                                                                clock: FakeClock) -> None:  # fmt: skip
    code, lines = await doctor(settings_for(dev_clerk, upstream.url, CLERK_SECRET_KEY="sk_test_not_this_one"), clock)
    assert code == 1
    assert lines["secret-key"].startswith("FAIL secret-key        the Backend API refuses the secret key")
    assert "Fix: copy CLERK_SECRET_KEY" in lines["secret-key"]


async def test_a_publishable_key_of_another_instance_is_named(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, clock: FakeClock
) -> None:
    with EmulatorServer(clock=clock) as other:  # its own signing key: another instance
        settings = settings_for(dev_clerk, upstream.url, CLERK_PUBLISHABLE_KEY=other.publishable_key,
                                CLERK_FAPI_URL=other.fapi_url)  # fmt: skip
        code, lines = await doctor(settings, clock)
    assert code == 1
    assert lines["same-instance"].startswith("FAIL same-instance")
    assert "the two keys belong to different instances" in lines["same-instance"]
    assert lines["secret-key"].startswith("ok ")


async def test_an_unreachable_jwks_is_one_failing_line(dev_clerk: EmulatorServer, upstream: EchoUpstream,
                                                       clock: FakeClock) -> None:  # fmt: skip
    settings = settings_for(dev_clerk, upstream.url, CLERK_API_URL=f"http://127.0.0.1:{unused_port()}")
    code, lines = await doctor(settings, clock)
    assert code == 1
    assert lines["jwks"].startswith("FAIL jwks") and "is unreachable (connection refused" in lines["jwks"]
    assert lines["secret-key"].startswith("skip")


async def test_a_skewed_clock_is_measured_against_clerks_date_header(upstream: EchoUpstream) -> None:
    ahead = FakeClock(time.time() + 120)  # Clerk's clock two minutes ahead of ours
    with EmulatorServer(clock=ahead) as clerk:
        code, lines = await doctor(settings_for(clerk, upstream.url))
    assert code == 1
    # Clerk's `Date` has whole seconds and the clocks move on while the doctor runs: 119 to 121 s.
    assert re.match(r"FAIL clock {13}this clock is 1(19|20|21) s behind the", lines["clock"]), lines["clock"]
    assert "Clerk tolerates 5 s" in lines["clock"] and "NTP" in lines["clock"]


async def test_an_unreachable_app_fails_the_upstream_check(dev_clerk: EmulatorServer, clock: FakeClock) -> None:
    code, lines = await doctor(settings_for(dev_clerk, f"http://127.0.0.1:{unused_port()}"), clock)
    assert code == 1
    assert lines["upstream"].startswith("FAIL upstream          the app does not answer at http://127.0.0.1:")
    assert "Fix: start the app, or fix GATEWAY_UPSTREAM." in lines["upstream"]


async def test_a_satellite_its_primary_will_not_send_back_is_named(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], clock: FakeClock
) -> None:
    primary = await run_gateway(gateway_settings(dev_clerk, upstream.url), "app.test:8000")
    satellite = gateway_settings(
        dev_clerk, upstream.url, CLERK_IS_SATELLITE="true", CLERK_DOMAIN="sat.test",
        CLERK_SIGN_IN_URL=f"{primary.url}/sign-in", GATEWAY_PUBLIC_ORIGIN="http://sat.test:9000",
    )  # fmt: skip
    code, lines = await doctor(satellite, clock)
    assert code == 1
    assert lines["satellite-return"].startswith("FAIL satellite-return")
    assert "refuses to send browsers back to http://sat.test:9000" in lines["satellite-return"]
    assert "Fix: add http://sat.test:9000 to the primary's GATEWAY_ALLOWED_REDIRECT_ORIGINS." in lines[
        "satellite-return"]  # fmt: skip
    assert lines["satellite-sign-in"].startswith("ok ")
    assert lines["satellite-sync"].startswith("note")


async def test_a_satellite_its_primary_sends_back_passes(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any], clock: FakeClock
) -> None:
    primary = await run_gateway(
        gateway_settings(dev_clerk, upstream.url, GATEWAY_ALLOWED_REDIRECT_ORIGINS="http://sat.test:9000"),
        "app.test:8000",
    )
    satellite = gateway_settings(
        dev_clerk, upstream.url, CLERK_IS_SATELLITE="true", CLERK_DOMAIN="sat.test", CLERK_SATELLITE_AUTO_SYNC="true",
        CLERK_SIGN_IN_URL=f"{primary.url}/sign-in", GATEWAY_PUBLIC_ORIGIN="http://sat.test:9000",
    )  # fmt: skip
    code, lines = await doctor(satellite, clock)
    assert code == 0, lines
    assert lines["satellite-return"].startswith("ok   satellite-return  the primary sends browsers back")
    assert lines["satellite-sync"].startswith("ok ")


async def test_a_public_origin_outside_the_authorized_parties_is_the_loop_it_causes(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, clock: FakeClock
) -> None:
    settings = settings_for(dev_clerk, upstream.url, CLERK_AUTHORIZED_PARTIES="https://elsewhere.example.com")
    code, lines = await doctor(settings, clock)
    assert code == 1
    assert lines["public-origin"].startswith(f"FAIL public-origin     {ORIGIN} is not in CLERK_AUTHORIZED_PARTIES")
    assert "sign-in loop" in lines["public-origin"]


def test_the_command_reads_the_environment_and_exits_non_zero_on_a_failure(dev_clerk: EmulatorServer) -> None:
    environment = {
        "PATH": "/usr/bin:/bin",
        "CLERK_PUBLISHABLE_KEY": dev_clerk.publishable_key,
        "CLERK_SECRET_KEY": "sk_test_wrong",
        "CLERK_API_URL": dev_clerk.api_url,
        "CLERK_FAPI_URL": dev_clerk.fapi_url,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "gateway", "doctor"], capture_output=True, text=True, cwd=REPO, env=environment,
        timeout=60,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    assert "FAIL secret-key        the Backend API refuses the secret key" in completed.stdout
    assert completed.stdout.rstrip().endswith("checks failed")  # the Frontend API proxy's check too


@needs_redis
async def test_a_configured_redis_is_pinged_and_its_version_checked(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, clock: FakeClock, tmp_path: Path
) -> None:
    with running_redis(tmp_path) as redis:
        code, lines = await doctor(settings_for(dev_clerk, upstream.url, GATEWAY_REDIS_URL=redis.url), clock)
    assert code == 0, lines
    assert lines["redis"].startswith("ok   redis             Redis ")
    assert lines["redis"].endswith(f"answers at {redis.url}.")


async def test_an_unreachable_redis_fails_its_check_without_showing_its_password(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, clock: FakeClock
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{unused_port()}/0"
    code, lines = await doctor(settings_for(dev_clerk, upstream.url, GATEWAY_REDIS_URL=url), clock)
    assert code == 1
    assert lines["redis"].startswith("FAIL redis             Redis does not answer at redis://:***@127.0.0.1:")
    assert "Fix: start Redis, or fix GATEWAY_REDIS_URL." in lines["redis"] and "hunter2" not in lines["redis"]
