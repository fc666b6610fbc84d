"""Immediate revocation over loopback: the emulator's Svix-signed webhooks reach the gateway, and the
next request of a revoked session is signed-out (`session-revoked`) at every entrance.

Emulator (Clerk, sending webhooks) + gateway + echo app, a cookie-keeping browser. Each test waits for
the delivery the emulator records (never a sleep), then asks the proxy, forward-auth and a WebSocket
upgrade, including requests the session memo would have answered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import websockets
from standardwebhooks import Webhook

from gateway.edge.app import create_app
from gateway.edge.runtime import EdgeRuntime
from gateway.emulator.clock import FakeClock
from gateway.emulator.server import EmulatorServer
from gateway.emulator.webhooks import Delivery
from tests.integration.conftest import RunningGateway, gateway_settings
from tests.integration.test_gateway_flows import ALICE, BOB, sign_in
from tests.support.browser import FETCH, Browser
from tests.support.faults import mint_token
from tests.support.upstream import EchoUpstream, serving_asgi

SECRET = "whsec_" + base64.b64encode(b"revocation-tests-signing-secret!").decode()
HOST = "app.test:8000"


@dataclass
class Stack:
    clerk: EmulatorServer
    gateway: RunningGateway
    runtime: EdgeRuntime
    http: httpx.AsyncClient

    @property
    def webhook_url(self) -> str:
        return f"{self.gateway.url}/__gateway/webhooks/clerk"

    async def bapi(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.clerk.secret_key}"}
        return await self.http.request(method, f"{self.clerk.bapi_url}/v1{path}", headers=headers, **kwargs)

    async def delivered(self, event_type: str, count: int = 1) -> list[Delivery]:
        """Wait (off the event loop, which serves the gateway) until `count` such events got a 2xx."""

        def arrived(deliveries: list[Delivery]) -> bool:
            return sum(d.event_type == event_type and d.status == "delivered" for d in deliveries) >= count

        deliveries = await asyncio.to_thread(self.clerk.webhooks.wait_for, arrived, 10.0)
        return [d for d in deliveries if d.event_type == event_type]


@pytest.fixture
async def stack(
    start_emulator: Callable[..., EmulatorServer], upstream: EchoUpstream, clock: FakeClock
) -> AsyncIterator[Stack]:
    clerk = start_emulator(token_lifetime=60, webhook_secret=SECRET)
    settings = gateway_settings(clerk, upstream.url, CLERK_WEBHOOK_SIGNING_SECRET=SECRET)
    app = create_app(settings, clock=clock)
    async with contextlib.AsyncExitStack() as exit_stack:
        url = await exit_stack.enter_async_context(serving_asgi(app, lifespan="on"))
        http = await exit_stack.enter_async_context(httpx.AsyncClient(timeout=20))
        running = Stack(clerk, RunningGateway(url, HOST, settings), app.state.runtime, http)
        # The gateway's port is known only now: point the emulator at it through its control endpoint.
        added = await running.bapi("POST", "/__emulator/webhooks", json={"url": running.webhook_url})
        assert added.status_code == 200 and added.json()["endpoints"] == [running.webhook_url]
        yield running


def session_of(browser: Browser) -> dict[str, Any]:
    token = browser.cookie(HOST, "__session")
    assert token, "signed in"
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def every_entrance(stack: Stack, browser: Browser) -> dict[str, tuple[int, str | None]]:
    """(status, reason) of one request through each entrance, with the browser's cookies (the page last:
    a sign-in redirect sets the loop guard's cookie, and other cookies are other memo entries)."""
    gateway = stack.gateway
    api = await browser.fetch("GET", f"{gateway.origin}/api/items")
    cookie = browser.cookie_header("app.test")
    forwarded = {"x-forwarded-method": "GET", "x-forwarded-proto": "http", "x-forwarded-host": HOST,
                 "x-forwarded-uri": "/api/items", "cookie": cookie, **FETCH}  # fmt: skip
    auth = await stack.http.get(f"{gateway.url}/__gateway/auth", headers=forwarded)
    real = urlsplit(gateway.url)
    try:
        async with websockets.connect(
            f"ws://{HOST}/_/ws", host=real.hostname, port=real.port, additional_headers={"cookie": cookie}
        ) as connection:
            await connection.send("hello")
            websocket: tuple[int, str | None] = (101, None) if await connection.recv() == "hello" else (0, None)
    except websockets.exceptions.InvalidStatus as refused:
        websocket = (refused.response.status_code, refused.response.headers.get("x-clerk-auth-reason"))
    page = await browser.navigate(f"{gateway.origin}/dashboard", follow=False)

    def reason(response: httpx.Response) -> str | None:
        if response.headers.get("content-type", "").startswith("application/json") and response.status_code >= 400:
            return str(response.json().get("reason"))
        return response.headers.get("x-clerk-auth-reason")

    return {
        "proxy, a page": (page.status_code, page.headers.get("x-clerk-auth-reason")),
        "proxy, an API call": (api.status_code, reason(api)),
        "forward-auth": (auth.status_code, reason(auth)),
        "websocket": websocket,
    }


SIGNED_IN = {
    "proxy, a page": (200, None),
    "proxy, an API call": (200, None),
    "forward-auth": (200, None),
    "websocket": (101, None),
}
REVOKED = {
    "proxy, a page": (307, "session-revoked"),
    "proxy, an API call": (401, "session-revoked"),
    "forward-auth": (401, "session-revoked"),
    "websocket": (401, "session-revoked"),
}


async def test_a_session_revoked_through_the_backend_api_is_refused_at_every_entrance(
    stack: Stack, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(stack.gateway)
    await sign_in(browser, stack.gateway)
    assert await every_entrance(stack, browser) == SIGNED_IN
    assert await every_entrance(stack, browser) == SIGNED_IN, "the second round is answered from the memo"
    memo = stack.runtime.admission.memo
    assert memo is not None
    remembered = len(memo)
    session_id = session_of(browser)["sid"]

    revoked = await stack.bapi("POST", f"/sessions/{session_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    (delivery,) = await stack.delivered("session.revoked")
    assert delivery.url == stack.webhook_url and delivery.attempts == [{"attempt": 1, "status": 204}]

    answers = await every_entrance(stack, browser)
    assert answers == REVOKED
    page = await browser.navigate(f"{stack.gateway.origin}/dashboard", follow=False)
    assert page.headers["location"].startswith(stack.clerk.sign_in_url), "the sign-in redirect of any signed-out"
    assert page.headers["x-clerk-auth-status"] == "signed-out"
    assert len(memo) == remembered - 4, "the four remembered entrances' sessions were dropped, not answered"


async def test_signing_out_at_clerk_ends_the_session_here_too(
    stack: Stack, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(stack.gateway)
    await sign_in(browser, stack.gateway)
    session_id = session_of(browser)["sid"]
    assert await every_entrance(stack, browser) == SIGNED_IN
    dev_browser = browser.cookie(HOST, "__clerk_db_jwt")  # a development instance finds its client by it
    sign_out = f"{stack.clerk.public_url}/sign-out?redirect_url=http://{HOST}/public/bye&__clerk_db_jwt={dev_browser}"
    assert (await browser.navigate(sign_out, follow=False)).status_code == 303
    (delivery,) = await stack.delivered("session.ended")
    sent = delivery.event
    assert (sent["type"], sent["object"], sent["data"]["id"], sent["data"]["status"]) == (
        "session.ended", "event", session_id, "ended",
    )  # fmt: skip
    assert await every_entrance(stack, browser) == REVOKED


async def test_a_deleted_user_is_refused_in_every_session_and_cannot_refresh(
    stack: Stack, new_browser: Callable[..., Browser], clock: FakeClock
) -> None:
    browser = new_browser(stack.gateway)
    await sign_in(browser, stack.gateway, BOB)
    other_session = mint_token(stack.clerk, "user_bob")
    alice = new_browser(stack.gateway)
    await sign_in(alice, stack.gateway, ALICE)
    bearer = {"authorization": f"Bearer {other_session}", "accept": "application/json"}
    assert (await stack.http.get(f"{stack.gateway.url}/api/items", headers={**bearer, "host": HOST})).status_code == 200

    deleted = await stack.bapi("DELETE", "/users/user_bob")
    assert deleted.json() == {"object": "user", "id": "user_bob", "deleted": True}
    await stack.delivered("user.deleted")
    assert [d.event_type for d in stack.clerk.webhooks.deliveries()] == ["user.deleted"], "one event, as Clerk"

    assert await every_entrance(stack, browser) == REVOKED
    api = await stack.http.get(f"{stack.gateway.url}/api/items", headers={**bearer, "host": HOST})
    assert (api.status_code, api.json()["reason"]) == (401, "session-revoked"), "another session of the same user"
    assert await every_entrance(stack, alice) == SIGNED_IN, "other users are not affected"

    clock.advance(120)  # bob's tokens expire: the gateway asks Clerk to refresh, and Clerk refuses
    refreshed = await browser.fetch("GET", f"{stack.gateway.origin}/api/items")
    assert refreshed.status_code == 401
    assert refreshed.json()["reason"].startswith("session-token-expired-refresh-")
    assert (await stack.bapi("GET", "/users/user_bob")).status_code == 404


async def test_a_forged_webhook_changes_nothing(stack: Stack, new_browser: Callable[..., Browser]) -> None:
    browser = new_browser(stack.gateway)
    await sign_in(browser, stack.gateway)
    session_id = session_of(browser)["sid"]
    event = {"data": {"object": "session", "id": session_id}, "object": "event", "type": "session.revoked",
             "timestamp": int(time.time() * 1000), "instance_id": "ins_emulator"}  # fmt: skip
    body = json.dumps(event).encode()
    now = datetime.now(UTC)
    forger = Webhook("whsec_" + base64.b64encode(b"not-the-endpoints-signing-secret").decode())
    headers = {"svix-id": "msg_forged", "svix-timestamp": str(int(now.timestamp())),
               "svix-signature": forger.sign("msg_forged", now, body), "content-type": "application/json"}  # fmt: skip
    answer = await stack.http.post(stack.webhook_url, content=body, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (400, "webhook_signature_invalid")
    replayed = {**headers, "svix-signature": "v1,"}
    assert (await stack.http.post(stack.webhook_url, content=body, headers=replayed)).status_code == 400
    assert len(stack.runtime.revocations.deny_list) == 0
    assert await every_entrance(stack, browser) == SIGNED_IN


async def test_an_open_websocket_of_a_revoked_session_is_closed_and_another_sessions_stays_open(
    stack: Stack, new_browser: Callable[..., Browser]
) -> None:
    """A WebSocket is judged at its upgrade and lives on: a revocation ends it too, with 1008."""
    alice, bob = new_browser(stack.gateway), new_browser(stack.gateway)
    await sign_in(alice, stack.gateway, ALICE)
    await sign_in(bob, stack.gateway, BOB)
    real = urlsplit(stack.gateway.url)

    def connect(browser: Browser) -> Any:
        return websockets.connect(f"ws://{HOST}/_/ws", host=real.hostname, port=real.port,
                                  additional_headers={"cookie": browser.cookie_header("app.test")})  # fmt: skip

    async with connect(alice) as alices, connect(bob) as bobs:
        for connection in (alices, bobs):
            await connection.send("hello")
            assert await connection.recv() == "hello"
        assert len(stack.runtime.session_watch) == 2
        revoked = await stack.bapi("POST", f"/sessions/{session_of(alice)['sid']}/revoke")
        assert revoked.status_code == 200
        await stack.delivered("session.revoked")
        started = time.monotonic()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(alices.recv(), timeout=5)
        assert time.monotonic() - started < 1, "closed within a second of the webhook"
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "session-revoked")
        await bobs.send("still here")
        assert await bobs.recv() == "still here", "another session's connection is untouched"
        assert len(stack.runtime.session_watch) == 1
