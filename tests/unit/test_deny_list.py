"""The deny list and the feed: what a revocation refuses, for how long, and within what bound."""

from __future__ import annotations

import pytest

from gateway.clerk.claims import parse_claims
from gateway.clerk.decide import AuthState
from gateway.clerk.machine import MachineIdentity
from gateway.revocation import (
    REVOKED,
    Change,
    ChangeListeners,
    DenyList,
    LocalFeed,
    Revocation,
    is_revoked,
    unless_revoked,
)
from gateway.revocation.watch import SessionWatch

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def a_deny_list(clock: Clock | None = None, *, max_entries: int = 100) -> DenyList:
    return DenyList(max_entries=max_entries, clock=clock or Clock())


def session(subject: str, at: float = NOW, retention: float = 3600) -> Revocation:
    return Revocation("session", subject, at, at + retention)


def user(subject: str, at: float = NOW, retention: float = 3600) -> Revocation:
    return Revocation("user", subject, at, at + retention)


@pytest.mark.parametrize(
    ("name", "revocation", "asked", "refused"),
    [
        ("the revoked session, any iat", session("sess_1"), ("sess_1", "user_1", NOW + 30), True),
        ("another session of the same user", session("sess_1"), ("sess_2", "user_1", NOW - 30), False),
        ("a deleted user's token issued before", user("user_1"), ("sess_9", "user_1", NOW - 30), True),
        ("a deleted user's token issued at the same second", user("user_1"), ("sess_9", "user_1", NOW), True),
        ("a token issued after the user revocation", user("user_1"), ("sess_9", "user_1", NOW + 1), False),
        ("a token without iat cannot show it is newer", user("user_1"), ("sess_9", "user_1", None), True),
        ("another user", user("user_1"), ("sess_9", "user_2", NOW - 30), False),
        ("no session id, no user id", session("sess_1"), (None, None, NOW), False),
    ],
)
def test_what_a_revocation_refuses(
    name: str, revocation: Revocation, asked: tuple[str | None, str | None, float | None], refused: bool
) -> None:
    deny_list = a_deny_list()
    assert deny_list.apply(revocation), name
    assert deny_list.is_revoked(*asked) is refused, name


def test_an_empty_list_is_inactive_and_a_revocation_activates_it() -> None:
    deny_list = a_deny_list()
    assert not deny_list.active and len(deny_list) == 0
    deny_list.apply(session("sess_1"))
    assert deny_list.active and len(deny_list) == 1


def test_apply_says_whether_the_revocation_was_new_and_keeps_the_widest_reach() -> None:
    deny_list = a_deny_list()
    assert deny_list.apply(user("user_1", at=NOW)) is True
    assert deny_list.apply(user("user_1", at=NOW)) is False, "the same revocation again"
    assert deny_list.apply(user("user_1", at=NOW - 60)) is False, "an older one reaches no further"
    assert deny_list.apply(user("user_1", at=NOW + 60)) is True, "a later one reaches further"
    assert deny_list.is_revoked("sess_9", "user_1", NOW + 30)
    assert deny_list.entries() == [user("user_1", at=NOW + 60)]


def test_entries_expire_with_the_retention() -> None:
    clock = Clock()
    deny_list = a_deny_list(clock)
    deny_list.apply(session("sess_1", retention=60))
    deny_list.apply(user("user_1", retention=120))
    clock.now = NOW + 60
    assert not deny_list.is_revoked("sess_1", None, NOW), "expired on the dot"
    assert deny_list.is_revoked(None, "user_1", NOW)
    assert deny_list.entries() == [user("user_1", retention=120)]
    clock.now = NOW + 120
    assert deny_list.entries() == [] and len(deny_list) == 0 and not deny_list.active


def test_a_revocation_that_has_already_expired_is_not_held() -> None:
    deny_list = a_deny_list()
    assert deny_list.apply(session("sess_1", at=NOW - 7200)) is False
    assert not deny_list.active


def test_the_list_is_bounded_and_drops_the_entry_that_expires_first() -> None:
    deny_list = a_deny_list(max_entries=3)
    deny_list.apply(session("sess_1", at=NOW - 3))
    deny_list.apply(user("user_1", at=NOW - 2))
    deny_list.apply(session("sess_2", at=NOW - 1))
    deny_list.apply(user("user_2", at=NOW))
    assert len(deny_list) == 3
    assert not deny_list.is_revoked("sess_1", None, NOW)
    assert deny_list.is_revoked(None, "user_1", NOW - 10) and deny_list.is_revoked("sess_2", None, NOW)


def a_signed_in_state(**claims: object) -> AuthState:
    payload = {"sub": "user_1", "sid": "sess_1", "iat": int(NOW) - 10, **claims}
    return AuthState("signed-in", token="t", claims=parse_claims(payload))


def test_a_revoked_session_is_signed_out_with_the_gateways_reason() -> None:
    deny_list = a_deny_list()
    state = a_signed_in_state()
    assert unless_revoked(deny_list, state) is state, "nothing revoked: the state as it is"
    deny_list.apply(session("sess_1"))
    revoked = unless_revoked(deny_list, state)
    assert revoked is REVOKED
    assert (revoked.status, revoked.reason, revoked.claims, revoked.token) == (
        "signed-out",
        "session-revoked",
        None,
        None,
    )
    assert ("x-clerk-auth-reason", "session-revoked") in revoked.headers


def test_a_user_revocation_reads_the_tokens_iat() -> None:
    deny_list = a_deny_list()
    deny_list.apply(user("user_1"))
    assert is_revoked(deny_list, a_signed_in_state(iat=int(NOW) - 10))
    assert not is_revoked(deny_list, a_signed_in_state(iat=int(NOW) + 10))


def test_machine_tokens_and_signed_out_states_are_never_affected() -> None:
    deny_list = a_deny_list()
    deny_list.apply(user("user_1"))
    machine = MachineIdentity(token_type="api_key", id="ak_1", subject="user_1", scopes=())
    assert not is_revoked(deny_list, AuthState("signed-in", token="ak_x", machine=machine))
    assert not is_revoked(deny_list, AuthState("signed-out", "session-token-and-uat-missing"))


async def test_the_local_feed_applies_and_remembers_message_ids_for_their_ttl() -> None:
    clock = Clock()
    deny_list = a_deny_list(clock)
    listeners = ChangeListeners()
    feed = LocalFeed(deny_list, listeners, clock=clock)
    await feed.start()
    await feed.publish(session("sess_1"))
    assert deny_list.is_revoked("sess_1", None, NOW)
    assert await feed.first_delivery("msg_1", 600) is True
    assert await feed.first_delivery("msg_1", 600) is False
    assert await feed.first_delivery("msg_2", 600) is True
    clock.now = NOW + 601
    assert await feed.first_delivery("msg_1", 600) is True, "past its ttl the id is forgotten"
    await feed.forget_delivery("msg_2")
    assert await feed.first_delivery("msg_2", 600) is True, "a forgotten delivery is a first delivery again"
    await feed.forget_delivery("msg_never_seen")
    await feed.aclose()


async def test_change_listeners_are_told_and_can_leave() -> None:
    listeners = ChangeListeners()
    users: list[Change] = []
    organizations: list[Change] = []

    def failing(change: Change) -> None:
        raise RuntimeError("a broken cache")

    listeners.on_user_changed(failing)
    leave = listeners.on_user_changed(users.append)
    listeners.on_organization_changed(organizations.append)
    feed = LocalFeed(a_deny_list(), listeners)
    await feed.publish_change(Change("user", "user_1", NOW))
    await feed.publish_change(Change("organization", "org_1", NOW))
    leave()
    await feed.publish_change(Change("user", "user_2", NOW))
    assert users == [Change("user", "user_1", NOW)], "a failing listener does not stop the others"
    assert organizations == [Change("organization", "org_1", NOW)]


def test_the_session_watch_ends_the_connections_of_revoked_sessions_only() -> None:
    deny_list = a_deny_list()
    watch = SessionWatch(deny_list)
    alices, alices_other, bobs = (
        watch.open(a_signed_in_state()),
        watch.open(a_signed_in_state()),
        watch.open(a_signed_in_state(sub="user_2", sid="sess_2")),
    )
    machine = MachineIdentity(token_type="api_key", id="ak_1", subject="user_1", scopes=())
    assert watch.open(AuthState("signed-in", token="ak_x", machine=machine)) is None, "no session to revoke"
    assert alices is not None and alices_other is not None and bobs is not None
    assert watch.check() == 0 and len(watch) == 3, "nothing revoked: nothing ended"
    deny_list.apply(session("sess_1"))
    assert watch.check() == 2
    assert alices.is_set() and alices_other.is_set() and not bobs.is_set()
    assert len(watch) == 1 and watch.check() == 0, "an ended connection is forgotten"
    watch.close(bobs)
    assert len(watch) == 0
