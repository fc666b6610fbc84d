"""What the gate learned about a request, left on the ASGI scope for access logs and metrics.

The gate fills it in; the observability layer around the app reads it after the response. Plain
attributes, no behaviour: the hot path pays one small object per request.
"""

from __future__ import annotations

from typing import Any, Literal

RECORD_KEY = "gateway.record"

RouteClass = Literal["proxy", "frontend_api", "gateway", "websocket"]


class RequestRecord:
    __slots__ = ("decision", "reason", "refreshed", "route_class", "upstream_error", "upstream_seconds", "user_id")

    def __init__(self, route_class: RouteClass = "proxy") -> None:
        self.route_class: RouteClass = route_class
        self.decision: str = ""
        self.reason: str = ""
        self.user_id: str | None = None
        self.refreshed: bool = False
        self.upstream_seconds: float | None = None
        self.upstream_error: str | None = None


def record_of(scope: dict[str, Any]) -> RequestRecord:
    """The scope's record, created on first use."""
    record = scope.get(RECORD_KEY)
    if record is None:
        record = scope[RECORD_KEY] = RequestRecord()
    assert isinstance(record, RequestRecord)
    return record
