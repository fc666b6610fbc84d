"""Repeat requests of one browser session skip the Clerk decision.

A browser sends the same cookies with every request of a session, so the decision the core reaches
for one request holds for the next one with the same inputs, as long as the token is still valid.
The memo keeps signed-in outcomes (and only those: anything with headers to send, a refresh, a
handshake, is decided afresh) under a key made of every request input the decision reads: method,
scheme, the `Host`, `Cookie`, `Authorization`, `Sec-Fetch-Dest`, `Accept` and forwarding headers,
whether the peer is a trusted proxy, the `Referer` of document requests (row D15) and, when
organization sync is configured, the path (PROTOCOL.md §10). A key may say more than the decision
reads, never less. Requests with `__clerk` query parameters (or any percent-escape in the query,
which could spell one) are not memoised.

On every use the outcome is re-checked as a verified-token cache hit is (`Authenticator.still_signed_in`:
the token's key is still the current one, `exp`/`nbf`/`iat`/`azp` pass at this instant), so a memoised
answer never outlives its token or its key.
"""

from __future__ import annotations

from collections.abc import Hashable

from gateway.clerk.decide import AuthState

MemoKey = tuple[Hashable, ...]


class SessionMemo:
    """A bounded dict in recency order (the oldest entry goes when full), like the verified-token cache."""

    __slots__ = ("_entries", "_maxsize", "by_path")

    def __init__(self, maxsize: int, *, by_path: bool) -> None:
        self._maxsize = maxsize
        self._entries: dict[MemoKey, AuthState] = {}
        self.by_path = by_path
        """The path is part of the key (organization sync reads it)."""

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


def query_allows_memo(query: bytes) -> bool:
    """No `__clerk_*` parameter can hide in it (percent-escapes could spell one: be conservative)."""
    return not query or (b"%" not in query and b"__clerk" not in query)
