"""Listeners told that a user or an organization changed, so caches of who someone is can let go.

Clerk's `user.updated`, `organizationMembership.*` and `organization.updated/deleted` webhooks end
here. Registering returns a function that unregisters, so a cache replaced on reload can leave.
A listener that raises is logged and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("gateway.revocation")

ChangeKind = Literal["user", "organization"]


@dataclass(frozen=True, slots=True)
class Change:
    """This user (or organization) changed at `changed_at` (seconds, Clerk's clock)."""

    kind: ChangeKind
    subject_id: str
    changed_at: float


ChangeListener = Callable[[Change], None]


class ChangeListeners:
    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[ChangeKind, list[ChangeListener]] = {"user": [], "organization": []}

    def on_user_changed(self, listener: ChangeListener) -> Callable[[], None]:
        return self._add("user", listener)

    def on_organization_changed(self, listener: ChangeListener) -> Callable[[], None]:
        return self._add("organization", listener)

    def notify(self, change: Change) -> None:
        for listener in tuple(self._listeners[change.kind]):
            try:
                listener(change)
            except Exception:
                logger.exception("a %s-changed listener failed", change.kind)

    def _add(self, kind: ChangeKind, listener: ChangeListener) -> Callable[[], None]:
        listeners = self._listeners[kind]
        listeners.append(listener)

        def remove() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return remove
