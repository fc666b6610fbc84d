"""What a runtime holds for revocation, in one value a configuration reload hands to the next runtime."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.revocation.changes import ChangeListener, ChangeListeners
from gateway.revocation.deny_list import DenyList
from gateway.revocation.feed import LocalFeed, RevocationFeed
from gateway.revocation.watch import SessionWatch


@dataclass(frozen=True, slots=True)
class Revocations:
    deny_list: DenyList
    """Asked by admission on every signed-in request."""
    feed: RevocationFeed
    """Published to by the webhook endpoint; delivers to `deny_list` and `listeners`."""
    listeners: ChangeListeners
    retention: float
    """Seconds an entry is kept: at least the longest session-token lifetime plus clock skew."""
    sessions: SessionWatch
    """The open WebSockets of sessions, process-wide: one opened before a reload is still ended after it."""

    def on_user_changed(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener` when a user changes (updated, membership changed); returns the unregister."""
        return self.listeners.on_user_changed(listener)

    def on_organization_changed(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener` when an organization changes (updated, deleted, memberships)."""
        return self.listeners.on_organization_changed(listener)


def local_revocations(*, retention: float, clock: Callable[[], float] = time.time) -> Revocations:
    """A DenyList, listeners and a LocalFeed for one process."""
    deny_list = DenyList(clock=clock)
    listeners = ChangeListeners()
    feed = LocalFeed(deny_list, listeners, clock=clock)
    return Revocations(deny_list, feed, listeners, retention, SessionWatch(deny_list))
