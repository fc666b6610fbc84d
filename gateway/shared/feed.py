"""`RedisFeed`: a revocation heard by one replica reaches every replica's DenyList within a second.

A revocation is applied to this process's DenyList first (this replica refuses at once, whatever Redis
does), then merged into Redis under `<namespace>:revocation:<kind>:<subject>` with the entry's own
expiry, and published on `<namespace>:revocations` when Redis did not hold it yet; every replica
subscribes and applies what it hears. On every (re)connection a replica subscribes, loads every live
entry, and writes back the live entries it holds (publishing those Redis lacked): a Redis restarted
without persistence, or a revocation heard while Redis was away, is shared again. Webhook message
ids are de-duplicated with `SET NX EX`, shared by all replicas (this process's memory while Redis is
away). The hot path only ever reads the DenyList.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as redis

from gateway.revocation import Change, ChangeListeners, DenyList, LocalFeed, Revocation, Revocations
from gateway.revocation.watch import SessionWatch
from gateway.shared.connection import RedisConnection

logger = logging.getLogger("gateway.redis")

# Keep the widest reach (later revocation, later expiry), as DenyList.apply does; publish only news.
_MERGE = """
local revoked_at, expires_at = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('GET', KEYS[1])
if held then
  local entry = cjson.decode(held)
  if entry.revoked_at >= revoked_at and entry.expires_at >= expires_at then return 0 end
  revoked_at = math.max(revoked_at, entry.revoked_at)
  expires_at = math.max(expires_at, entry.expires_at)
end
local value = cjson.encode({kind = ARGV[3], subject_id = ARGV[4], revoked_at = revoked_at, expires_at = expires_at})
redis.call('SET', KEYS[1], value, 'PXAT', math.ceil(expires_at * 1000))
redis.call('PUBLISH', KEYS[2], ARGV[5])
return 1
"""
_BATCH = 500
_PENDING_CHANGES = 1000


def _revocation_json(revocation: Revocation) -> dict[str, Any]:
    return {
        "kind": revocation.kind,
        "subject_id": revocation.subject_id,
        "revoked_at": revocation.revoked_at,
        "expires_at": revocation.expires_at,
    }


def _revocation_of(fields: Any) -> Revocation | None:
    """A revocation read from Redis or a message; None for anything malformed (logged by the caller)."""
    try:
        kind, subject = fields["kind"], fields["subject_id"]
        revoked_at, expires_at = float(fields["revoked_at"]), float(fields["expires_at"])
    except (KeyError, TypeError, ValueError):
        return None
    if kind not in ("session", "user") or not isinstance(subject, str) or not subject:
        return None
    return Revocation(kind, subject, revoked_at, expires_at)


class RedisFeed:
    """A `RevocationFeed` shared by every replica connected to the same Redis."""

    def __init__(
        self,
        connection: RedisConnection,
        deny_list: DenyList,
        listeners: ChangeListeners,
        *,
        namespace: str = "gateway",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.deny_list = deny_list
        self.listeners = listeners
        self._clock = clock
        self._entry_prefix = f"{namespace}:revocation:"
        self._channel = f"{namespace}:revocations"
        self._message_prefix = f"{namespace}:webhook:"
        self._origin = os.urandom(8).hex()
        self._local = LocalFeed(deny_list, listeners, clock=clock)
        self._merge = connection.client.register_script(_MERGE)
        self._pending_changes: deque[Change] = deque(maxlen=_PENDING_CHANGES)
        self._follower: asyncio.Task[None] | None = None
        self._first_synchronisation = asyncio.Event()
        self.synchronised = 0
        """How many (re)synchronisations completed (observability, tests)."""

    async def start(self, first_synchronisation_timeout: float = 2.0) -> None:
        """Follow the other replicas; with Redis up, wait (bounded) for the first load of live entries, so
        a replica that joins never serves a session another replica already refused."""
        if self._follower is not None:
            return
        await self.connection.start()
        self._follower = asyncio.create_task(self._follow(), name="revocation-feed")
        if self.connection.up:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(first_synchronisation_timeout):
                    await self._first_synchronisation.wait()

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    # -- what the webhook endpoint calls -----------------------------------------------------------

    async def publish(self, revocation: Revocation) -> None:
        self.deny_list.apply(revocation)
        if not self.connection.up:
            return  # written back with every live entry on reconnection
        try:
            await self._merge_all([revocation])
        except (redis.RedisError, OSError) as error:
            self.connection.failed("feed", error)

    async def publish_change(self, change: Change) -> None:
        self.listeners.notify(change)
        if not self.connection.up:
            self._pending_changes.append(change)
            return
        try:
            await self.connection.client.publish(self._channel, self._message("change", _change_json(change)))
        except (redis.RedisError, OSError) as error:
            self.connection.failed("feed", error)
            self._pending_changes.append(change)

    async def first_delivery(self, message_id: str, ttl: float) -> bool:
        first_here = await self._local.first_delivery(message_id, ttl)
        if not self.connection.up:
            return first_here
        try:
            return bool(
                await self.connection.client.set(self._message_key(message_id), b"1", nx=True, ex=max(1, int(ttl)))
            )
        except (redis.RedisError, OSError) as error:
            self.connection.failed("dedupe", error)
            return first_here

    async def forget_delivery(self, message_id: str) -> None:
        await self._local.forget_delivery(message_id)
        if not self.connection.up:
            return
        try:
            await self.connection.client.delete(self._message_key(message_id))
        except (redis.RedisError, OSError) as error:
            self.connection.failed("dedupe", error)

    def _message_key(self, message_id: str) -> str:
        return self._message_prefix + hashlib.sha256(message_id.encode()).hexdigest()

    # -- following the other replicas --------------------------------------------------------------

    async def _follow(self) -> None:
        connection = self.connection
        while True:
            await connection.wait_up()
            try:
                async with connection.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    generation = connection.connected
                    await self._synchronise()
                    while connection.up and connection.connected == generation:
                        message = await pubsub.get_message(timeout=0.5)
                        if message is not None and message.get("type") == "message":
                            self._receive(message["data"])
            except (redis.RedisError, OSError) as error:
                connection.failed("feed", error)
            except Exception as error:  # a bug must not end the subscription for the process's life
                logger.exception("redis.feed failed; following again in a second")
                connection.failed("feed", error)
                await asyncio.sleep(1.0)

    async def _synchronise(self) -> None:
        """Load every live entry, then write back (and publish) the live ones Redis lacks."""
        client = self.connection.client
        keys: list[bytes] = [key async for key in client.scan_iter(match=self._entry_prefix + "*", count=_BATCH)]
        loaded = 0
        for start in range(0, len(keys), _BATCH):
            for raw in await client.mget(keys[start : start + _BATCH]):
                revocation = _revocation_of(_loads(raw)) if isinstance(raw, bytes) else None
                if revocation is not None:
                    loaded += int(self.deny_list.apply(revocation))
        written = await self._merge_all(self.deny_list.entries())
        while self._pending_changes:
            change = self._pending_changes[0]
            await client.publish(self._channel, self._message("change", _change_json(change)))
            self._pending_changes.popleft()
        self.synchronised += 1
        self._first_synchronisation.set()
        logger.info("redis.synchronised revocations_loaded=%d revocations_written_back=%d", loaded, written)

    async def _merge_all(self, revocations: Iterable[Revocation]) -> int:
        """Merge into Redis (skipping what has expired); how many Redis did not already hold."""
        now = self._clock()
        live = [revocation for revocation in revocations if revocation.expires_at > now]
        written = 0
        for start in range(0, len(live), _BATCH):
            async with self.connection.client.pipeline(transaction=False) as pipe:
                for revocation in live[start : start + _BATCH]:
                    await self._merge(
                        keys=[f"{self._entry_prefix}{revocation.kind}:{revocation.subject_id}", self._channel],
                        args=[
                            repr(revocation.revoked_at), repr(revocation.expires_at), revocation.kind,
                            revocation.subject_id, self._message("revocation", _revocation_json(revocation)),
                        ],
                        client=pipe,
                    )  # fmt: skip
                written += sum(int(result) for result in await pipe.execute())
        return written

    def _message(self, kind: str, body: dict[str, Any]) -> bytes:
        return json.dumps({"type": kind, "origin": self._origin, **body}).encode()

    def _receive(self, data: bytes) -> None:
        fields = _loads(data)
        if not isinstance(fields, dict):
            logger.warning("redis.feed ignored a malformed message")
            return
        if fields.get("type") == "revocation":
            revocation = _revocation_of(fields)
            if revocation is None:
                logger.warning("redis.feed ignored a malformed revocation")
                return
            self.deny_list.apply(revocation)
        elif fields.get("type") == "change" and fields.get("origin") != self._origin:
            change = _change_of(fields)
            if change is not None:
                self.listeners.notify(change)


def _change_json(change: Change) -> dict[str, Any]:
    return {"kind": change.kind, "subject_id": change.subject_id, "changed_at": change.changed_at}


def _change_of(fields: dict[str, Any]) -> Change | None:
    kind, subject = fields.get("kind"), fields.get("subject_id")
    if kind not in ("user", "organization") or not isinstance(subject, str):
        return None
    try:
        return Change(kind, subject, float(fields.get("changed_at", 0)))
    except (TypeError, ValueError):
        return None


def _loads(raw: bytes) -> Any:
    with contextlib.suppress(ValueError):
        return json.loads(raw)
    return None


def shared_revocations(
    connection: RedisConnection, *, retention: float, clock: Callable[[], float] = time.time
) -> Revocations:
    """A DenyList, listeners and a RedisFeed over `connection` (what `local_revocations` is for one process)."""
    deny_list = DenyList(clock=clock)
    listeners = ChangeListeners()
    feed = RedisFeed(connection, deny_list, listeners, clock=clock)
    return Revocations(deny_list, feed, listeners, retention, SessionWatch(deny_list))
