"""Everything a running gateway holds: built from the settings, opened and closed by the app's lifespan.

One instance per worker process. The pooled clients (`Http1UpstreamClient` towards the app, httpx towards Clerk),
the caches and the admission pipeline live here, never in module globals. Everything is built at
construction; `start` only opens what needs the event loop (the JWKS load, the app's pool).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from gateway.clerk.asks import KeysAnswer
from gateway.clerk.keys import PublishableKey
from gateway.clerk_api.authenticator import Authenticator
from gateway.edge.admission import Admission
from gateway.edge.frontend_api import FrontendApiProxy, configured_proxy_url
from gateway.edge.identity import IdentityAsserter, IdentityHeaderWriter
from gateway.edge.policy import Policy
from gateway.forwarded import ForwardedPolicy
from gateway.revocation import LocalFeed, Revocations, local_revocations
from gateway.revocation.signature import WebhookVerifier
from gateway.settings import Settings
from gateway.shared.connection import RedisConnection
from gateway.shared.feed import RedisFeed, shared_revocations
from gateway.shared.refresh import RedisRefreshFlight
from gateway.shared.sealing import Sealer
from gateway.upstream.proxy import UpstreamProxy

logger = logging.getLogger("gateway")


def frontend_api_base_url(settings: Settings) -> str:
    """Where the Frontend API really answers: the configured URL, else https://<host from the key>."""
    configured = settings.clerk.frontend_api_url
    if configured:
        return configured.rstrip("/")
    publishable: PublishableKey = settings.clerk.publishable_key
    return f"https://{settings.clerk.original_frontend_api or publishable.frontend_api}"


class EdgeRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        revocations: Revocations | None = None,
        redis: RedisConnection | None = None,
    ) -> None:
        """`revocations` and `redis` are the previous runtime's on a configuration reload, so nothing revoked
        is forgotten and the Redis connection (and its subscription) carries on."""
        gateway = settings.gateway
        self.settings = settings
        self.clock = clock
        if redis is None and revocations is not None and isinstance(revocations.feed, RedisFeed):
            redis = revocations.feed.connection  # handed over with the revocations: one connection still
        self.redis: RedisConnection | None = redis or (
            RedisConnection(gateway.redis_url.url) if gateway.redis_url is not None else None
        )
        """The shared state's connection (`GATEWAY_REDIS_URL`); None: every process keeps its own."""
        self._redis_handed_over = False
        if revocations is None:
            revocations = (
                shared_revocations(self.redis, retention=gateway.revocation_retention, clock=clock)
                if self.redis is not None
                else local_revocations(retention=gateway.revocation_retention, clock=clock)
            )
        self.revocations = revocations
        """The deny list admission asks, the feed the webhook endpoint publishes to, the change listeners."""
        self._revocations_handed_over = False
        self.shared_refreshes: RedisRefreshFlight | None = (
            RedisRefreshFlight(self.redis, Sealer(settings.clerk.secret_key))
            if self.redis is not None and settings.clerk.secret_key
            else None
        )
        """Refreshes collapsed across replicas (None without Redis or without a secret key to refresh with)."""
        secret = settings.clerk_settings.webhook_signing_secret
        self.webhook_verifier = WebhookVerifier(secret.value) if secret else None
        """None without `CLERK_WEBHOOK_SIGNING_SECRET`: the webhook endpoint answers 404."""
        self.policy = Policy(gateway)
        asserter = IdentityAsserter(gateway.assertion_key.key, clock) if gateway.assertion_key else None
        self.asserter = asserter
        self.identity = IdentityHeaderWriter(gateway.identity_headers, asserter)
        self.forwarded = ForwardedPolicy(gateway.trusted_proxies)
        self.http_client = httpx.AsyncClient(
            timeout=httpx.Timeout(gateway.read_timeout, connect=gateway.connect_timeout),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            follow_redirects=False,
        )
        self.authenticator = Authenticator(
            settings.clerk,
            http_client=self.http_client,
            token_cache_size=gateway.token_cache_size,
            jwks_ttl=gateway.jwks_cache_ttl,
            jwks_min_refetch_interval=gateway.jwks_min_refetch_interval,
            machine_revocation_window=gateway.machine_token_revocation_window,
            clock=clock,
            shared_refreshes=self.shared_refreshes,
        )
        self.admission = Admission(
            settings,
            self.authenticator,
            self.policy,
            self.forwarded,
            keys_available=lambda: self.keys_available,
            deny_list=self.revocations.deny_list,
        )
        self.proxy: UpstreamProxy | None = (
            UpstreamProxy(
                gateway.upstream,
                connect_timeout=gateway.connect_timeout,
                read_timeout=gateway.read_timeout,
                preserve_host=gateway.preserve_host,
                forwarded=self.forwarded,
            )
            if gateway.upstream
            else None
        )
        """None when the gateway only answers forward-auth (no app to proxy to)."""
        self.frontend_api: FrontendApiProxy | None = (
            FrontendApiProxy(
                prefix=gateway.frontend_api_path,
                fapi_url=frontend_api_base_url(settings),
                secret_key=settings.clerk.secret_key,
                publishable_key=settings.clerk.publishable_key.raw,
                forwarded=self.forwarded,
                client=self.http_client,
                proxy_url=configured_proxy_url(
                    settings.clerk.proxy_url, gateway.public_origin, gateway.frontend_api_path
                ),
            )
            if gateway.frontend_api_path and settings.clerk.secret_key
            else None
        )
        """None when the Frontend API proxy is off (no path, or no secret key to proxy with)."""
        self.keys_at_start: KeysAnswer | None = None
        self.started = False
        self.draining = False
        """Shutdown has begun: new requests are refused (503), in-flight ones finish."""
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        if self.redis is not None:
            await self.redis.start()
        await self.revocations.feed.start()
        workers = self.settings.gateway.workers
        if self.webhook_verifier is not None and workers > 1 and isinstance(self.revocations.feed, LocalFeed):
            logger.warning(
                "revocation: a Clerk webhook reaches one of %d workers; the others refuse a revoked "
                "session only when its token expires (GATEWAY_REDIS_URL shares revocations between them)",
                workers,
            )
        self.keys_at_start = await self.authenticator.start()
        if self.keys_at_start is not None and self.keys_at_start.failure is not None:
            logger.warning("JWKS not loaded at start (%s); will retry on demand", self.keys_at_start.failure.reason)
        if self.proxy is not None:
            await self.proxy.start()
        self.started = True

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests and wait (at most `timeout` seconds) for in-flight ones; True if all finished."""
        self.draining = True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            logger.warning("shutdown: %d requests still in flight after %.0f s; closing", self.in_flight, timeout)
            return False
        return True

    async def aclose(self) -> None:
        self.started = False
        if self.proxy is not None:
            await self.proxy.aclose()
        await self.authenticator.aclose()
        await self.http_client.aclose()
        if not self._revocations_handed_over:
            await self.revocations.feed.aclose()
        if self.redis is not None and not self._redis_handed_over:
            await self.redis.aclose()

    def hand_over_revocations(self) -> Revocations:
        """Give this runtime's revocations to its successor (a reload): closing this one leaves them open."""
        self._revocations_handed_over = True
        if isinstance(self.revocations.feed, RedisFeed):
            self._redis_handed_over = True  # the feed goes on over this connection
        return self.revocations

    def hand_over_redis(self) -> RedisConnection | None:
        """Give this runtime's Redis connection to its successor (a reload): closing this one leaves it open."""
        self._redis_handed_over = True
        return self.redis

    @property
    def keys_available(self) -> bool:
        """Whether tokens can be verified at all right now (a PEM key, or a JWKS loaded at least once)."""
        if self.settings.clerk.jwt_key is not None:
            return True
        return len(self.authenticator.keys) > 0
