"""The demo's API-key line: the `curl` the banner prints reaches the sample tool's API as the key's owner."""

from __future__ import annotations

import secrets
import shlex
import socket
from collections.abc import Iterator

import httpx
import pytest

from gateway.demo.command import Demo, DemoPlan, banner


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def running_demo() -> Iterator[Demo]:
    plan = DemoPlan(
        free_port(), free_port(), free_port(), free_port(), free_port(), 60,
        "sk_test_demo_" + secrets.token_urlsafe(16), wiki_port=free_port(),
    )
    with Demo(plan) as demo:
        demo.start()
        yield demo


def test_the_banners_curl_line_reaches_the_tools_api_as_alice(running_demo: Demo) -> None:
    assert running_demo.api_key is not None and running_demo.api_key.startswith("ak_")
    line = next(
        line.strip()
        for line in banner(running_demo.plan, running_demo.api_key).splitlines()
        if line.strip().startswith("curl ")
    )
    words = shlex.split(line)
    assert words[:2] == ["curl", "-H"] and len(words) == 4
    name, _, value = words[2].partition(": ")
    response = httpx.get(words[3], headers={name: value}, timeout=10)
    assert response.status_code == 200, response.text
    identity = response.json()["identity"]
    assert identity["status"] == "signed-in" and identity["user_id"] == "user_alice"
    assert identity["token_type"] == "api_key" and identity["api_key_name"] == "demo-cli"
    assert identity["session_id"] is None


def test_without_a_key_or_a_session_the_api_answers_401(running_demo: Demo) -> None:
    response = httpx.get(running_demo.plan.api_url, timeout=10)
    assert response.status_code == 401
    wrong = httpx.get(running_demo.plan.api_url, headers={"Authorization": "Bearer ak_wrong"}, timeout=10)
    assert wrong.status_code == 401 and wrong.headers["x-clerk-auth-reason"] == "token-invalid"
