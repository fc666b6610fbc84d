"""The browser's memory of redirects (`edge/loops.py`): which sequences of hops are a loop, and which are not."""

from __future__ import annotations

from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.clerk.request import RequestView
from gateway.edge.loops import COOKIE, LOOP_HOPS, LOOP_WINDOW, Loop, LoopGuard

CLAIMS = SessionClaims("user_1", "sess_1", "active", None, None, None, (), None, None, None)
SIGNED_IN = AuthState("signed-in", token="t", claims=CLAIMS)
NOW = 1_800_000_000.0


def out(reason: str, failure: str = "") -> AuthState:
    return AuthState("signed-out", reason, handshake_failure=failure)


class Browser:
    """One browser's cookies as the guard sees them, hop after hop."""

    def __init__(self, guard: LoopGuard, extra_cookies: str = "") -> None:
        self.guard = guard
        self.memory = ""
        self.extra = extra_cookies

    def hop(self, kind: str, state: AuthState, at: float = NOW) -> Loop | None:
        cookies = "; ".join(filter(None, [self.extra, f"{COOKIE}={self.memory}" if self.memory else ""]))
        headers = [("sec-fetch-dest", "document"), ("cookie", cookies)] if cookies else [("sec-fetch-dest", "document")]
        view = RequestView.build("GET", "http://app.test/dashboard", headers)
        loop, (name, value) = self.guard.check(view, state, kind, at, secure=False)
        assert name == b"set-cookie"
        self.memory = value.decode().split(";", 1)[0].split("=", 1)[1]
        return loop


def test_a_first_sign_in_is_no_loop() -> None:
    browser = Browser(LoopGuard("sk_test_x"))
    assert browser.hop("h", AuthState("handshake", "dev-browser-missing")) is None
    assert browser.hop("h", out("session-token-missing")) is None  # the resolution, before signing in
    assert browser.hop("s", out("session-token-and-uat-missing")) is None
    assert browser.hop("h", AuthState("handshake", "dev-browser-sync")) is None
    assert browser.hop("h", SIGNED_IN) is None  # signed in: the sign-in completed


def test_coming_back_from_sign_in_through_a_handshake_still_signed_out_is_a_loop_named_by_its_failure() -> None:
    browser = Browser(LoopGuard("sk_test_x"))
    assert browser.hop("s", out("session-token-and-uat-missing")) is None
    assert browser.hop("h", AuthState("handshake", "dev-browser-sync")) is None
    loop = browser.hop("s", out("session-token-and-uat-missing", failure="token-invalid-authorized-parties"))
    assert loop is not None and loop.cause == "authorized-parties" and loop.hops == 3
    assert browser.memory == ""  # answered: the memory is cleared


def test_a_token_refused_for_its_key_right_after_a_sign_in_is_a_loop() -> None:
    browser = Browser(LoopGuard("sk_test_x"))
    assert browser.hop("s", out("token-invalid-signature")) is None
    loop = browser.hop("s", out("token-invalid-signature"), NOW + 2)
    assert loop is not None and loop.cause == "keys"


def test_a_sign_in_after_a_completed_one_is_no_loop() -> None:
    browser = Browser(LoopGuard("sk_test_x"))
    browser.hop("s", out("session-token-and-uat-missing"))
    browser.hop("h", SIGNED_IN)
    assert browser.hop("s", out("session-token-and-uat-missing")) is None


def test_a_second_clock_handshake_right_after_the_first_is_a_loop_but_not_a_token_lifetime_later() -> None:
    browser = Browser(LoopGuard("sk_test_x"))
    assert browser.hop("h", AuthState("handshake", "session-token-iat-in-the-future")) is None
    assert browser.hop("h", SIGNED_IN) is None
    loop = browser.hop("h", AuthState("handshake", "session-token-iat-in-the-future"), NOW + 1)
    assert loop is not None and loop.cause == "clock-behind"
    later = Browser(LoopGuard("sk_test_x"))
    expired = AuthState("handshake", "session-token-expired-refresh-non-eligible-no-refresh-cookie")
    assert later.hop("h", expired) is None and later.hop("h", SIGNED_IN) is None
    assert later.hop("h", expired, NOW + 5) is None


def test_clerks_guard_firing_is_a_loop() -> None:
    browser = Browser(LoopGuard("sk_test_x"), extra_cookies="__clerk_redirect_count=3")
    loop = browser.hop("s", out("satellite-needs-syncing"))
    assert loop is not None and loop.cause == "satellite-sync"


def test_more_hops_than_the_limit_within_the_window_is_a_loop_whatever_the_reasons() -> None:
    browser = Browser(LoopGuard("sk_test_x"))
    for _ in range(LOOP_HOPS):
        assert browser.hop("h", AuthState("handshake", "primary-responds-to-syncing")) is None
    loop = browser.hop("h", AuthState("handshake", "primary-responds-to-syncing"))
    assert loop is not None and loop.cause == "unknown" and loop.hops == LOOP_HOPS + 1


def test_the_memory_is_forgotten_after_the_window_and_when_forged() -> None:
    browser = Browser(LoopGuard("sk_test_x"))
    browser.hop("s", out("session-token-and-uat-missing"))
    browser.hop("h", AuthState("handshake", "dev-browser-sync"))
    assert browser.hop("s", out("session-token-and-uat-missing"), NOW + LOOP_WINDOW + 1) is None
    forged = Browser(LoopGuard("sk_test_other"))
    forged.memory = browser.memory  # signed with another key
    assert forged.hop("s", out("session-token-and-uat-missing")) is None
