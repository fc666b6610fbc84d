"""The emulator's webhooks: Clerk's events, Svix-signed, delivered off the request path with retries."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from gateway.emulator.server import EmulatorServer
from gateway.emulator.webhooks import Delivery
from tests.emulator.flows import bapi_headers, dev_sign_in
from tests.emulator.support import OpenAPISpec

SECRET = "whsec_" + base64.b64encode(b"emulator-webhook-tests-secret-32").decode()


class Receiver:
    """A real HTTP endpoint on loopback that records each POST and answers the next scripted status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(statuses: list[int] | None = None) -> Receiver:
        started.append(Receiver(list(statuses or [])))
        return started[-1]

    yield start
    for running in started:
        running.close()


def verified(headers: dict[str, str], body: bytes, secret: str = SECRET) -> Any:
    """What a receiver does: Svix's headers, checked by the Standard Webhooks library."""
    names = {f"webhook-{name}": headers[f"svix-{name}"] for name in ("id", "timestamp", "signature")}
    return Webhook(secret).verify(body, names)


def delivered(clerk: EmulatorServer, event_type: str, count: int = 1) -> list[Delivery]:
    def arrived(deliveries: list[Delivery]) -> bool:
        return sum(d.event_type == event_type and d.status != "pending" for d in deliveries) >= count

    return [d for d in clerk.webhooks.wait_for(arrived, 10.0) if d.event_type == event_type]


def test_a_revoked_session_is_announced_signed_and_retried_until_accepted(
    start_emulator: Callable[..., EmulatorServer], receiver: Callable[..., Receiver], http: httpx.Client
) -> None:
    endpoint = receiver([503])
    clerk = start_emulator(webhook_urls=(endpoint.url,), webhook_secret=SECRET)
    _, sign_in = dev_sign_in(clerk, http)
    session_id = sign_in["response"]["created_session_id"]
    revoked = http.post(f"{clerk.bapi_url}/v1/sessions/{session_id}/revoke", headers=bapi_headers(clerk))
    assert revoked.status_code == 200

    (delivery,) = delivered(clerk, "session.revoked")
    assert (delivery.status, [a["status"] for a in delivery.attempts]) == ("delivered", [503, 204])
    (first_headers, _), (headers, body) = endpoint.received
    assert first_headers["svix-id"] == headers["svix-id"] == delivery.message_id, "one message id, every attempt"
    event = verified(headers, body)
    assert (event["type"], event["object"], event["instance_id"]) == ("session.revoked", "event", "ins_emulator")
    assert (event["data"]["object"], event["data"]["id"], event["data"]["status"]) == ("session", session_id,
                                                                                       "revoked")  # fmt: skip
    assert event["timestamp"] == pytest.approx(clerk.state.clock() * 1000, abs=60_000)
    with pytest.raises(Exception, match="signature"):
        verified(headers, body, "whsec_" + base64.b64encode(b"some-other-endpoint-secret-here!").decode())
    state = http.get(f"{clerk.bapi_url}/v1/__emulator/state", headers=bapi_headers(clerk)).json()["webhooks"]
    assert state["endpoints"] == [endpoint.url] and state["signing_secret"] == SECRET
    assert state["deliveries"][0]["attempts"] == [{"attempt": 1, "status": 503}, {"attempt": 2, "status": 204}]


@pytest.mark.parametrize(("path", "event_type"), [("end", "session.ended"), ("remove", "session.removed")])
def test_signing_out_through_the_frontend_api_is_announced(
    start_emulator: Callable[..., EmulatorServer],
    receiver: Callable[..., Receiver],
    http: httpx.Client,
    path: str,
    event_type: str,
) -> None:
    clerk = start_emulator(webhook_secret=SECRET)
    endpoint = receiver()
    control = f"{clerk.bapi_url}/v1/__emulator/webhooks"
    added = http.post(control, headers=bapi_headers(clerk), json={"url": endpoint.url})
    assert added.status_code == 200
    token, sign_in = dev_sign_in(clerk, http)
    session_id = sign_in["response"]["created_session_id"]
    ended = http.post(f"{clerk.fapi_url}/v1/client/sessions/{session_id}/{path}", params={"__clerk_db_jwt": token})
    assert ended.status_code == 200
    delivered(clerk, event_type)
    (headers, body), = endpoint.received  # fmt: skip
    assert (verified(headers, body)["type"], verified(headers, body)["data"]["id"]) == (event_type, session_id)
    http.post(f"{clerk.fapi_url}/v1/client/sessions/{session_id}/end", params={"__clerk_db_jwt": token})
    assert [d.event_type for d in clerk.webhooks.deliveries()] == [event_type], "an ended session ends once"


def test_deleting_a_user_answers_the_deleted_object_ends_their_sessions_and_is_announced_once(
    start_emulator: Callable[..., EmulatorServer],
    receiver: Callable[..., Receiver],
    http: httpx.Client,
    bapi_openapi: OpenAPISpec,
) -> None:
    endpoint = receiver()
    clerk = start_emulator(webhook_urls=(endpoint.url,), webhook_secret=SECRET)
    token, sign_in = dev_sign_in(clerk, http, "bob@example.com", "bob-password")
    session_id = sign_in["response"]["created_session_id"]
    base, headers = clerk.bapi_url, bapi_headers(clerk)

    deleted = http.delete(f"{base}/v1/users/user_bob", headers=headers)
    assert bapi_openapi.validate_response("/users/{user_id}", "delete", deleted) == {
        "object": "user", "id": "user_bob", "deleted": True,
    }  # fmt: skip
    (delivery,) = delivered(clerk, "user.deleted")
    (sent_headers, body), = endpoint.received  # fmt: skip
    assert verified(sent_headers, body)["data"] == {"object": "user", "id": "user_bob", "deleted": True}
    assert delivery.status == "delivered"
    assert [d.event_type for d in clerk.webhooks.deliveries()] == ["user.deleted"]

    assert clerk.state.session(session_id).status == "revoked"  # type: ignore[union-attr]
    refresh = http.post(f"{base}/v1/sessions/{session_id}/tokens", headers=headers)
    assert refresh.status_code == 401, "no new token for a deleted user's session"
    assert http.get(f"{base}/v1/users/user_bob", headers=headers).status_code == 404
    assert http.delete(f"{base}/v1/users/user_bob", headers=headers).status_code == 404
    again = http.post(
        f"{clerk.fapi_url}/v1/client/sign_ins",
        params={"__clerk_db_jwt": token},
        data={"strategy": "password", "identifier": "bob@example.com", "password": "bob-password"},
    )
    assert (again.status_code, again.json()["errors"][0]["code"]) == (422, "form_identifier_not_found")


def test_an_unreachable_endpoint_is_retried_then_marked_failed(
    start_emulator: Callable[..., EmulatorServer], receiver: Callable[..., Receiver], http: httpx.Client
) -> None:
    endpoint = receiver([500, 500, 500, 500])
    clerk = start_emulator(webhook_urls=(endpoint.url,), webhook_secret=SECRET)
    _, sign_in = dev_sign_in(clerk, http)
    http.post(
        f"{clerk.bapi_url}/v1/sessions/{sign_in['response']['created_session_id']}/revoke",
        headers=bapi_headers(clerk),
    )
    (delivery,) = delivered(clerk, "session.revoked")
    assert delivery.status == "failed"
    assert [attempt["status"] for attempt in delivery.attempts] == [500, 500, 500, 500]


def test_without_endpoints_nothing_is_sent_and_the_secret_is_still_shown(
    start_emulator: Callable[..., EmulatorServer], http: httpx.Client
) -> None:
    clerk = start_emulator()
    _, sign_in = dev_sign_in(clerk, http)
    http.post(
        f"{clerk.bapi_url}/v1/sessions/{sign_in['response']['created_session_id']}/revoke",
        headers=bapi_headers(clerk),
    )
    state = http.get(f"{clerk.bapi_url}/v1/__emulator/state", headers=bapi_headers(clerk)).json()["webhooks"]
    assert state["endpoints"] == [] and state["deliveries"] == []
    assert state["signing_secret"].startswith("whsec_") and len(base64.b64decode(state["signing_secret"][6:])) == 24
