"""The one table from (decision, policy verdict) to an answer, row by row, and the decision's inputs.

Every entrance renders these outcomes; none decides again. The last test holds the memo key to the
decision: running the protocol table with a header mapping that records every read, the decision
reads no header that `decision_inputs.DECISION_HEADERS` (and so the memo key) leaves out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.clerk.authorization import REVERIFICATION_PRESETS
from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.clerk.decision_inputs import DECISION_HEADERS, decision_key
from gateway.edge.loops import Loop
from gateway.edge.outcomes import LOOP_STOPPED, Deny, Proceed, Redirect, outcome_for
from gateway.edge.policy import Decision
from gateway.settings import RouteRule
from tests.unit.test_decision_table import ROWS, Row

CLAIMS = SessionClaims("user_1", "sess_1", "active", None, None, None, (), None, None, None)
SIGNED_IN = AuthState("signed-in", token="t", claims=CLAIMS, headers=(("x-clerk-auth-status", "signed-in"),))
SIGNED_OUT = AuthState("signed-out", "session-token-and-uat-missing", headers=(("x-clerk-auth-reason", "r"),))
HANDSHAKE = AuthState("handshake", "dev-browser-missing", headers=(("location", "https://fapi/hs"), ("x-a", "1")))
RULE = RouteRule("/*")


STRICT = REVERIFICATION_PRESETS["strict"]


def decide(state: AuthState, verdict: str | None, *, is_api: bool = False, **options: Any) -> Any:
    reverification = STRICT if verdict == "reverify" else None
    decision = Decision(verdict, RULE, is_api, reverification=reverification) if verdict else None  # type: ignore[arg-type]
    arguments = {"navigation": True, "redirectable": True, "keys_available": True, "carries_token": False, **options}
    return outcome_for(state, decision, sign_in_location=lambda: "https://accounts/sign-in", **arguments)


@pytest.mark.parametrize(
    ("name", "state", "verdict", "options", "row", "status"),
    [
        ("a handshake redirects whatever the route", HANDSHAKE, None, {}, "clerk-redirect", 307),
        ("an allowed request proceeds", SIGNED_IN, "allow", {}, "allowed", 200),
        ("a public path lets a signed-out visitor in", SIGNED_OUT, "allow", {}, "allowed", 200),
        ("a signed-in user without the role is forbidden", SIGNED_IN, "forbidden", {}, "forbidden", 403),
        ("a deny rule refuses a signed-in user", SIGNED_IN, "deny", {}, "denied", 403),
        ("a deny rule refuses a signed-out visitor, no sign-in", SIGNED_OUT, "deny", {}, "denied", 403),
        ("an old verification asks to reverify", SIGNED_IN, "reverify", {}, "reverification-required", 403),
        (
            "no keys and a token sent: try again",
            SIGNED_OUT,
            "sign-in",
            {"keys_available": False, "carries_token": True},
            "keys-unavailable",
            503,
        ),
        ("no keys, no token: sign in", SIGNED_OUT, "sign-in", {"keys_available": False}, "sign-in-redirect", 307),
        ("a page navigation goes to sign-in", SIGNED_OUT, "sign-in", {}, "sign-in-redirect", 307),
        ("an API call gets 401", SIGNED_OUT, "sign-in", {"is_api": True, "navigation": False}, "unauthenticated", 401),
        ("an API path a browser opens gets 401", SIGNED_OUT, "sign-in", {"is_api": True}, "unauthenticated", 401),
        (
            "a form POST gets 401, not a redirect that re-posts",
            SIGNED_OUT,
            "sign-in",
            {"redirectable": False},
            "unauthenticated",
            401,
        ),
    ],
)
def test_outcome_table(name: str, state: AuthState, verdict: str | None, options: dict[str, Any], row: str,
                       status: int) -> None:  # fmt: skip
    outcome = decide(state, verdict, **options)
    assert outcome.row == row, name
    assert (200 if isinstance(outcome, Proceed) else outcome.status) == status, name


def test_a_clerk_redirect_keeps_the_decisions_headers_but_its_location() -> None:
    outcome = decide(HANDSHAKE, None)
    assert isinstance(outcome, Redirect)
    assert outcome.location == "https://fapi/hs" and outcome.headers == [(b"x-a", b"1")]


def test_an_allowed_request_carries_the_decisions_headers_to_the_apps_answer() -> None:
    outcome = decide(SIGNED_IN, "allow")
    assert isinstance(outcome, Proceed) and outcome.response_headers == [(b"x-clerk-auth-status", b"signed-in")]


def test_a_refusal_says_clerks_reason_and_a_page_only_for_navigations() -> None:
    api = decide(SIGNED_OUT, "sign-in", is_api=True, navigation=False, redirectable=False)
    assert isinstance(api, Deny) and api.extra == {"reason": "session-token-and-uat-missing"} and not api.page
    page = decide(SIGNED_OUT, "sign-in", redirectable=False)
    assert isinstance(page, Deny) and page.page
    forbidden = decide(SIGNED_IN, "forbidden", navigation=False)
    assert isinstance(forbidden, Deny) and not forbidden.page


def test_reverification_answers_clerks_body_to_programs_and_a_page_to_people() -> None:
    api = decide(SIGNED_IN, "reverify", is_api=True, navigation=False)
    assert isinstance(api, Deny) and not api.page and api.code == "reverification_required"
    assert api.body == (
        b'{"clerk_error":{"type":"forbidden","reason":"reverification-error","metadata":{"reverification":"strict"}}}'
    )
    page = decide(SIGNED_IN, "reverify")
    assert isinstance(page, Deny) and page.page
    assert "second factor verified in the last 10 minutes" in page.message and "sign in again" in page.message


def test_a_pending_session_let_in_says_so_to_the_identity_writer() -> None:
    decision = Decision("allow", RULE, False, pending_signed_in=True)
    outcome = outcome_for(SIGNED_IN, decision, navigation=True, redirectable=True, keys_available=True,
                          carries_token=False, sign_in_location=lambda: "")  # fmt: skip
    assert isinstance(outcome, Proceed) and outcome.pending_signed_in


def test_an_api_path_opened_by_a_browser_gets_the_401_page_with_a_sign_in_link() -> None:
    opened = decide(SIGNED_OUT, "sign-in", is_api=True)
    assert isinstance(opened, Deny) and opened.status == 401 and opened.page
    assert opened.details is not None and opened.details.sign_in_url == "https://accounts/sign-in"


def test_the_403_page_says_who_is_signed_in_and_where_to_come_back() -> None:
    forbidden = decide(SIGNED_IN, "forbidden", return_path="/admin")
    assert isinstance(forbidden, Deny) and forbidden.page and forbidden.details is not None
    assert (forbidden.details.signed_in_as, forbidden.details.return_path) == ("user_1", "/admin")


LOOP = Loop("authorized-parties", "The token's azp is not allowed.", "Add it.", 4)
COOKIE = (b"set-cookie", b"__gateway_loop=x")


@pytest.mark.parametrize(("state", "verdict"), [(HANDSHAKE, None), (SIGNED_OUT, "sign-in")])
def test_a_redirect_that_would_continue_a_loop_is_the_loop_page(state: AuthState, verdict: str | None) -> None:
    asked: list[str] = []

    def in_a_loop(state: AuthState, kind: str) -> tuple[Loop | None, tuple[bytes, bytes]]:
        asked.append(kind)
        return LOOP, COOKIE

    outcome = decide(state, verdict, loop_check=in_a_loop, explain_loops=True)
    assert asked == ["h" if verdict is None else "s"]
    assert isinstance(outcome, Deny) and outcome.row == "redirect-loop" and outcome.status == 508 and outcome.page
    assert outcome.message == LOOP.explanation and outcome.details is not None and outcome.details.fix == "Add it."
    assert outcome.extra == {"cause": "authorized-parties", "reason": state.reason} and COOKIE in outcome.headers
    hidden = decide(state, verdict, loop_check=in_a_loop, explain_loops=False)
    assert isinstance(hidden, Deny) and hidden.message == LOOP_STOPPED and hidden.details is None


def test_a_redirect_outside_a_loop_carries_the_memory_cookie() -> None:
    outcome = decide(SIGNED_OUT, "sign-in", loop_check=lambda state, kind: (None, COOKIE))
    assert isinstance(outcome, Redirect) and COOKIE in outcome.headers


def test_the_sign_in_redirect_is_never_cached() -> None:
    outcome = decide(SIGNED_OUT, "sign-in")
    assert isinstance(outcome, Redirect) and (b"cache-control", b"no-store") in outcome.headers


# ------------------------------------------------------------------------------------ the decision's inputs


class RecordingHeaders(dict[str, str]):
    """A header mapping that remembers every name the decision looks up."""

    read: set[str]
    read_all: bool

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read = set()
        self.read_all = False

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def items(self) -> Any:  # a refresh forwards them all to the Backend API
        self.read_all = True
        return super().items()

    def __iter__(self) -> Iterator[str]:
        self.read_all = True
        return super().__iter__()


@pytest.mark.parametrize("row", ROWS, ids=[row.number for row in ROWS])
def test_the_decision_reads_no_header_its_memo_key_leaves_out(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.clerk import decide as decide_module
    from tests.support.clerk import options, run

    recorded: list[RecordingHeaders] = []
    original = decide_module._build_context

    def recording(request: Any, *args: Any, **kwargs: Any) -> Any:
        headers = RecordingHeaders(request.headers)
        recorded.append(headers)
        return original(dataclasses.replace(request, headers=headers), *args, **kwargs)

    monkeypatch.setattr(decide_module, "_build_context", recording)
    state = run(row.request(), options(row.pk, **row.opts), now=row.now, backend=row.backend())
    assert recorded, "the decision builds its context from the request"
    assert set().union(*(headers.read for headers in recorded)) <= set(DECISION_HEADERS)
    if any(headers.read_all for headers in recorded):  # only an outcome the memo never keeps may read them all
        assert state.status != "signed-in" or state.headers


@pytest.mark.parametrize(
    ("name", "headers", "query"),
    [
        ("no token at all", {"host": "a"}, ""),
        ("a handshake to resolve", {"host": "a", "cookie": "__session=x; __clerk_handshake=y"}, ""),
        ("a __clerk parameter", {"host": "a", "cookie": "__session=x"}, "__clerk_db_jwt=1"),
        ("an escape that could spell one", {"host": "a", "cookie": "__session=x"}, "%5F_clerk_synced=1"),
    ],
)
def test_requests_decided_afresh_have_no_memo_key(name: str, headers: dict[str, str], query: str) -> None:
    assert decision_key("GET", "http", "h:80", headers, "/", query, by_path=False) is None, name


def test_every_input_changes_the_memo_key() -> None:
    base = {name: "v" for name in DECISION_HEADERS} | {"cookie": "__session=x"}
    keys = {decision_key("GET", "http", "h:80", base, "/p", "", by_path=True)}
    for name in DECISION_HEADERS:
        keys.add(decision_key("GET", "http", "h:80", {**base, name: "other"}, "/p", "", by_path=True))
        keys.add(decision_key("GET", "http", "h:80", {k: v for k, v in base.items() if k != name} | {
            "cookie": "__session=x"}, "/p", "", by_path=True) if name != "cookie" else None)  # fmt: skip
    keys |= {
        decision_key("POST", "http", "h:80", base, "/p", "", by_path=True),
        decision_key("GET", "https", "h:80", base, "/p", "", by_path=True),
        decision_key("GET", "http", "other:80", base, "/p", "", by_path=True),
        decision_key("GET", "http", "h:80", base, "/q", "", by_path=True),
    }
    keys.discard(None)
    assert len(keys) == 1 + len(DECISION_HEADERS) + (len(DECISION_HEADERS) - 1) + 4
