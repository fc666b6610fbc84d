"""Everything a running gateway holds: built from the settings, opened and closed by the app's lifespan.

One instance per worker process. The pooled clients (`Http1UpstreamClient` towards the app, httpx towards Clerk),
the caches and the admission pipeline live here, never in module globals. Everything is built at
construction; `start` only opens what needs the event loop (the JWKS load, the app's pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import httpx

from gateway.clerk.asks import KeysAnswer
from gateway.clerk.keys import PublishableKey
from gateway.clerk.options import ClerkOptions
from gateway.clerk_api.authenticator import Authenticator
from gateway.clerk_api.identity_lookups import IdentityLookups
from gateway.edge.admission import Admission
from gateway.edge.apps import App, build_apps
from gateway.edge.assertion import IdentityAsserter
from gateway.edge.frontend_api import FrontendApiProxy, configured_proxy_url
from gateway.edge.identity import IdentityHeaderWriter
from gateway.edge.instance import ClerkInstance
from gateway.forwarded import ForwardedPolicy
from gateway.revocation import LocalFeed, Revocations, local_revocations
from gateway.revocation.signature import WebhookVerifier
from gateway.settings import IdentitySettings, Settings
from gateway.shared.connection import RedisConnection
from gateway.shared.feed import RedisFeed, shared_revocations
from gateway.shared.refresh import RedisRefreshFlight
from gateway.shared.sealing import Sealer

logger = logging.getLogger("gateway")

_WATCH_INTERVAL = 0.25
"""Seconds between two looks at the open WebSockets of sessions (a set lookup each, while any is revoked)."""


def frontend_api_base_url(settings: Settings) -> str:
    """Where the Frontend API really answers: the configured URL, else https://<host from the key>."""
    return instance_frontend_api_url(settings.clerk)


def instance_frontend_api_url(options: ClerkOptions) -> str:
    configured = options.frontend_api_url
    if configured:
        return configured.rstrip("/")
    publishable: PublishableKey = options.publishable_key
    return f"https://{options.original_frontend_api or publishable.frontend_api}"


class EdgeRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        revocations: Revocations | None = None,
        redis: RedisConnection | None = None,
        predecessor: EdgeRuntime | None = None,
    ) -> None:
        """`revocations` and `redis` are the previous runtime's on a configuration reload, so nothing revoked
        is forgotten and the Redis connection (and its subscription) carries on; `predecessor` (that
        runtime) lends its JWKS keys to an instance whose keys cannot be fetched at `start`."""
        self._predecessor = predecessor
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
        self.session_watch = revocations.sessions
        """The open WebSockets of sessions, ended when their session is revoked (handed over on reload)."""
        self._watching: asyncio.Task[None] | None = None
        self._revocations_handed_over = False
        secrets = [
            secret.value
            for clerk in (settings.clerk_settings, *(app.clerk for app in gateway.apps if app.clerk is not None))
            if (secret := clerk.webhook_signing_secret) is not None
        ]
        self.webhook_verifier = WebhookVerifier(*secrets) if secrets else None
        """The `[clerk]` instance's signing secret and each app's own instance's (revocations are by session
        and user id, unique across instances, so one deny list holds them all). None without any: the
        webhook endpoint answers 404."""
        self.asserter = (
            IdentityAsserter(
                gateway.assertion_key.key, clock, previous_keys=[item.key for item in gateway.assertion_previous_keys]
            )
            if gateway.assertion_key
            else None
        )
        self.forwarded = ForwardedPolicy(gateway.trusted_proxies)
        self.http_client = httpx.AsyncClient(
            timeout=httpx.Timeout(gateway.read_timeout, connect=gateway.connect_timeout),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            follow_redirects=False,
        )
        self.shared_refreshes = self._shared_refreshes(settings.clerk)
        """Refreshes collapsed across replicas (None without Redis or without a secret key to refresh with)."""
        self.authenticator = self._authenticator(settings.clerk, self.shared_refreshes)
        self.identity_lookups = self._lookups(self.authenticator)
        """None without a secret key: the identity headers then carry what the token alone gives."""
        self._own: dict[str, tuple[ClerkInstance, FrontendApiProxy | None, IdentityLookups | None]] = {
            name: self._own_instance(options) for name, options in settings.app_clerk.items()
        }
        """The apps' own Clerk instances by app name: each its `Authenticator`, Frontend API proxy, lookups."""
        self._unsubscribe: list[Callable[[], None]] = []
        """What `aclose` unregisters: this runtime's identity caches listening to Clerk's change webhooks."""
        for lookups in (self.identity_lookups, *(own[2] for own in self._own.values())):
            if lookups is not None:
                self._forget_on_changes(lookups)
        self.apps = build_apps(
            gateway,
            self.forwarded,
            lambda app, identity, audience, also_strip: self.identity_writer(
                identity, audience, also_strip=also_strip, lookups=self._own[app.name][2] if app.name in self._own
                else self.identity_lookups,
            ),
            lambda app: self._own[app.name][:2] if app.name in self._own else None,
        )
        """Every app (the default one of the top-level settings included): its policy, identity and proxy."""
        self.admission = Admission(
            settings,
            self.authenticator,
            self.apps,
            self.forwarded,
            keys_available=lambda: self.keys_available,
            deny_list=self.revocations.deny_list,
        )
        self.frontend_api = self._frontend_api(settings.clerk, gateway.public_origin)
        """None when the Frontend API proxy is off (no path, or no secret key to proxy with)."""
        self.keys_at_start: KeysAnswer | None = None
        self.started = False
        self.draining = False
        """Shutdown has begun: new requests are refused (503), in-flight ones finish."""
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _own_instance(
        self, options: ClerkOptions
    ) -> tuple[ClerkInstance, FrontendApiProxy | None, IdentityLookups | None]:
        """An app's own Clerk instance: its `Authenticator` (sharing the httpx client), its profile
        lookups and the Frontend API proxy its host serves."""
        # Across replicas too, under this instance's own secret (its lock names and sealed answers).
        authenticator = self._authenticator(options, self._shared_refreshes(options))
        instance = ClerkInstance(options, authenticator, explain_loops=self.settings.gateway.explain_loops)
        return instance, self._frontend_api(options, None), self._lookups(authenticator)

    def _shared_refreshes(self, options: ClerkOptions) -> RedisRefreshFlight | None:
        if self.redis is None or not options.secret_key:
            return None
        return RedisRefreshFlight(self.redis, Sealer(options.secret_key))

    def _authenticator(self, options: ClerkOptions, shared_refreshes: RedisRefreshFlight | None) -> Authenticator:
        gateway = self.settings.gateway
        return Authenticator(
            options,
            http_client=self.http_client,
            token_cache_size=gateway.token_cache_size,
            jwks_ttl=gateway.jwks_cache_ttl,
            jwks_min_refetch_interval=gateway.jwks_min_refetch_interval,
            machine_revocation_window=gateway.machine_token_revocation_window,
            clock=self.clock,
            shared_refreshes=shared_refreshes,
        )

    def _lookups(self, authenticator: Authenticator) -> IdentityLookups | None:
        """Its profile lookups, cached; None without a secret key to look them up with."""
        backend = authenticator.backend
        if backend is None:
            return None
        gateway = self.settings.gateway
        return IdentityLookups(
            backend.get_user,
            backend.get_organization,
            ttl=gateway.identity_cache_ttl,
            stale_if_error=gateway.identity_stale_if_error,
            max_entries=gateway.identity_cache_size,
            clock=self.clock,
        )

    def _frontend_api(self, options: ClerkOptions, public_origin: str | None) -> FrontendApiProxy | None:
        """The Frontend API proxy of one instance; None when it is off (no path, or no secret key to proxy
        with). `public_origin` completes a relative proxy URL (the `[clerk]` instance's only)."""
        gateway = self.settings.gateway
        if not gateway.frontend_api_path or not options.secret_key:
            return None
        return FrontendApiProxy(
            prefix=gateway.frontend_api_path,
            fapi_url=instance_frontend_api_url(options),
            secret_key=options.secret_key,
            publishable_key=options.publishable_key.raw,
            forwarded=self.forwarded,
            client=self.http_client,
            proxy_url=configured_proxy_url(options.proxy_url, public_origin, gateway.frontend_api_path),
        )

    def identity_writer(
        self,
        identity: IdentitySettings,
        audience: str | None,
        *,
        also_strip: tuple[str, ...] = (),
        lookups: IdentityLookups | None = None,
    ) -> IdentityHeaderWriter:
        """One app's identity writer: its mapping and audience (default: the public origin), the shared
        asserter and its instance's lookups (default: the `[clerk]` instance's). `also_strip`: the custom
        header names of the other apps' mappings."""
        gateway = self.settings.gateway
        lookups = lookups if lookups is not None else self.identity_lookups
        writer = IdentityHeaderWriter(
            gateway.identity_headers,
            self.asserter,
            identity=identity,
            audience=audience or gateway.public_origin,
            lookups=lookups,
            also_strip=also_strip,
        )
        if writer.needs_lookups and lookups is None:
            logger.warning(
                "identity: the mapping names Backend API fields (e-mail, names, metadata, organization name) "
                "but there is no CLERK_SECRET_KEY; they come only from session claims of the same name"
            )
        return writer

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
        predecessor, self._predecessor = self._predecessor, None  # lent once, not kept alive
        self.keys_at_start = await _start_keys(
            "JWKS", self.authenticator, predecessor.authenticator if predecessor is not None else None
        )
        for name, (instance, _, _) in self._own.items():
            before = predecessor._own.get(name) if predecessor is not None else None
            await _start_keys(
                f"JWKS of app {name}", instance.authenticator, before[0].authenticator if before is not None else None
            )
        for app in self.apps.apps:
            if app.proxy is not None:
                await app.proxy.start()
        self._watching = asyncio.ensure_future(self._end_revoked_connections())
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

    def _forget_on_changes(self, lookups: IdentityLookups) -> None:
        """A user or organization that changed (a webhook, heard by any replica) is looked up afresh."""
        self._unsubscribe += [
            self.revocations.on_user_changed(lambda change: lookups.forget_user(change.subject_id)),
            self.revocations.on_organization_changed(lambda change: lookups.forget_organization(change.subject_id)),
        ]

    async def _end_revoked_connections(self) -> None:
        """A revoked session's open WebSockets close within a quarter of a second (on every replica,
        since the deny list is shared there)."""
        watch = self.session_watch
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            if ended := watch.check():
                logger.info("revocation: closed %d WebSocket connection(s) of revoked sessions", ended)

    async def aclose(self) -> None:
        self.started = False
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for app in self.apps.apps:
            if app.proxy is not None:
                await app.proxy.aclose()
        if self.identity_lookups is not None:
            await self.identity_lookups.aclose()
        for instance, _, lookups in self._own.values():
            if lookups is not None:
                await lookups.aclose()
            await instance.authenticator.aclose()
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

    def successor(self, settings: Settings) -> EdgeRuntime:
        """The runtime for reloaded settings, sharing what lives as long as the process (the revocations:
        deny list and feed; the Redis connection) rather than building it again. This runtime still owns
        them until `hand_over_shared`; a successor that fails to start gives them back the same way."""
        return EdgeRuntime(
            settings, clock=self.clock, revocations=self.revocations, redis=self.redis, predecessor=self
        )

    def hand_over_shared(self) -> None:
        """Closing this runtime leaves the shared revocations and Redis connection open (another has them)."""
        self.hand_over_revocations()
        self.hand_over_redis()

    def app_named(self, name: str) -> App | None:
        return next((app for app in self.apps.apps if app.name == name), None)

    @property
    def keys_available(self) -> bool:
        """Whether tokens can be verified at all right now (a PEM key, or a JWKS loaded at least once)."""
        if self.settings.clerk.jwt_key is not None:
            return True
        return len(self.authenticator.keys) > 0


async def _start_keys(what: str, authenticator: Authenticator, before: Authenticator | None) -> KeysAnswer | None:
    """Load an instance's JWKS; when that fails, verify with the keys the runtime before a reload loaded."""
    keys = await authenticator.start()
    if keys is not None and keys.failure is not None:
        kept = before is not None and authenticator.adopt_keys(before)
        logger.warning(
            "%s not loaded at start (%s); %s", what, keys.failure.reason,
            "verifying with the keys loaded before the reload meanwhile" if kept else "will retry on demand",
        )  # fmt: skip
    return keys
