"""How revocations and changes travel from the webhook endpoint to every DenyList and listener.

The webhook endpoint talks only to a `RevocationFeed`; the hot path only to the `DenyList`. `LocalFeed`
serves one process: it applies straight to its DenyList and listeners and remembers message ids in a
TTL cache. A shared feed (e.g. over Redis) keeps the same protocol and also delivers what one replica
heard to the others, and de-duplicates message ids across them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TLRUCache

from gateway.revocation.changes import Change, ChangeListeners
from gateway.revocation.deny_list import DenyList, Revocation


class RevocationFeed(Protocol):
    async def start(self) -> None:
        """Open what needs the event loop (a connection, a subscription); a second call does nothing.

        A runtime that takes over a feed on reload starts it again, so this must be idempotent.
        """

    async def aclose(self) -> None: ...

    async def publish(self, revocation: Revocation) -> None:
        """Deliver `revocation` to every DenyList this feed serves (this process's at least)."""

    async def publish_change(self, change: Change) -> None:
        """Tell every process's change listeners that a user or organization changed."""

    async def first_delivery(self, message_id: str, ttl: float) -> bool:
        """True the first time `message_id` is seen within `ttl` seconds, False for a redelivery."""

    async def forget_delivery(self, message_id: str) -> None:
        """`message_id` did not take effect (its application failed): its redelivery is a first delivery."""


class LocalFeed:
    """This process only: applies to its DenyList and listeners, message ids in a bounded TTL cache."""

    def __init__(
        self,
        deny_list: DenyList,
        listeners: ChangeListeners,
        *,
        max_message_ids: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deny_list = deny_list
        self.listeners = listeners
        self._message_ids: TLRUCache[str, float] = TLRUCache(
            maxsize=max_message_ids, ttu=lambda _key, ttl, now: now + ttl, timer=clock
        )

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def publish(self, revocation: Revocation) -> None:
        self.deny_list.apply(revocation)

    async def publish_change(self, change: Change) -> None:
        self.listeners.notify(change)

    async def first_delivery(self, message_id: str, ttl: float) -> bool:
        if message_id in self._message_ids:
            return False
        self._message_ids[message_id] = ttl
        return True

    async def forget_delivery(self, message_id: str) -> None:
        self._message_ids.pop(message_id, None)
