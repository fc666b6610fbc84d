"""A satellite after its user signed out on the primary: the next visit reaches sign-in in a few hops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from tests.integration.conftest import gateway_settings
from tests.integration.test_redirect_loops import sign_in_and_land
from tests.support.browser import NAVIGATION, Browser
from tests.support.upstream import EchoUpstream


async def test_after_signing_out_on_the_primary_the_satellite_reaches_sign_in_in_four_hops(
    start_emulator: Callable[..., EmulatorServer], upstream: EchoUpstream, run_gateway: Callable[..., Any],
    new_browser: Callable[..., Browser], clock: FakeClock,
) -> None:  # fmt: skip
    clerk = start_emulator(token_lifetime=5)
    primary = await run_gateway(
        gateway_settings(clerk, upstream.url, GATEWAY_ALLOWED_REDIRECT_ORIGINS="http://sat.test:9000"),
        "app.test:8000",
    )
    satellite = await run_gateway(
        gateway_settings(
            clerk, upstream.url, CLERK_IS_SATELLITE="true", CLERK_DOMAIN="sat.test", CLERK_SATELLITE_AUTO_SYNC="true",
            CLERK_SIGN_IN_URL="http://app.test:8000/sign-in", GATEWAY_PUBLIC_ORIGIN="http://sat.test:9000",
        ),
        "sat.test:9000",
    )  # fmt: skip
    browser = new_browser(primary, satellite)
    assert (await sign_in_and_land(browser, primary)).status_code == 200
    browser.think(3)
    synced = await browser.navigate(f"{satellite.origin}/home")
    assert synced.status_code == 200 and synced.json()["path"] == "/home"
    browser.think(3)
    out = await browser.request("POST", f"{primary.origin}/__gateway/sign-out",
                                headers={**NAVIGATION, "origin": primary.origin}, follow=False)  # fmt: skip
    assert out.status_code == 303
    browser.think(12)  # the satellite's token expires (5 s, and 5 s of allowed skew)
    landed = await browser.navigate(f"{satellite.origin}/home")
    hops = [(r.status_code, r.headers.get("x-clerk-auth-reason"), r.headers.get("location")) for r in browser.history]
    assert landed.status_code == 200 and "<form" in landed.text, hops
    assert len(browser.history) - 1 <= 4, hops
