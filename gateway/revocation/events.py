"""From a verified Clerk webhook event to what it means here: revocations and changes.

Clerk's events (`{"data": {...}, "object": "event", "type": "...", "timestamp": ms, ...}`):

| type                                                   | effect                                             |
|--------------------------------------------------------|----------------------------------------------------|
| `session.revoked`, `session.ended`, `session.removed`  | revoke the session `data.id`                       |
| `user.deleted`                                         | revoke the user `data.id`'s tokens issued until then (2) |
| `user.updated`                                         | user `data.id` changed                             |
| `organization.updated`, `organization.deleted`         | organization `data.id` changed                     |
| `organizationMembership.created/updated/deleted`       | the member and the organization changed (1)        |
| anything else                                          | none (acknowledged, not an error)                  |

(1) The user `data.public_user_data.user_id` and the organization `data.organization.id`.
(2) And the user changed: what caches knew of them goes.
No I/O; the time of an event is its `timestamp` (Clerk's clock), else the signature's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.revocation.changes import Change
from gateway.revocation.deny_list import Revocation

SESSION_ENDINGS = frozenset({"session.revoked", "session.ended", "session.removed"})
USER_CHANGES = frozenset({"user.updated"})
ORGANIZATION_CHANGES = frozenset({"organization.updated", "organization.deleted"})
MEMBERSHIP_CHANGES = frozenset(
    {"organizationMembership.created", "organizationMembership.updated", "organizationMembership.deleted"}
)


class EventError(Exception):
    """The body is not a Clerk event (or a known event lacks what it needs); `code` for the 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Effects:
    event_type: str
    revocations: tuple[Revocation, ...] = ()
    changes: tuple[Change, ...] = ()

    @property
    def ignored(self) -> bool:
        return not self.revocations and not self.changes

    def describe(self) -> list[str]:
        """For the log: `revoke session sess_…`, `changed user user_…` (ids, never secrets)."""
        return [f"revoke {item.kind} {item.subject_id}" for item in self.revocations] + [
            f"changed {item.kind} {item.subject_id}" for item in self.changes
        ]


def effects_of(body: bytes, *, signed_at: float, retention: float) -> Effects:
    """What the event in `body` does; raises `EventError` when it is not an event."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested past the parser's depth
        raise EventError("webhook_event_invalid", "The body is not JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not event["type"]:
        raise EventError("webhook_event_invalid", "The body is not a Clerk event (an object with a `type`).")
    event_type: str = event["type"]
    data = event.get("data")
    at = _event_time(event.get("timestamp"), signed_at)
    if event_type in SESSION_ENDINGS:
        session_id = _id(data, "id", event_type)
        return Effects(event_type, revocations=(Revocation("session", session_id, at, at + retention),))
    if event_type == "user.deleted":
        user_id = _id(data, "id", event_type)
        return Effects(
            event_type,
            revocations=(Revocation("user", user_id, at, at + retention),),
            changes=(Change("user", user_id, at),),  # and what was known of them goes too
        )
    if event_type in USER_CHANGES:
        return Effects(event_type, changes=(Change("user", _id(data, "id", event_type), at),))
    if event_type in ORGANIZATION_CHANGES:
        return Effects(event_type, changes=(Change("organization", _id(data, "id", event_type), at),))
    if event_type in MEMBERSHIP_CHANGES:
        user = _id(data.get("public_user_data") if isinstance(data, dict) else None, "user_id", event_type)
        organization = _id(data.get("organization") if isinstance(data, dict) else None, "id", event_type)
        return Effects(event_type, changes=(Change("user", user, at), Change("organization", organization, at)))
    return Effects(event_type)


def _id(data: Any, field: str, event_type: str) -> str:
    value = data.get(field) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise EventError("webhook_event_invalid", f"A `{event_type}` event without the id it is about (`{field}`).")
    return value


def _event_time(timestamp: Any, signed_at: float) -> float:
    """Clerk's `timestamp` is in milliseconds; without one (or a nonsense one) the signature's time."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool) and 0 < timestamp < 1e14:
        return timestamp / 1000
    return signed_at
