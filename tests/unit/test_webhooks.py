"""`POST /__gateway/webhooks/clerk`: only genuine, fresh, first deliveries of Clerk events take effect.

Each row is a request in and the whole answer out (status, `error` code), plus what reached the deny
list and the change listeners. Signed with `standardwebhooks` as Svix signs, on the wall clock the
library checks against.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from gateway.edge.app import create_app
from gateway.edge.runtime import EdgeRuntime
from gateway.revocation import Change, Revocation
from gateway.settings import SettingsError, load_settings
from tests.support.clerk import PK_TEST

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
PATH = "/__gateway/webhooks/clerk"
EVENT_MS = int(time.time() * 1000) // 1000 * 1000
"""Clerk's clock when the events happened: now, so that their revocations (kept an hour) are live."""


def an_event(event_type: str = "session.revoked", data: Any = None, **fields: Any) -> bytes:
    event = {
        "data": {"object": "session", "id": "sess_1", "user_id": "user_1", "status": "revoked"}
        if data is None
        else data,
        "object": "event",
        "type": event_type,
        "timestamp": EVENT_MS,
        "instance_id": "ins_1",
        **fields,
    }
    return json.dumps(event).encode()


def signed(
    body: bytes,
    *,
    secret: str = SECRET,
    message_id: str = "msg_1",
    at: float | None = None,
    prefix: str = "svix-",
    signed_body: bytes | None = None,
) -> dict[str, str]:
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        f"{prefix}id": message_id,
        f"{prefix}timestamp": str(int(when.timestamp())),
        f"{prefix}signature": Webhook(secret).sign(message_id, when, signed_body or body),
    }


@dataclass
class Gateway:
    client: httpx.AsyncClient
    runtime: EdgeRuntime
    changes: list[Change]

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(PATH, content=body, headers={"content-type": "application/json", **headers})

    def revocations(self) -> list[Revocation]:
        return self.runtime.revocations.deny_list.entries()


def settings(**environment: str) -> Any:
    return load_settings(
        None,
        {"CLERK_PUBLISHABLE_KEY": PK_TEST, "CLERK_SECRET_KEY": "sk_test_webhooks", **environment},
        require_upstream=False,
    )


async def a_gateway(**environment: str) -> AsyncIterator[Gateway]:
    app = create_app(settings(**environment))
    runtime: EdgeRuntime = app.state.runtime
    changes: list[Change] = []
    runtime.revocations.on_user_changed(changes.append)
    runtime.revocations.on_organization_changed(changes.append)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        yield Gateway(client, runtime, changes)
    await runtime.aclose()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async for running in a_gateway(CLERK_WEBHOOK_SIGNING_SECRET=SECRET):
        yield running


BODY = an_event()
REVOKED_AT = EVENT_MS / 1000


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "code"),
    [
        ("valid, Svix's header names", BODY, lambda: signed(BODY), 204, None),
        ("valid, Standard Webhooks' header names", BODY, lambda: signed(BODY, prefix="webhook-"), 204, None),
        ("another endpoint's secret", BODY, lambda: signed(BODY, secret=OTHER_SECRET), 400,
         "webhook_signature_invalid"),
        ("a tampered body", an_event(data={"id": "sess_other"}), lambda: signed(BODY), 400,
         "webhook_signature_invalid"),
        ("a timestamp six minutes old", BODY, lambda: signed(BODY, at=time.time() - 360), 400,
         "webhook_timestamp_too_old"),
        ("a timestamp six minutes ahead", BODY, lambda: signed(BODY, at=time.time() + 360), 400,
         "webhook_timestamp_too_new"),
        ("no signature headers", BODY, lambda: {}, 400, "webhook_signature_missing"),
        ("no svix-signature", BODY, lambda: {k: v for k, v in signed(BODY).items() if k != "svix-signature"}, 400,
         "webhook_signature_missing"),
        ("no svix-timestamp", BODY, lambda: {k: v for k, v in signed(BODY).items() if k != "svix-timestamp"}, 400,
         "webhook_signature_missing"),
        ("a timestamp that is not a number", BODY, lambda: {**signed(BODY), "svix-timestamp": "soon"}, 400,
         "webhook_timestamp_invalid"),
        ("a timestamp of more digits than a float holds", BODY,
         lambda: {**signed(BODY), "svix-timestamp": "9" * 400}, 400, "webhook_timestamp_invalid"),
        ("a signature of other headers' names mixed in", BODY,
         lambda: {"svix-id": "msg_1",
                  **{k: v for k, v in signed(BODY, prefix="webhook-").items() if k != "webhook-id"}},
         400, "webhook_signature_missing"),
        ("signed, but not JSON", b"{not json", lambda: signed(b"{not json"), 400, "webhook_event_invalid"),
        ("signed JSON that is not an event", b"[1, 2]", lambda: signed(b"[1, 2]"), 400, "webhook_event_invalid"),
        ("signed JSON nested deeper than a parser goes", b"[" * 100_000, lambda: signed(b"[" * 100_000), 400,
         "webhook_event_invalid"),
        ("a known event without its id", an_event(data={"object": "session"}),
         lambda: signed(an_event(data={"object": "session"})), 400, "webhook_event_invalid"),
        ("an event type the gateway has no use for", an_event("email.created", data={"id": "ema_1"}),
         lambda: signed(an_event("email.created", data={"id": "ema_1"})), 200, None),
    ],
)  # fmt: skip
async def test_signature_and_event_table(
    gateway: Gateway, name: str, body: bytes, headers: Callable[[], dict[str, str]], status: int, code: str | None
) -> None:
    """`headers` are signed when the test runs: signed at collection, they could be stale by then."""
    response = await gateway.post(body, headers())
    assert response.status_code == status, (name, response.text)
    assert response.headers["cache-control"] == "no-store", name
    if code is not None:
        assert response.json()["error"] == code, name
        assert response.json()["message"], name
    applied = [Revocation("session", "sess_1", REVOKED_AT, REVOKED_AT + 3600)] if status == 204 else []
    assert gateway.revocations() == applied, name


async def test_an_unknown_event_is_acknowledged_and_changes_nothing(gateway: Gateway) -> None:
    body = an_event("user.created", data={"id": "user_9"})
    response = await gateway.post(body, signed(body))
    assert (response.status_code, response.json()) == (200, {"status": "ignored", "type": "user.created"})
    assert gateway.revocations() == [] and gateway.changes == []


async def test_a_redelivered_message_is_acknowledged_and_not_applied_twice(gateway: Gateway) -> None:
    body = an_event("user.updated", data={"id": "user_1"})
    first = await gateway.post(body, signed(body, message_id="msg_dup"))
    again = await gateway.post(body, signed(body, message_id="msg_dup", prefix="webhook-"))
    assert first.status_code == 204
    assert (again.status_code, again.json()) == (200, {"status": "duplicate", "type": "user.updated"})
    assert gateway.changes == [Change("user", "user_1", REVOKED_AT)], "listeners told once"
    other = await gateway.post(body, signed(body, message_id="msg_other"))
    assert other.status_code == 204 and len(gateway.changes) == 2, "another message id is another delivery"


@pytest.mark.parametrize(
    ("event_type", "data", "revocations", "changes"),
    [
        ("session.ended", {"id": "sess_2", "user_id": "user_1"},
         [Revocation("session", "sess_2", REVOKED_AT, REVOKED_AT + 3600)], []),
        ("session.removed", {"id": "sess_3", "user_id": "user_1"},
         [Revocation("session", "sess_3", REVOKED_AT, REVOKED_AT + 3600)], []),
        ("user.deleted", {"object": "user", "id": "user_1", "deleted": True},
         [Revocation("user", "user_1", REVOKED_AT, REVOKED_AT + 3600)], [Change("user", "user_1", REVOKED_AT)]),
        ("user.updated", {"object": "user", "id": "user_1"}, [], [Change("user", "user_1", REVOKED_AT)]),
        ("organization.updated", {"object": "organization", "id": "org_1"}, [],
         [Change("organization", "org_1", REVOKED_AT)]),
        ("organization.deleted", {"object": "organization", "id": "org_1", "deleted": True}, [],
         [Change("organization", "org_1", REVOKED_AT)]),
        ("organizationMembership.updated",
         {"object": "organization_membership", "organization": {"id": "org_1"},
          "public_user_data": {"user_id": "user_1"}},
         [], [Change("user", "user_1", REVOKED_AT), Change("organization", "org_1", REVOKED_AT)]),
    ],
)  # fmt: skip
async def test_what_each_event_does(
    gateway: Gateway, event_type: str, data: Any, revocations: list[Revocation], changes: list[Change]
) -> None:
    body = an_event(event_type, data=data)
    response = await gateway.post(body, signed(body))
    assert response.status_code == 204, response.text
    assert gateway.revocations() == revocations
    assert gateway.changes == changes


async def test_without_a_timestamp_the_event_dates_from_its_signature(gateway: Gateway) -> None:
    now = int(time.time())
    body = json.dumps({"type": "user.deleted", "object": "event", "data": {"id": "user_1"}}).encode()
    response = await gateway.post(body, signed(body, at=now))
    assert response.status_code == 204
    assert gateway.revocations() == [Revocation("user", "user_1", now, now + 3600)]


async def test_the_retention_setting_bounds_an_entrys_life() -> None:
    async for gateway in a_gateway(CLERK_WEBHOOK_SIGNING_SECRET=SECRET, GATEWAY_REVOCATION_RETENTION="90"):
        now = int(time.time())  # an event of now: one of import time may be over 90 s old when this runs
        body = an_event(timestamp=now * 1000)
        await gateway.post(body, signed(body))
        assert gateway.revocations() == [Revocation("session", "sess_1", now, now + 90)]


@pytest.mark.parametrize(
    ("name", "headers_for"),
    [
        ("declared too long", lambda body: {"content-length": str(len(body))}),
        ("streamed too long (chunked)", None),
    ],
)
async def test_a_body_over_one_mebibyte_is_refused_with_413(gateway: Gateway, name: str, headers_for: Any) -> None:
    body = an_event("user.updated", data={"id": "user_1", "padding": "x" * (1024 * 1024)})
    headers = signed(body)
    if headers_for is None:

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 65536):
                yield body[start : start + 65536]

        response = await gateway.client.post(PATH, content=chunks(), headers=headers)
    else:
        response = await gateway.post(body, {**headers, **headers_for(body)})
    assert response.status_code == 413, name
    assert response.json()["error"] == "webhook_body_too_large", name
    assert gateway.changes == [], name


async def test_without_a_signing_secret_the_endpoint_is_not_there() -> None:
    async for gateway in a_gateway():
        response = await gateway.post(BODY, signed(BODY))
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
        assert "CLERK_WEBHOOK_SIGNING_SECRET" in response.json()["message"]
        assert gateway.revocations() == []


# An app on an instance of its own, whose webhook endpoint Clerk signs with OTHER_SECRET.
OPS_OF_ITS_OWN_INSTANCE = json.dumps([{
    "name": "ops", "hosts": ["ops.test"], "upstream": "http://127.0.0.1:9",
    "clerk": {"publishable_key": PK_TEST, "secret_key": "sk_test_ops", "webhook_signing_secret": OTHER_SECRET},
}])  # fmt: skip


async def test_an_app_of_its_own_instance_has_its_webhooks_applied_with_its_own_secret() -> None:
    """Clerk signs each instance's endpoint with that endpoint's secret: the app's own instance's
    revocations must take effect too, not be refused as another endpoint's."""
    async for gateway in a_gateway(CLERK_WEBHOOK_SIGNING_SECRET=SECRET, GATEWAY_APPS=OPS_OF_ITS_OWN_INSTANCE):
        own = an_event(data={"id": "sess_ops"})
        response = await gateway.post(own, signed(own, secret=OTHER_SECRET, message_id="msg_ops"))
        assert response.status_code == 204, response.text
        shared = await gateway.post(BODY, signed(BODY))
        assert shared.status_code == 204, response.text
        forged = an_event(data={"id": "sess_forged"})
        third = "whsec_" + base64.b64encode(b"a third secret, nobody's own xx").decode()
        refused = await gateway.post(forged, signed(forged, secret=third, message_id="msg_forged"))
        assert (refused.status_code, refused.json()["error"]) == (400, "webhook_signature_invalid")
        assert {(item.kind, item.subject_id) for item in gateway.revocations()} == {
            ("session", "sess_ops"),
            ("session", "sess_1"),
        }


async def test_an_app_of_its_own_instance_alone_opens_the_endpoint() -> None:
    async for gateway in a_gateway(GATEWAY_APPS=OPS_OF_ITS_OWN_INSTANCE):
        response = await gateway.post(BODY, signed(BODY, secret=OTHER_SECRET))
        assert response.status_code == 204, response.text
        assert gateway.revocations() == [Revocation("session", "sess_1", REVOKED_AT, REVOKED_AT + 3600)]


async def test_only_post_is_accepted(gateway: Gateway) -> None:
    response = await gateway.client.get(PATH)
    assert (response.status_code, response.json()["error"], response.headers["allow"]) == (
        405,
        "method_not_allowed",
        "POST",
    )


async def test_the_endpoint_is_screened_like_every_entrance() -> None:
    async for gateway in a_gateway(CLERK_WEBHOOK_SIGNING_SECRET=SECRET, GATEWAY_ALLOWED_HOSTS="other.test"):
        response = await gateway.post(BODY, signed(BODY))
        assert (response.status_code, response.json()["error"]) == (421, "host_not_allowed")
        assert gateway.revocations() == []


async def test_a_feed_that_fails_is_a_503_never_a_500(gateway: Gateway) -> None:
    async def broken(revocation: Revocation) -> None:
        raise ConnectionError("the shared store is down")

    gateway.runtime.revocations.feed.publish = broken  # type: ignore[method-assign]
    response = await gateway.post(BODY, signed(BODY))
    assert (response.status_code, response.json()["error"]) == (503, "webhook_not_applied")


async def test_a_delivery_that_failed_is_applied_when_delivered_again(gateway: Gateway) -> None:
    """The 503 asks Clerk to deliver again: that redelivery is not a duplicate of what never took effect."""
    feed = gateway.runtime.revocations.feed
    working = feed.publish

    async def broken(revocation: Revocation) -> None:
        raise ConnectionError("the shared store is down")

    feed.publish = broken  # type: ignore[method-assign]
    failed = await gateway.post(BODY, signed(BODY, message_id="msg_retry"))
    assert (failed.status_code, failed.json()["error"]) == (503, "webhook_not_applied")
    feed.publish = working  # type: ignore[method-assign]
    again = await gateway.post(BODY, signed(BODY, message_id="msg_retry"))
    assert again.status_code == 204, again.text
    assert gateway.revocations() == [Revocation("session", "sess_1", REVOKED_AT, REVOKED_AT + 3600)]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("sk_test_abc", "starting with `whsec_`"),
        ("whsec_not base64!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "too short"),
    ],
)
def test_check_config_refuses_a_malformed_signing_secret(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings(CLERK_WEBHOOK_SIGNING_SECRET=value)
    (line,) = [line for line in raised.value.problems if line.startswith("CLERK_WEBHOOK_SIGNING_SECRET")]
    assert problem in line
    assert value not in line, "a secret is never echoed"


def test_the_signing_secret_never_shows() -> None:
    shown = repr(settings(CLERK_WEBHOOK_SIGNING_SECRET=SECRET))
    assert SECRET not in shown
