"""In-memory state of the emulated instance: clients, sessions, sign-ins and one-time tokens.

Records are mutable on purpose (a session gets revoked, a client gets a new active session); every
change goes through `EmulatorState` under one lock because the server thread and the test thread
both touch it. Time comes from the injected clock.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.emulator.clock import Clock
from gateway.emulator.config import EmulatorConfig
from gateway.emulator.ids import IdFactory
from gateway.emulator.seed import Seed, SeedOrganization, SeedUser

EventListener = Callable[[str, object], None]
"""Told `(event type, record)` when something Clerk sends a webhook for happens (`session.revoked`, ...)."""

ONE_TIME_TOKEN_LIFETIME = 300
"""Seconds a handshake nonce or a satellite link token stays redeemable."""


@dataclass(slots=True)
class Client:
    id: str
    created_at: int
    updated_at: int
    session_ids: list[str] = field(default_factory=list)
    last_active_session_id: str | None = None
    sign_in_id: str | None = None
    last_authentication_strategy: str | None = None
    signed_in_at: int = 0
    """Epoch seconds of the last sign-in or sign-out: the value of `__client_uat` (0 = signed out)."""


@dataclass(slots=True)
class Session:
    id: str
    client_id: str
    user_id: str
    status: str
    created_at: int
    updated_at: int
    last_active_at: int
    expire_at: int
    abandon_at: int
    refresh_token: str
    factor_verified_at: int
    last_active_organization_id: str | None = None


@dataclass(slots=True)
class SignIn:
    id: str
    client_id: str
    identifier: str | None
    user_id: str | None
    status: str
    created_at: int
    abandon_at: int
    created_session_id: str | None = None


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """What a satellite link token remembers between `/v1/client/sync` and `/v1/client/link`."""

    client_id: str
    satellite_domain: str
    redirect_url: str
    handshake_query: tuple[tuple[str, str], ...] | None
    proxy_url: str | None
    expires_at: float


class EmulatorState:
    """The store. Methods are small transactions; callers never hold records across requests."""

    def __init__(self, config: EmulatorConfig, seed: Seed, clock: Clock, ids: IdFactory) -> None:
        self.config = config
        self.seed = seed
        self.clock = clock
        self.ids = ids
        self.lock = threading.RLock()
        self.clients: dict[str, Client] = {}
        self.sessions: dict[str, Session] = {}
        self.sign_ins: dict[str, SignIn] = {}
        self.dev_browsers: dict[str, str] = {}
        self.client_cookies: dict[str, str] = {}
        self.nonces: dict[str, tuple[list[str], float]] = {}
        self.links: dict[str, LinkRequest] = {}
        self.calls: Counter[str] = Counter()
        """Counts of interesting calls, e.g. `calls["refresh"]`, `calls["handshake"]`, `calls["jwks"]`."""
        self.listeners: list[EventListener] = []
        """Called outside the lock, after the change (the webhook sender queues and returns)."""
        self.deleted_user_ids: set[str] = set()

    def emit(self, event_type: str, record: object) -> None:
        for listener in tuple(self.listeners):
            listener(event_type, record)

    # -- time ----------------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    # -- counters ------------------------------------------------------------------------------

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] += 1

    @property
    def refresh_calls(self) -> int:
        return self.calls["refresh"]

    # -- clients -------------------------------------------------------------------------------

    def new_client(self) -> Client:
        now = self.now()
        client = Client(id=self.ids.new("client"), created_at=now, updated_at=now)
        with self.lock:
            self.clients[client.id] = client
        return client

    def new_dev_browser(self, client: Client | None = None) -> tuple[str, Client]:
        token = self.ids.new("dvb")
        client = client or self.new_client()
        with self.lock:
            self.dev_browsers[token] = client.id
        return token, client

    def client_for_dev_browser(self, token: str | None) -> Client | None:
        if not token:
            return None
        with self.lock:
            client_id = self.dev_browsers.get(token)
            return self.clients.get(client_id) if client_id else None

    def new_client_cookie(self, client: Client) -> str:
        value = self.ids.new("clc", 24)
        with self.lock:
            self.client_cookies[value] = client.id
        return value

    def client_for_cookie(self, value: str | None) -> Client | None:
        if not value:
            return None
        with self.lock:
            client_id = self.client_cookies.get(value)
            return self.clients.get(client_id) if client_id else None

    # -- users and organizations ---------------------------------------------------------------

    def user(self, user_id: str) -> SeedUser | None:
        return self.seed.user(user_id)

    def organization(self, id_or_slug: str) -> SeedOrganization | None:
        return self.seed.organization(id_or_slug)

    # -- sessions ------------------------------------------------------------------------------

    def session(self, session_id: str) -> Session | None:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is not None and session.status == "active" and self.now() >= session.expire_at:
                session.status = "expired"
            return session

    def active_session(self, client: Client | None) -> Session | None:
        if client is None or client.last_active_session_id is None:
            return None
        session = self.session(client.last_active_session_id)
        return session if session is not None and session.status == "active" else None

    def create_session(self, client: Client, user: SeedUser, strategy: str) -> Session:
        now = self.now()
        session = Session(
            id=self.ids.new("sess"),
            client_id=client.id,
            user_id=user.id,
            status="active",
            created_at=now,
            updated_at=now,
            last_active_at=now,
            expire_at=now + self.config.session_lifetime,
            abandon_at=now + 2 * self.config.session_lifetime,
            refresh_token=self.ids.secret(32),
            factor_verified_at=now,
        )
        memberships = self.seed.memberships_of_user(user.id)
        if memberships:
            session.last_active_organization_id = memberships[0].organization_id
        with self.lock:
            self.sessions[session.id] = session
            client.session_ids.append(session.id)
            client.last_active_session_id = session.id
            client.last_authentication_strategy = strategy
            client.signed_in_at = now
            client.updated_at = now
        return session

    def end_session(self, session: Session, status: str, *, notify: bool = True) -> None:
        """Mark a session ended/revoked/removed; its client becomes signed out if it was the active one.

        An active session that ends this way is announced (`session.<status>`) unless `notify` is False."""
        now = self.now()
        with self.lock:
            ending = session.status == "active"
            if ending:
                session.status = status
            session.updated_at = now
            client = self.clients.get(session.client_id)
            if client is not None and client.last_active_session_id == session.id:
                client.last_active_session_id = None
                client.signed_in_at = 0
                client.updated_at = now
        if ending and notify:
            self.emit(f"session.{status}", session)

    def delete_user(self, user_id: str) -> bool:
        """Delete a user as Clerk does: the user, their memberships, and their sessions (revoked, so no
        refresh succeeds) go; one `user.deleted` is announced. False if there is no such user."""
        with self.lock:
            user = self.seed.user(user_id)
            if user is None:
                return False
            self.seed = dataclasses.replace(
                self.seed,
                users=tuple(u for u in self.seed.users if u.id != user_id),
                memberships=tuple(m for m in self.seed.memberships if m.user_id != user_id),
            )
            self.deleted_user_ids.add(user_id)
            sessions = [s for s in self.sessions.values() if s.user_id == user_id]
        for session in sessions:
            self.end_session(session, "revoked", notify=False)
        self.emit("user.deleted", user)
        return True

    def set_active_organization(self, session: Session, id_or_slug: str | None) -> bool:
        """Activate an organization the user belongs to ("" = personal account); False if not allowed."""
        if id_or_slug is None:
            return True
        if id_or_slug == "":
            organization_id = None
        else:
            organization = self.seed.organization(id_or_slug)
            if organization is None or self.seed.membership(session.user_id, organization.id) is None:
                return False
            organization_id = organization.id
        with self.lock:
            session.last_active_organization_id = organization_id
            session.updated_at = self.now()
        return True

    def touch(self, session: Session) -> None:
        with self.lock:
            session.last_active_at = self.now()
            client = self.clients.get(session.client_id)
            if client is not None and client.last_active_session_id != session.id:
                client.last_active_session_id = session.id
                client.updated_at = self.now()

    # -- sign-ins ------------------------------------------------------------------------------

    def new_sign_in(self, client: Client, identifier: str | None, user: SeedUser | None) -> SignIn:
        now = self.now()
        sign_in = SignIn(
            id=self.ids.new("sia"),
            client_id=client.id,
            identifier=identifier,
            user_id=user.id if user else None,
            status="needs_first_factor" if user else "needs_identifier",
            created_at=now,
            abandon_at=now + 24 * 3600,
        )
        with self.lock:
            self.sign_ins[sign_in.id] = sign_in
            client.sign_in_id = sign_in.id
        return sign_in

    def complete_sign_in(self, sign_in: SignIn, client: Client, user: SeedUser) -> Session:
        session = self.create_session(client, user, "password")
        with self.lock:
            sign_in.status = "complete"
            sign_in.created_session_id = session.id
            client.sign_in_id = None
        return session

    # -- one-time tokens -----------------------------------------------------------------------

    def store_nonce(self, directives: list[str]) -> str:
        nonce = self.ids.new("nonce", 24)
        with self.lock:
            self.nonces[nonce] = (list(directives), self.clock() + ONE_TIME_TOKEN_LIFETIME)
        return nonce

    def take_nonce(self, nonce: str) -> list[str] | None:
        with self.lock:
            entry = self.nonces.pop(nonce, None)
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def store_link(self, request: LinkRequest) -> str:
        token = self.ids.new("link", 24)
        with self.lock:
            self.links[token] = request
        return token

    def take_link(self, token: str) -> LinkRequest | None:
        with self.lock:
            request = self.links.pop(token, None)
        if request is None or request.expires_at <= self.clock():
            return None
        return request

    def snapshot(self) -> dict[str, Any]:
        """A small summary for debugging and the admin endpoint."""
        with self.lock:
            return {
                "clients": len(self.clients),
                "sessions": {sid: s.status for sid, s in self.sessions.items()},
                "calls": dict(self.calls),
            }
