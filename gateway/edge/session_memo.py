"""Repeat requests of one browser session skip the Clerk decision.

A browser sends the same cookies with every request of a session, so the decision the core reaches
for one request holds for the next one with the same inputs, as long as the token is still valid.
The memo keeps signed-in outcomes (and only those: anything with headers to send, a refresh, a
handshake, is decided afresh) under `gateway.clerk.decision_inputs.decision_key`, a digest of every
input the decision reads, derived next to the decision so that none can be forgotten here.

On every use the outcome is re-checked as a verified-token cache hit is (`Authenticator.still_signed_in`:
the token's key is still the current one, `exp`/`nbf`/`iat`/`azp` pass at this instant), so a memoised
answer never outlives its token or its key. Entries are 16-byte digests and a shared outcome, so
padded or varied headers cannot make one entry large.
"""

from __future__ import annotations

from gateway.clerk.decide import AuthState

MemoKey = bytes


class SessionMemo:
    """A bounded dict in recency order (the oldest entry goes when full), like the verified-token cache."""

    __slots__ = ("_entries", "_maxsize")

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._entries: dict[MemoKey, AuthState] = {}

    def get(self, key: MemoKey) -> AuthState | None:
        entries = self._entries
        state = entries.pop(key, None)
        if state is not None:
            entries[key] = state
        return state

    def remember(self, key: MemoKey, state: AuthState) -> None:
        """Keep `state` if it is a plain signed-in outcome (identity known, nothing to send back)."""
        if state.status != "signed-in" or state.headers or state.token is None or state.claims is None:
            return
        entries = self._entries
        entries.pop(key, None)
        entries[key] = state
        if len(entries) > self._maxsize:
            del entries[next(iter(entries))]

    def forget(self, key: MemoKey) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

