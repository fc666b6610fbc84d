"""The revoked sessions and users this process knows of, asked on every signed-in request.

A session revocation refuses every token of that session; a user revocation refuses every token of
that user issued at or before the revocation (`iat <= revoked_at`), so that a user re-created later
or a token minted after the event is not caught. Entries live as long as a token issued before them
could (`expires_at`, the retention); after that no such token is still valid, so the entry goes.

The hot path costs one attribute read when the list is empty (`DenyList.active`) and a dict lookup
per kind in use otherwise. The structure is bounded: when full, the entry that expires first goes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("gateway.revocation")

RevocationKind = Literal["session", "user"]


@dataclass(frozen=True, slots=True)
class Revocation:
    """Clerk said this session (or every token of this user issued until `revoked_at`) is over."""

    kind: RevocationKind
    subject_id: str
    revoked_at: float
    """Seconds since the epoch, on Clerk's clock (the event's timestamp), compared with tokens' `iat`."""
    expires_at: float
    """When no token issued before `revoked_at` can still be valid, so the entry may be dropped."""


class DenyList:
    """Synchronous, in-process, bounded; `apply` from the feed, `is_revoked` from the hot path."""

    __slots__ = ("_clock", "_max_entries", "_sessions", "_users", "active")

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._sessions: dict[str, Revocation] = {}
        self._users: dict[str, Revocation] = {}
        self.active = False
        """Whether any entry is held: the hot path reads this and nothing else while it is False."""

    def apply(self, revocation: Revocation) -> bool:
        """Hold `revocation`; True if it was new (not already held with the same or a later reach)."""
        now = self._clock()
        self._drop_expired(now)
        if revocation.expires_at <= now:
            return False
        table = self._sessions if revocation.kind == "session" else self._users
        held = table.get(revocation.subject_id)
        if held is not None and held.revoked_at >= revocation.revoked_at and held.expires_at >= revocation.expires_at:
            return False
        if held is not None:
            # Keep the widest reach: the later revocation time and the later expiry.
            revocation = Revocation(
                revocation.kind,
                revocation.subject_id,
                max(held.revoked_at, revocation.revoked_at),
                max(held.expires_at, revocation.expires_at),
            )
            del table[revocation.subject_id]
        table[revocation.subject_id] = revocation
        self.active = True
        self._enforce_bound()
        return True

    def is_revoked(self, session_id: str | None, user_id: str | None, issued_at: float | None) -> bool:
        """Whether a token of `session_id` / `user_id` issued at `issued_at` (its `iat`) is refused."""
        if self._sessions and session_id is not None:
            held = self._sessions.get(session_id)
            if held is not None and held.expires_at > self._clock():
                return True
        if self._users and user_id is not None:
            held = self._users.get(user_id)
            if held is not None and held.expires_at > self._clock():
                # A token without `iat` cannot show it was issued after the revocation.
                return issued_at is None or issued_at <= held.revoked_at
        return False

    def entries(self) -> list[Revocation]:
        """The unexpired entries, e.g. for a new replica or a status page."""
        self._drop_expired(self._clock())
        return [*self._sessions.values(), *self._users.values()]

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users)

    def _drop_expired(self, now: float) -> None:
        for table in (self._sessions, self._users):
            expired = [subject for subject, held in table.items() if held.expires_at <= now]
            for subject in expired:
                del table[subject]
        self.active = bool(self._sessions or self._users)

    def _enforce_bound(self) -> None:
        # Both tables are in insertion order, which is expiry order for one retention: the first
        # entry of either is the one that expires soonest.
        while len(self) > self._max_entries:
            sessions, users = self._sessions, self._users
            first_session = next(iter(sessions.values()), None)
            first_user = next(iter(users.values()), None)
            if first_user is None or (first_session is not None and first_session.expires_at <= first_user.expires_at):
                table, dropped = sessions, first_session
            else:
                table, dropped = users, first_user
            assert dropped is not None
            del table[dropped.subject_id]
            logger.warning("revocation deny list full (%d entries): dropped the one expiring first", self._max_entries)
