"""Drives the core's decision for one request, answering its asks with the Backend API and the JWKS cache.

Shared by the edge, the forward-auth endpoint and `gateway explain`, so that every entry point runs
the same flow with the same I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from gateway.clerk.asks import (
    Answer,
    ApiResponse,
    Ask,
    FetchHandshakePayload,
    FetchKeys,
    KeysAnswer,
    RefreshSession,
    VerifyMachineToken,
)
from gateway.clerk.decide import AuthState, authenticate
from gateway.clerk.jwk import EMPTY_KEY_SET, KeySet
from gateway.clerk.options import ClerkOptions
from gateway.clerk.request import RequestView
from gateway.clerk.token_types import AcceptsToken
from gateway.clerk.verify import VerifiedTokenCache, still_verified
from gateway.clerk_api.backend import BackendApi, SharedRefreshes
from gateway.clerk_api.jwks import JwksCache
from gateway.clerk_api.machine_tokens import DEFAULT_REVOCATION_WINDOW, MachineTokenAnswers


class Authenticator:
    """One per process: owns the Backend API client, the JWKS cache, the verified-token cache and the
    machine-token answers (opaque API keys, M2M and OAuth tokens, kept `machine_revocation_window` s)."""

    def __init__(
        self,
        options: ClerkOptions,
        *,
        http_client: httpx.AsyncClient | None = None,
        token_cache_size: int = 10_000,
        jwks_ttl: float = 300.0,
        jwks_min_refetch_interval: float = 5.0,
        machine_revocation_window: float = DEFAULT_REVOCATION_WINDOW,
        clock: Callable[[], float] = time.time,
        shared_refreshes: SharedRefreshes | None = None,
    ) -> None:
        """`shared_refreshes`: collapse refreshes across replicas too (Redis), beside this process's."""
        self.options = options
        self.clock = clock
        self.token_cache = VerifiedTokenCache(token_cache_size)
        self.backend: BackendApi | None = (
            BackendApi.from_options(options, client=http_client, shared_refreshes=shared_refreshes)
            if options.secret_key
            else None
        )
        self.jwks: JwksCache | None = (
            JwksCache(self.backend, ttl=jwks_ttl, min_refetch_interval=jwks_min_refetch_interval)
            if self.backend is not None and options.jwt_key is None
            else None
        )
        self.machine_tokens: MachineTokenAnswers | None = (
            MachineTokenAnswers(
                self.backend.verify_machine_token,
                maxsize=token_cache_size,
                revocation_window=machine_revocation_window,
                clock=clock,
            )
            if self.backend is not None
            else None
        )

    @property
    def keys(self) -> KeySet:
        return self.jwks.current if self.jwks is not None else EMPTY_KEY_SET

    async def start(self) -> KeysAnswer | None:
        """Load the JWKS once at startup; a failure is reported, not raised (keys may load later)."""
        if self.jwks is None:
            return None
        return await self.jwks.load()

    def adopt_keys(self, other: Authenticator) -> bool:
        """`other`'s JWKS keys when this one loaded none and both are of one instance (secret key and JWKS
        URL): what a reload keeps while Clerk's JWKS endpoint fails. True when keys were taken."""
        if self.jwks is None or other.jwks is None or self.backend is None or other.backend is None:
            return False
        if (self.options.secret_key, self.backend.jwks_url) != (other.options.secret_key, other.backend.jwks_url):
            return False
        return self.jwks.adopt(other.jwks)

    async def authenticate(
        self,
        request: RequestView,
        now: float | None = None,
        accepts: AcceptsToken | None = None,
        trace: list[str] | None = None,
    ) -> AuthState:
        """The decision for `request`; `accepts` overrides the options' `accepts_token` (a route's own);
        `trace`: a list the decision appends the ids of the rows it takes to (`gateway explain --trace`)."""
        if self.jwks is not None:
            self.jwks.refresh_in_background_if_stale()
        at = self.clock() if now is None else now
        flow = authenticate(request, self.options, self.keys, at, self.token_cache, accepts=accepts, trace=trace)
        try:
            ask = next(flow)
            while True:
                ask = flow.send(await self._perform(ask))
        except StopIteration as finished:
            state: AuthState = finished.value
            return state

    def still_signed_in(self, state: AuthState, now: float | None = None) -> bool:
        """Whether a signed-in outcome reached before holds now: its token is still in the verified-token
        cache, its key still the current one, and every clock-dependent claim check still passes."""
        if state.token is None:
            return False
        if self.jwks is not None:
            self.jwks.refresh_in_background_if_stale()
        now_ms = int((self.clock() if now is None else now) * 1000)
        entry = still_verified(state.token, self.options, self.keys, now_ms, self.token_cache)
        if entry is None:
            return False
        # Also before `exp` itself, not just within the clock skew past it: the choice between the plain
        # and the suffixed cookies (PROTOCOL.md §2.2) turns at `exp` exactly.
        expires = entry.decoded.payload.get("exp")
        return isinstance(expires, int | float) and not isinstance(expires, bool) and now_ms // 1000 < expires

    async def _perform(self, ask: Ask) -> Answer:
        if isinstance(ask, FetchKeys):
            if self.jwks is None:
                return KeysAnswer(EMPTY_KEY_SET)
            return await self.jwks.answer(ask)
        if self.backend is None:
            return ApiResponse(status=None)
        if isinstance(ask, RefreshSession):
            return await self.backend.refresh_session(ask)
        if isinstance(ask, FetchHandshakePayload):
            return await self.backend.handshake_payload(ask)
        if isinstance(ask, VerifyMachineToken):
            assert self.machine_tokens is not None  # built whenever the backend is
            return await self.machine_tokens.answer(ask)
        raise TypeError(f"unknown ask {ask!r}")

    async def aclose(self) -> None:
        if self.machine_tokens is not None:
            await self.machine_tokens.aclose()
        if self.jwks is not None:
            await self.jwks.aclose()
        if self.backend is not None:
            await self.backend.aclose()
