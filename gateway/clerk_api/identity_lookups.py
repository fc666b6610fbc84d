"""The user and the organization behind a session, fetched from the Backend API for the identity headers.

Why a module of its own: e-mail, names, username, image, public metadata and the organization's name
are not in the session token, and asking Clerk on every request would put a network wait (and Clerk's
rate limit) on the hot path. Each lookup is cached: bounded (least recently used goes first), fresh
for a TTL, refreshed in the background ahead of expiry so a busy user never waits, fetched once per
burst (`SingleFlight`), and served stale for a bounded time while the Backend API fails. `forget_user`
and `forget_organization` (sign-out, webhooks) drop an entry at once, and a fetch already running
when it was forgotten does not bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cachetools import LRUCache

from gateway.clerk.asks import ApiResponse
from gateway.clerk_api.single_flight import SingleFlight

logger = logging.getLogger("gateway.identity")

V = TypeVar("V")

REFRESH_AHEAD = 0.8
"""An entry older than this share of its TTL is refreshed in the background on its next use."""


class LookupFailed(Exception):
    """The Backend API gave no usable answer (transport error, 5xx, 429): nothing to cache."""


@dataclass(frozen=True, slots=True)
class UserProfile:
    """What the identity headers may carry about a user, from `GET /users/{id}`."""

    email: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    image_url: str | None = None
    public_metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_bapi(cls, body: Mapping[str, Any]) -> UserProfile:
        """The primary e-mail is the address whose id is `primary_email_address_id`, as Clerk's SDK reads it."""
        primary = body.get("primary_email_address_id")
        addresses = body.get("email_addresses")
        email = None
        if isinstance(addresses, list):
            found = (item for item in addresses if isinstance(item, dict) and item.get("id") == primary)
            email = next((item.get("email_address") for item in found), None)
        metadata = body.get("public_metadata")
        return cls(
            email=_text(email),
            username=_text(body.get("username")),
            first_name=_text(body.get("first_name")),
            last_name=_text(body.get("last_name")),
            image_url=_text(body.get("image_url")),
            public_metadata=metadata if isinstance(metadata, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class OrganizationProfile:
    """What the identity headers may carry about an organization, from `GET /organizations/{id}`."""

    name: str | None = None

    @classmethod
    def from_bapi(cls, body: Mapping[str, Any]) -> OrganizationProfile:
        return cls(name=_text(body.get("name")))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def answer_of(response: ApiResponse, parse: Callable[[Mapping[str, Any]], V]) -> V | None:
    """200: the object; 404 (deleted, or an id of another instance): None, cached like an answer;
    anything else: `LookupFailed`."""
    if response.status == 200 and isinstance(response.body, dict):
        return parse(response.body)
    if response.status == 404:
        return None
    raise LookupFailed(f"status {response.status}" if response.status is not None else "no answer")


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V | None
    fetched_at: float


class LookupCache(Generic[V]):
    """One kind of lookup (users, or organizations) by id: see the module docstring."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[V | None]],
        *,
        ttl: float,
        stale_if_error: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._stale_if_error = stale_if_error
        self._clock = clock
        self._entries: LRUCache[str, _Entry[V]] = LRUCache(maxsize=max_entries)
        self._forgets = 0
        self._forgotten_at: LRUCache[str, int] = LRUCache(maxsize=max_entries)
        """Per key, the number of the last `forget` of it (a count, not a time: two can share an instant)."""
        self._flights: SingleFlight[str, V | None] = SingleFlight()
        self._background: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: str) -> _Entry[V] | None:
        """The fresh entry of `key` without any wait (refreshing it in the background when it is due)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - entry.fetched_at
        if age >= self._ttl:
            return None
        if age >= self._ttl * REFRESH_AHEAD and not self._flights.is_running(key):
            task = asyncio.ensure_future(self._refresh(key))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return entry

    async def get(self, key: str) -> V | None:
        """The value of `key`: cached if fresh; else fetched (one fetch per key at a time); on failure the
        expired entry while it is within `stale_if_error`; else `LookupFailed`."""
        entry = self.peek(key)
        if entry is not None:
            return entry.value
        try:
            return await self._flights.run(key, lambda: self._fetch_and_keep(key))
        except LookupFailed:
            stale = self._entries.get(key)
            if stale is not None and self._clock() - stale.fetched_at < self._ttl + self._stale_if_error:
                return stale.value
            raise

    def forget(self, key: str) -> None:
        """Drop `key` now; a fetch already running for it will not store its (older) answer."""
        self._entries.pop(key, None)
        self._forgets += 1
        self._forgotten_at[key] = self._forgets

    async def _refresh(self, key: str) -> None:
        # On failure the entry stays; the request that finds it expired tries again and reports the gap.
        with contextlib.suppress(LookupFailed):
            await self._flights.run(key, lambda: self._fetch_and_keep(key))

    async def _fetch_and_keep(self, key: str) -> V | None:
        forgets_before = self._forgets
        value = await self._fetch(key)
        forgotten = self._forgotten_at.get(key)
        if forgotten is None or forgotten <= forgets_before:
            self._entries[key] = _Entry(value, self._clock())
        return value

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._flights.aclose()


class IdentityLookups:
    """Users and organizations for the identity headers, over one Backend API client.

    `fetch_user` / `fetch_organization` answer an `ApiResponse` (`BackendApi.get_user`,
    `get_organization`); 200 and 404 are answers, anything else is a failure (not cached)."""

    def __init__(
        self,
        fetch_user: Callable[[str], Awaitable[ApiResponse]],
        fetch_organization: Callable[[str], Awaitable[ApiResponse]],
        *,
        ttl: float,
        stale_if_error: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        async def user(user_id: str) -> UserProfile | None:
            return answer_of(await fetch_user(user_id), UserProfile.from_bapi)

        async def organization(org_id: str) -> OrganizationProfile | None:
            return answer_of(await fetch_organization(org_id), OrganizationProfile.from_bapi)

        options: dict[str, Any] = {
            "ttl": ttl, "stale_if_error": stale_if_error, "max_entries": max_entries, "clock": clock
        }  # fmt: skip
        self.users: LookupCache[UserProfile] = LookupCache(user, **options)
        self.organizations: LookupCache[OrganizationProfile] = LookupCache(organization, **options)
        self.gaps: dict[str, int] = {"user": 0, "organization": 0}
        """Requests whose identity headers lacked a lookup the Backend API could not give, by kind."""
        self._clock = clock
        self._last_gap_log = -float("inf")

    def forget_user(self, user_id: str) -> None:
        """The user changed or signed out: the next request that needs them fetches them again."""
        self.users.forget(user_id)

    def forget_organization(self, org_id: str) -> None:
        self.organizations.forget(org_id)

    def note_gap(self, kind: str, key: str, error: LookupFailed) -> None:
        """Count a request that got token-only headers; log it at most once every 10 seconds."""
        self.gaps[kind] += 1
        now = self._clock()
        if now - self._last_gap_log >= 10:
            self._last_gap_log = now
            logger.warning(
                "identity.lookup_failed kind=%s id=%s error=%s: the app gets the token's identity only "
                "(gateway_identity_lookup_gaps counts every such request)",
                kind, key, error,
            )  # fmt: skip

    async def aclose(self) -> None:
        await self.users.aclose()
        await self.organizations.aclose()
