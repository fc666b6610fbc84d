"""Clerk's webhooks as Svix delivers them: signed, sent off the request path, retried with backoff.

One message per event (`msg_…`), the same id to every endpoint and on every attempt; each attempt is
signed afresh (`svix-id`, `svix-timestamp` of the wall clock, as Svix signs, `svix-signature`) with the
`standardwebhooks` library under the endpoint secret (`whsec_…`). The payload is Clerk's:
`{"data": …, "object": "event", "type": …, "timestamp": ms, "instance_id": …}`, its `timestamp` from
the emulator's clock (the one tokens' `iat` come from). Deliveries and every attempt are kept for
`/v1/__emulator/state` and for tests (`wait_for`), and each attempt is logged.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from gateway.emulator.clock import Clock
from gateway.emulator.ids import IdFactory

logger = logging.getLogger("gateway.emulator.webhooks")

BACKOFF = (0.1, 0.5, 2.0)
"""Seconds before each retry: four attempts in all, as Svix retries a failing endpoint (faster here)."""
ATTEMPT_TIMEOUT = 5.0


def new_signing_secret() -> str:
    """A random endpoint secret, in the shape Clerk's dashboard shows (`whsec_` + base64 of 24 bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def checked_signing_secret(secret: str) -> str:
    """`secret` if it is `whsec_` and base64 of at least 16 bytes, as Clerk's are; else ValueError."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True) if secret.startswith("whsec_") else b""
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError("--webhook-secret: expected whsec_ and the base64 of at least 16 bytes")
    return secret


@dataclass(slots=True)
class Delivery:
    message_id: str
    event_type: str
    url: str
    event: dict[str, Any]
    """The payload sent (and signed)."""
    status: str = "pending"
    """`pending`, `delivered` (a 2xx) or `failed` (every attempt refused or unreachable)."""
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "type": self.event_type,
            "url": self.url,
            "status": self.status,
            "attempts": list(self.attempts),
            "event": self.event,
        }


@dataclass(frozen=True, slots=True)
class _Job:
    delivery: Delivery
    body: bytes


class WebhookSender:
    """Endpoints (given at start or added later through `/v1/__emulator/webhooks`) and a delivery thread."""

    def __init__(
        self,
        *,
        instance_id: str,
        clock: Clock,
        ids: IdFactory,
        urls: Sequence[str] = (),
        secret: str | None = None,
        backoff: Sequence[float] = BACKOFF,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.instance_id = instance_id
        self.secret = checked_signing_secret(secret) if secret else new_signing_secret()
        self._signer = Webhook(self.secret)
        self._clock = clock
        self._ids = ids
        self._backoff = tuple(backoff)
        self._wall_clock = wall_clock
        self._urls: list[str] = list(urls)
        self._deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- endpoints ---------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        with self._changed:
            return list(self._urls)

    def add_url(self, url: str) -> None:
        with self._changed:
            if url not in self._urls:
                self._urls.append(url)

    # -- sending -----------------------------------------------------------------------------

    def send(self, event_type: str, data: dict[str, Any]) -> str | None:
        """Queue one event to every endpoint; returns its message id (None without endpoints)."""
        urls = self.urls
        if not urls:
            return None
        message_id = self._ids.new("msg")
        event = {
            "data": data,
            "object": "event",
            "type": event_type,
            "timestamp": int(self._clock() * 1000),
            "instance_id": self.instance_id,
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        self._ensure_thread()
        for url in urls:
            delivery = Delivery(message_id, event_type, url, event)
            with self._changed:
                self._deliveries.append(delivery)
            self._jobs.put(_Job(delivery, body))
        return message_id

    def sign(self, message_id: str, body: bytes) -> dict[str, str]:
        """Svix's three headers for one attempt."""
        now = self._wall_clock()
        return {
            "svix-id": message_id,
            "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": self._signer.sign(message_id, now, body),
        }

    def deliveries(self) -> list[Delivery]:
        with self._changed:
            return list(self._deliveries)

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 10.0) -> list[Delivery]:
        """Block until `predicate(deliveries)` holds (re-checked on every attempt's end); for tests."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self._deliveries)), timeout):
                raise TimeoutError(f"webhook deliveries did not get there in {timeout} s: {self._deliveries!r}")
            return list(self._deliveries)

    def snapshot(self) -> dict[str, Any]:
        with self._changed:
            return {
                "endpoints": list(self._urls),
                "signing_secret": self.secret,
                "deliveries": [delivery.as_json() for delivery in self._deliveries],
            }

    def close(self) -> None:
        self._stopping.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=ATTEMPT_TIMEOUT + 1)
            self._thread = None

    # -- the delivery thread -----------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._changed:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="clerk-emulator-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=ATTEMPT_TIMEOUT, follow_redirects=False) as client:
            while (job := self._jobs.get()) is not None:
                self._deliver(client, job)

    def _deliver(self, client: httpx.Client, job: _Job) -> None:
        delivery = job.delivery
        for attempt, delay in enumerate((0.0, *self._backoff), start=1):
            if delay and self._stopping.wait(delay):
                break
            headers = {**self.sign(delivery.message_id, job.body), "content-type": "application/json"}
            try:
                response = client.post(delivery.url, content=job.body, headers=headers)
                outcome: dict[str, Any] = {"attempt": attempt, "status": response.status_code}
            except httpx.HTTPError as error:
                outcome = {"attempt": attempt, "error": type(error).__name__}
            ok = 200 <= outcome.get("status", 0) < 300
            logger.info(
                "webhook %s %s to %s, attempt %d: %s",
                delivery.event_type,
                delivery.message_id,
                delivery.url,
                attempt,
                outcome.get("status", outcome.get("error")),
            )
            with self._changed:
                delivery.attempts.append(outcome)
                if ok:
                    delivery.status = "delivered"
                elif attempt == len(self._backoff) + 1:
                    delivery.status = "failed"
                self._changed.notify_all()
            if ok:
                return
        with self._changed:
            if delivery.status == "pending":
                delivery.status = "failed"
            self._changed.notify_all()
