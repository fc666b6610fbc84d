"""`gateway explain`: JSON lines in, one decision a line out, through the real command."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from gateway.cli import main
from tests.support.clerk import IAT, PK_LIVE, private_key, public_pem, session_token

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def networkless_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLERK_SECRET_KEY", "CLERK_API_URL", "GATEWAY_UPSTREAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", PK_LIVE)
    monkeypatch.setenv("CLERK_JWT_KEY", public_pem())


def explain(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *lines: object) -> tuple[int, list]:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code = main(["explain"])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def test_explains_a_signed_in_request_with_its_identity(networkless_env: None, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    token = session_token(o={"id": "org_1", "rol": "admin", "slg": "acme"}, v=2)
    code, (result,) = explain(monkeypatch, capsys, {
        "method": "GET", "url": "https://app.example.com/x", "now": IAT,
        "headers": {"cookie": f"__client_uat=1; __session={token}", "sec-fetch-dest": "document"},
    })
    assert code == 0
    assert result["status"] == "signed-in"
    assert result["auth"]["user_id"] == "user_2GIpXOEpVyJw51rkZn9Kmnc6Sxr"
    assert (result["auth"]["org_id"], result["auth"]["org_role"], result["auth"]["org_slug"]) == (
        "org_1", "org:admin", "acme")


def test_explains_which_route_rule_decided_and_the_condition_that_failed(
    networkless_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_ROUTES", json.dumps([
        {"path": "/reports/*", "methods": ["DELETE"], "access": "deny"},
        {"path": "/pro/*", "any": [{"plan": "pro"}, {"org_role": "admin"}]},
        {"path": "/money/*", "reverification": "strict"},
    ]))
    cookie = f"__client_uat=1; __session={session_token(pla='u:free', fva=[30, -1])}"
    request = {"url": "https://app.example.com/pro/x", "now": IAT, "headers": {"cookie": cookie, "accept": "text/html"}}
    code, (pro, money, deny, default) = explain(
        monkeypatch, capsys, request, {**request, "url": "https://app.example.com/money/x"},
        {**request, "method": "DELETE", "url": "https://app.example.com/reports/%2e%2e/reports/q3"},
        {**request, "url": "https://app.example.com/home"},
    )
    assert code == 0
    assert pro["status"] == "signed-in"
    assert pro["policy"] == {"verdict": "forbidden", "rule": "route 2 (/pro/*)", "api": False, "path": "/pro/x",
                             "because": "not met: any [plan = 'pro', org_role = 'admin']"}
    assert (money["policy"]["verdict"], money["policy"]["because"]) == (
        "reverify", "reverification needed: second factor verified in the last 10 minutes")
    assert deny["policy"] == {"verdict": "deny", "rule": "route 1 (/reports/*)", "api": False,
                              "path": "/reports/q3", "because": "a deny route"}
    assert default["policy"]["rule"] == "(no rule: every path needs a signed-in user)"
    assert default["policy"]["verdict"] == "allow"


def test_explains_why_a_navigation_is_sent_to_the_handshake(networkless_env: None,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, (result,) = explain(monkeypatch, capsys, {
        "url": "https://app.example.com/x", "now": IAT + 3600,
        "headers": {"cookie": f"__client_uat=1; __session={session_token()}", "sec-fetch-dest": "document"},
    })
    assert code == 0
    assert (result["status"], result["reason"], result["http_status"]) == (
        "handshake", "session-token-expired-refresh-non-eligible-no-refresh-cookie", 307)
    assert result["headers"]["location"].startswith("https://clerk.inspired.puma-74.lcl.dev/v1/client/handshake?")
    assert result["set_cookies"] == ["__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"]
    assert result["message"].startswith("JWT is expired.")
    assert result["auth"] is None


def test_a_malformed_line_is_reported_and_the_rest_still_explained(networkless_env: None,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, results = explain(monkeypatch, capsys, "{not json", {"url": "https://app.example.com/"},
                            {"url": "https://app.example.com/", "headers": "nope"})
    assert code == 1
    assert "error" in results[0] and "error" in results[2]
    assert (results[1]["status"], results[1]["reason"]) == ("signed-out", "session-token-and-uat-missing")


def test_explain_without_a_publishable_key_stops_with_one_clear_line() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "gateway", "explain"], input="", capture_output=True, text=True, cwd=REPO,
        env={"PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert completed.returncode == 2
    assert "CLERK_PUBLISHABLE_KEY" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_core_benchmark_smoke_mode_runs() -> None:
    completed = subprocess.run([sys.executable, "bench/core_verify.py", "--smoke"], capture_output=True, text=True,
                               cwd=REPO, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "core verify, repeat" in completed.stdout


def test_explain_follows_accepts_token(networkless_env: None, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    m2m = jwt.encode({"sub": "mch_1", "jti": "mt_1", "iat": IAT, "exp": IAT + 60, "scopes": "mch_2"}, private_key(),
                     algorithm="RS256", headers={"kid": "k", "cat": "cl_B7d4PD333AAA"})
    monkeypatch.setenv("GATEWAY_ACCEPTS_TOKEN", "m2m_token")
    line = {"method": "GET", "url": "https://app.example.com/x", "now": IAT}
    code, (signed_in, no_header) = explain(
        monkeypatch, capsys, {**line, "headers": {"authorization": f"Bearer {m2m}"}}, {**line, "headers": {}}
    )
    assert code == 0
    assert (signed_in["status"], signed_in["token_type"]) == ("signed-in", "m2m_token")
    assert signed_in["machine"]["subject"] == "mch_1" and signed_in["machine"]["scopes"] == ["mch_2"]
    assert (no_header["status"], no_header["reason"]) == ("signed-out", "No token in header")


def test_trace_lists_the_rows_the_decision_took_in_order(networkless_env: None, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    line = json.dumps({"url": "https://app.example.com/x", "now": IAT + 3600,
                       "headers": {"cookie": f"__client_uat=1; __session={session_token()}",
                                   "sec-fetch-dest": "document"}})
    monkeypatch.setattr(sys, "stdin", io.StringIO(line + "\n"))
    assert main(["explain", "--trace"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["trace"] == ["D cookies", "D14 verification failed", "§3.3 token-expired", "§3.1 handshake"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(line + "\n"))
    assert main(["explain"]) == 0
    assert "trace" not in json.loads(capsys.readouterr().out)


def test_the_readme_example_runs_as_written_on_the_sample_settings() -> None:
    readme = (REPO / "README.md").read_text()
    command = readme.split("| .venv/bin/gateway explain --trace --config config/explain.example.toml")[0]
    request = command.rsplit("echo '", 1)[1].split("' \\", 1)[0]
    completed = subprocess.run(
        [sys.executable, "-m", "gateway", "explain", "--trace", "--config", "config/explain.example.toml"],
        input=request + "\n", capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert (result["status"], result["reason"]) == ("handshake", "client-uat-but-no-session-token")
    assert result["trace"] == ["D cookies", "D10 client_uat without session", "§3.1 handshake"]
    assert completed.stderr == ""


def test_an_unreachable_jwks_is_summed_up_once_on_stderr(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.upstream import unused_port

    for name in ("CLERK_JWT_KEY", "GATEWAY_UPSTREAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLERK_PUBLISHABLE_KEY", PK_LIVE)
    monkeypatch.setenv("CLERK_SECRET_KEY", "sk_live_x")
    monkeypatch.setenv("CLERK_API_URL", f"http://127.0.0.1:{unused_port()}")
    request = json.dumps({"url": "https://app.example.com/x", "now": IAT,
                          "headers": {"cookie": f"__client_uat=1; __session={session_token()}"}})
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{request}\n{request}\n{request}\n"))
    assert main(["explain"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    [summary] = captured.err.splitlines()
    assert summary.startswith("gateway explain: the JWKS could not be loaded (") and "unexpected-error" in summary


def test_explains_which_app_was_chosen_and_judges_the_path_it_receives(
    networkless_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_APPS", json.dumps([
        {"name": "prom", "path_prefix": "/prom", "strip_prefix": True, "upstream": "http://127.0.0.1:9090",
         "routes": [{"path": "/admin/*", "access": "deny"}]},
        {"name": "grafana", "hosts": ["grafana.example.com"], "upstream": "http://127.0.0.1:3000"},
    ]))
    cookie = f"__client_uat=1; __session={session_token()}"
    request = {"now": IAT, "headers": {"cookie": cookie, "accept": "text/html"}}
    code, (prom, grafana, none) = explain(
        monkeypatch, capsys, {**request, "url": "https://app.example.com/prom/admin/x"},
        {**request, "url": "https://grafana.example.com/prom/admin/x"},
        {**request, "url": "https://app.example.com/other"},
    )
    assert code == 0
    assert prom["app"] == {"name": "prom", "path": "/admin/x"}
    assert prom["policy"] == {"verdict": "deny", "rule": "route 1 (/admin/*)", "api": False, "path": "/admin/x",
                              "because": "a deny route"}
    assert grafana["app"] == {"name": "grafana", "path": "/prom/admin/x"} and grafana["policy"]["verdict"] == "allow"
    assert none["app"] is None
    assert none["policy"] == {"verdict": "refused", "http_status": 404,
                              "because": "no app takes this host and path (no_app)"}
