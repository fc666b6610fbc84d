"""`gateway check-config` and `load_or_exit`: every problem on its own line, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import cli
from gateway.clerk.keys import make_publishable_key
from gateway.settings_command import load_or_exit

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
PUBLISHABLE_KEY = make_publishable_key("happy-hen-42.clerk.accounts.dev")
SECRET_KEY = "sk_test_0123456789abcdefghijWXYZ"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets: the developer's own CLERK_*/GATEWAY_* must not leak in."""
    for name in list(os.environ):
        if name.startswith(("CLERK_", "GATEWAY_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def only_the_check_config_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the CLI with this command alone, so the test does not depend on other commands' modules."""
    monkeypatch.setattr(cli, "COMMANDS", {"check-config": cli.COMMANDS["check-config"]})


@pytest.fixture
def valid_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", PUBLISHABLE_KEY)
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET_KEY)


@pytest.mark.usefixtures("valid_keys")
def test_valid_configuration_prints_a_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = cli.main(["check-config", "--config", str(CONFIG_DIR / "sidecar.example.toml"), "--serve"])

    out, err = capsys.readouterr()
    assert exit_code == 0
    assert err == ""
    assert out.splitlines() == [
        "configuration OK",
        f"  config:       {CONFIG_DIR / 'sidecar.example.toml'}",
        "  instance:     development",
        "  frontend API: happy-hen-42.clerk.accounts.dev",
        "  satellite:    no",
        "  upstream:     http://127.0.0.1:3000",
        "  listen:       0.0.0.0:8080 (2 workers)",
        "  mode:         protect",
        "  redis:        (not set: each process keeps its own state)",
        "  secret key:   sk_test_…WXYZ",
        "  jwt key:      (not set: keys come from the JWKS)",
    ]
    assert SECRET_KEY not in out


@pytest.mark.usefixtures("valid_keys")
def test_environment_only_configuration_is_valid_without_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "  config:       (environment only)" in out
    assert "  upstream:     (not set)" in out


def test_every_problem_is_printed_on_stderr_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_WORKERS", "none")

    exit_code = cli.main(["check-config", "--serve"])

    out, err = capsys.readouterr()
    assert exit_code == 1
    assert out == ""
    assert err.splitlines() == [
        "GATEWAY_WORKERS: expected an integer, got 'none'",
        "CLERK_PUBLISHABLE_KEY: missing. Publishable key not valid (expected format: pk_test_... or pk_live_...).",
        "CLERK_SECRET_KEY: Missing Clerk Secret Key. Go to https://dashboard.clerk.com and get your key for "
        "your instance. (Or set CLERK_JWT_KEY to verify tokens without the network.)",
        "GATEWAY_UPSTREAM: missing; set the http(s) URL of the app to proxy to",
    ]


@pytest.mark.usefixtures("valid_keys")
def test_invalid_toml_is_reported_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[gateway\n")

    assert cli.main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{config}: invalid TOML: ")
    assert "Traceback" not in err


def test_load_or_exit_prints_prefixed_lines_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        load_or_exit(
            None,
            require_upstream=True,
            environ={"CLERK_PUBLISHABLE_KEY": PUBLISHABLE_KEY, "CLERK_SECRET_KEY": SECRET_KEY},
        )

    assert raised.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "gateway: configuration error: GATEWAY_UPSTREAM: missing; set the http(s) URL of the app to proxy to"
    ]


@pytest.mark.usefixtures("valid_keys")
def test_load_or_exit_reads_the_process_environment() -> None:
    settings = load_or_exit(CONFIG_DIR / "sidecar.example.toml", require_upstream=True)

    assert settings.gateway.upstream == "http://127.0.0.1:3000"
