"""Real-browser fixtures: the whole demo (emulator, sample tool, wiki, two gateways) and headless Chromium.

Chromium comes from Debian's package (`make test` installs it when it can); Playwright drives it
through `executable_path`. Without a browser these tests are skipped with a loud reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.command import Demo, DemoPlan

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TOKEN_LIFETIME = 5


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def demo() -> Iterator[DemoPlan]:
    plan = DemoPlan(free_port(), free_port(), free_port(), free_port(), free_port(), TOKEN_LIFETIME,
                    "sk_test_e2e_" + secrets.token_urlsafe(16), wiki_port=free_port())
    with Demo(plan) as running:
        running.start()
        yield running.plan


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API holds an event loop while open, which asyncio tests collected
    after the browser tests could not start under."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("NO BROWSER: Debian's chromium is not installed (make test installs it as root); "
                    "the real-browser tests did not run")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="NO BROWSER: playwright is not installed")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"))
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
