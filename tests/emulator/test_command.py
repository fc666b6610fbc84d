"""`gateway emulator` as a user runs it: prints keys and URLs, serves, stops on SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.emulator.instance_keys import publishable_key

REPO = Path(__file__).resolve().parents[2]
# `gateway emulator` = `gateway.cli` dispatching to `gateway.emulator.command`; the dispatch is driven
# directly here so these tests do not depend on the other sub-commands importing cleanly.
COMMAND = [
    sys.executable,
    "-c",
    "import argparse, sys; from gateway.emulator import command; p = argparse.ArgumentParser(); "
    "command.add_arguments(p); sys.exit(command.run(p.parse_args(sys.argv[1:])))",
]


def test_command_prints_keys_and_urls_and_serves_until_interrupted(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text('[[users]]\nid = "user_x"\nemail = "x@example.com"\npassword = "pw"\n')
    process = subprocess.Popen(
        [
            *COMMAND,
            "--fapi-port",
            "0",
            "--bapi-port",
            "0",
            "--seed",
            str(seed),
            "--instance",
            "production",
            "--fapi-host",
            "clerk.example.test",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # the banner ends with the Ctrl+C hint
            lines.append(line)
            if line.startswith("Ctrl+C"):
                break
        banner = "".join(lines)
        assert "CLERK_PUBLISHABLE_KEY=" + publishable_key("clerk.example.test", production=True) in banner
        assert re.search(r"CLERK_SECRET_KEY=sk_live_\w+", banner)
        api_url = re.search(r"CLERK_API_URL=(\S+)", banner)
        fapi_url = re.search(r"listening on (\S+)\)", banner)
        assert api_url and fapi_url and "x@example.com" in banner
        assert "CLERK_FAPI_URL=http://clerk.example.test\n" in banner  # where handshakes must go
        assert httpx.get(f"{api_url.group(1)}/v1/health").json() == {"status": "healthy"}
        assert httpx.get(f"{fapi_url.group(1)}/v1/health").json() == {"status": "healthy"}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None and "HTTP Request" not in process.stderr.read()  # no httpx INFO lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_reports_a_bad_seed_and_exits_2(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text("[[users]]\nid = 1\n")
    result = subprocess.run(
        [*COMMAND, "--fapi-port", "0", "--bapi-port", "0", "--seed", str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "users[0]" in result.stderr


def test_command_sends_webhooks_where_told_and_prints_their_secret() -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    process = subprocess.Popen(
        [*COMMAND, "--fapi-port", "0", "--bapi-port", "0", "--webhook", "http://127.0.0.1:9/hook",
         "--webhook", "http://127.0.0.1:9/other", "--webhook-secret", secret],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl+C"):
                break
        banner = "".join(lines)
        assert f"CLERK_WEBHOOK_SIGNING_SECRET={secret}\n" in banner
        assert "Webhooks to: http://127.0.0.1:9/hook, http://127.0.0.1:9/other\n" in banner
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_refuses_a_malformed_webhook_secret_and_exits_2() -> None:
    result = subprocess.run(
        [*COMMAND, "--fapi-port", "0", "--bapi-port", "0", "--webhook-secret", "whsec_not base64!"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--webhook-secret: expected whsec_" in result.stderr
