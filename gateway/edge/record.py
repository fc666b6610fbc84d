"""What the gate learned about a request, left on the ASGI scope for access logs and metrics.

The gate fills it in; the observability layer around the app reads it after the response. Plain
attributes, no behaviour: the hot path pays one small object per request.
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.asgi_types import Send
from gateway.clerk.decide import AuthState
from gateway.edge.outcomes import Deny, Outcome

RECORD_KEY = "gateway.record"

RouteClass = Literal["proxy", "frontend_api", "gateway", "websocket"]


class RequestRecord:
    __slots__ = (
        "app",
        "decision",
        "loop",
        "reason",
        "request_id",
        "route_class",
        "status",
        "upstream_error",
        "upstream_seconds",
        "user_id",
    )

    def __init__(self, route_class: RouteClass = "proxy", request_id: bytes | None = None) -> None:
        self.route_class: RouteClass = route_class
        self.request_id = request_id
        """Set when the gate answers itself: it then adds `X-Request-Id` and fills `status` (no send wrapper)."""
        self.status = 0
        self.decision: str = ""
        self.reason: str = ""
        self.user_id: str | None = None
        self.upstream_seconds: float | None = None
        self.upstream_error: str | None = None
        self.app = ""
        """The name of the app the request was for ("" before one is chosen, or when none is)."""
        self.loop: str | None = None
        """The cause of a redirect loop the gate stopped (`loops.Loop.cause`)."""


REQUEST_ID = b"x-request-id"


def stamp(record: RequestRecord, headers: list[tuple[bytes, bytes]], status: int) -> list[tuple[bytes, bytes]]:
    """For answers the gate sends itself: note the status, add `X-Request-Id` (when it is the gate's job)."""
    record.status = status
    if record.request_id is not None:
        headers.append((REQUEST_ID, record.request_id))
    return headers


def stamping(send: Send, record: RequestRecord, request_id: bytes) -> Send:
    """A send that stamps the response start with `X-Request-Id` and notes the status (101 for a
    WebSocket), for answers built by code that does not stamp them itself."""

    async def stamped(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            record.status = message["status"]
            message["headers"] = [*message.get("headers", ()), (REQUEST_ID, request_id)]
        elif kind == "websocket.accept":
            record.status = 101
        await send(message)

    return stamped


def record_of(scope: dict[str, Any]) -> RequestRecord:
    """The scope's record, created on first use."""
    record = scope.get(RECORD_KEY)
    if record is None:
        record = scope[RECORD_KEY] = RequestRecord()
    assert isinstance(record, RequestRecord)
    return record


def note_outcome(record: RequestRecord, outcome: Outcome) -> None:
    """What the access log and the metrics say of the decision."""
    state: AuthState | None = outcome.state
    if state is None:
        assert isinstance(outcome, Deny)
        record.decision, record.reason = "refused", outcome.code
        return
    record.decision = state.status
    record.reason = state.reason
    if outcome.row == "redirect-loop" and isinstance(outcome, Deny) and outcome.extra:
        record.loop = outcome.extra["cause"]
    signed_in = state.status == "signed-in"
    if signed_in and state.machine is not None:
        record.user_id = state.machine.subject
    else:
        record.user_id = state.claims.user_id if signed_in and state.claims is not None else None
