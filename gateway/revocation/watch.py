"""Open connections of signed-in sessions (WebSockets), ended when their session is revoked.

A request is judged once; a WebSocket lives on after its upgrade. Each relay of a session's WebSocket
registers its state here and gets an event; `check` (run by the runtime about four times a second
while any is open and the deny list holds something) sets the events of the revoked ones, and the relay
closes both sides. No I/O: an `asyncio.Event` is only a flag here.
"""

from __future__ import annotations

import asyncio

from gateway.clerk.decide import AuthState
from gateway.revocation.deny_list import DenyList
from gateway.revocation.verdict import is_revoked


class SessionWatch:
    __slots__ = ("_deny_list", "_open")

    def __init__(self, deny_list: DenyList) -> None:
        self._deny_list = deny_list
        self._open: dict[asyncio.Event, AuthState] = {}

    def open(self, state: AuthState) -> asyncio.Event | None:
        """An event set when `state`'s session is revoked; None for what no revocation can end (machines)."""
        if state.status != "signed-in" or state.claims is None or state.machine is not None:
            return None
        ended = asyncio.Event()
        self._open[ended] = state
        return ended

    def close(self, ended: asyncio.Event | None) -> None:
        if ended is not None:
            self._open.pop(ended, None)

    def check(self) -> int:
        """Set the events of the revoked sessions' connections (and forget them); how many were ended."""
        if not self._open or not self._deny_list.active:
            return 0
        revoked = [ended for ended, state in self._open.items() if is_revoked(self._deny_list, state)]
        for ended in revoked:
            del self._open[ended]
            ended.set()
        return len(revoked)

    def __len__(self) -> int:
        return len(self._open)
