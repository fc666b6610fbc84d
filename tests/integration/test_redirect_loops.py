"""Every loop the gateway can send a browser round ends within a few hops on a page that names the cause.

Each cause is staged with the emulator: a wrong `CLERK_AUTHORIZED_PARTIES`, a verification key of another
instance, Clerk's clock off ours by more than the tolerance, a satellite its primary will not send back.
Each test asserts the hops, the page, the one warning and the metric.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.support.browser import NAVIGATION, Browser
from tests.support.upstream import EchoUpstream

ALICE = ("alice@example.com", "alice-password")


async def sign_in_and_land(browser: Browser, gateway: RunningGateway, path: str = "/dashboard") -> httpx.Response:
    """Open a protected page, submit the hosted sign-in form, and follow wherever the gateway sends us;
    between the two a person's pause (Clerk's redirect counter lives 2 s)."""
    browser.think(3)
    page = await browser.navigate(f"{gateway.origin}{path}")
    assert page.status_code == 200 and "<form" in page.text, [r.headers.get("location") for r in browser.history]
    action = html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }
    browser.think(3)
    return await browser.request(
        "POST", action, headers=NAVIGATION, data={**fields, "identifier": ALICE[0], "password": ALICE[1]}, max_hops=12
    )


class Warnings(logging.Handler):
    """The `gateway` logger's loop warnings (Litestar's logging set-up replaces pytest's root handler)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.loops: list[str] = []
        logging.getLogger("gateway").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("gateway.redirect_loop"):
            self.loops.append(record.getMessage())



@pytest.fixture
def warnings() -> Iterator[Warnings]:
    collected = Warnings()
    yield collected
    logging.getLogger("gateway").removeHandler(collected)


async def loops_counted(http_client: httpx.AsyncClient, gateway: RunningGateway) -> str:
    scrape = (await http_client.get(f"{gateway.url}/__gateway/metrics")).text
    return "\n".join(line for line in scrape.splitlines() if line.startswith("gateway_redirect_loops_total"))


async def test_a_wrong_authorized_parties_loop_ends_on_a_page_naming_the_setting(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser], http_client: httpx.AsyncClient, warnings: Warnings,
) -> None:  # fmt: skip
    gateway = await run_gateway(
        gateway_settings(dev_clerk, upstream.url, CLERK_AUTHORIZED_PARTIES="https://elsewhere.example.com")
    )
    browser = new_browser(gateway)
    landed = await sign_in_and_land(browser, gateway)
    assert landed.status_code == 508, [r.headers.get("location") for r in browser.history]
    assert len(browser.history) <= 5  # the form's answer, Clerk's hops, the page
    assert "CLERK_AUTHORIZED_PARTIES" in landed.text
    assert "Add http://app.test:8000 to CLERK_AUTHORIZED_PARTIES" in html.unescape(landed.text)
    assert landed.headers["content-type"].startswith("text/html")
    [warning] = warnings.loops
    assert "cause=authorized-parties" in warning and "path=/dashboard" in warning
    assert await loops_counted(http_client, gateway) == 'gateway_redirect_loops_total{cause="authorized-parties"} 1.0'


async def test_a_token_signed_by_a_key_of_another_instance_ends_on_the_keys_page(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser], http_client: httpx.AsyncClient, warnings: Warnings,
) -> None:  # fmt: skip
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = other_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url, CLERK_JWT_KEY=pem.decode()))
    browser = new_browser(gateway)
    landed = await sign_in_and_land(browser, gateway)
    assert landed.status_code == 508, [r.headers.get("location") for r in browser.history]
    assert len(browser.history) <= 5
    assert "signed by a key this gateway does not know" in landed.text
    [warning] = warnings.loops
    assert "cause=keys" in warning
    assert await loops_counted(http_client, gateway) == 'gateway_redirect_loops_total{cause="keys"} 1.0'


async def test_clerks_clock_ahead_of_ours_ends_on_the_clock_page(
    upstream: EchoUpstream, run_gateway: Callable[..., Any], new_browser: Callable[..., Browser],
    http_client: httpx.AsyncClient, clock: FakeClock, warnings: Warnings,
) -> None:  # fmt: skip
    ahead = FakeClock(clock() + 120)  # tokens are issued two minutes in our future
    with EmulatorServer(clock=ahead) as clerk:
        gateway = await run_gateway(gateway_settings(clerk, upstream.url))
        browser = new_browser(gateway)
        landed = await sign_in_and_land(browser, gateway)
    # The resolution tolerates a day of skew in development (and says so); the next handshake is the loop.
    assert landed.status_code == 508, [r.headers.get("x-clerk-auth-reason") for r in browser.history]
    assert len(browser.history) <= 5
    assert "this server's clock is behind Clerk's" in html.unescape(landed.text) and "NTP" in landed.text
    [warning] = warnings.loops
    assert "cause=clock-behind" in warning
    assert await loops_counted(http_client, gateway) == 'gateway_redirect_loops_total{cause="clock-behind"} 1.0'


async def test_a_satellite_its_primary_does_not_allow_ends_on_the_primarys_page_naming_the_setting(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser],
) -> None:  # fmt: skip
    primary = await run_gateway(gateway_settings(dev_clerk, upstream.url), "app.test:8000")
    satellite = await run_gateway(
        gateway_settings(
            dev_clerk, upstream.url, CLERK_IS_SATELLITE="true", CLERK_DOMAIN="sat.test",
            CLERK_SATELLITE_AUTO_SYNC="true", CLERK_SIGN_IN_URL="http://app.test:8000/sign-in",
            GATEWAY_PUBLIC_ORIGIN="http://sat.test:9000",
        ),
        "sat.test:9000",
    )  # fmt: skip
    browser = new_browser(primary, satellite)
    landed = await browser.navigate(f"{satellite.origin}/home")
    assert len(browser.history) == 2  # the sync redirect, then the primary's refusal
    assert landed.status_code == 400 and landed.headers["content-type"].startswith("text/html")
    text = html.unescape(landed.text)
    assert "list http://sat.test:9000 in this primary's GATEWAY_ALLOWED_REDIRECT_ORIGINS" in text


async def test_signing_in_and_out_quickly_is_no_loop(
    dev_clerk: EmulatorServer, upstream: EchoUpstream, run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser],
) -> None:  # fmt: skip
    gateway = await run_gateway(gateway_settings(dev_clerk, upstream.url))
    browser = new_browser(gateway)
    landed = await sign_in_and_land(browser, gateway)
    assert landed.status_code == 200
    out = await browser.request("POST", f"{gateway.origin}/__gateway/sign-out",
                                headers={**NAVIGATION, "origin": gateway.origin})  # fmt: skip
    assert out.status_code == 200 and "<form" in out.text  # back on the hosted sign-in page
    again = await sign_in_and_land(browser, gateway)
    assert again.status_code == 200
