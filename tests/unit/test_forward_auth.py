"""Forward-auth's original request: one description, believed as the shipped recipes send it."""

from __future__ import annotations

from typing import Any, cast

import pytest

from gateway.clerk.authorization import REVERIFICATION_PRESETS
from gateway.edge.forward_auth import original_request, render
from gateway.edge.outcomes import Deny, reverification_error_body

PROXY = [(b"x-forwarded-method", b"GET"), (b"x-forwarded-uri", b"/secret?a=1"), (b"x-forwarded-host", b"app.test"),
         (b"x-forwarded-proto", b"https")]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "headers", "expected"),
    [
        ("Traefik and Caddy", PROXY, ("GET", b"/secret?a=1")),
        ("nginx's recipe: both spellings, agreeing", [*PROXY, (b"x-original-url", b"https://app.test/secret?a=1"),
         (b"x-original-method", b"get")], ("GET", b"/secret?a=1")),
        ("nginx's older convention alone", [(b"x-original-url", b"/secret"), (b"x-original-method", b"POST")],
         ("POST", b"/secret")),
        ("an absolute X-Original-URL names the host", [(b"x-original-url", b"http://app.test/x")], ("GET", b"/x")),
    ],
)  # fmt: skip
def test_the_original_request(name: str, headers: list[tuple[bytes, bytes]], expected: tuple[str, bytes]) -> None:
    original = original_request(headers)
    assert not isinstance(original, Deny), name
    assert original[:2] == expected, name


def test_an_absolute_x_original_url_supplies_the_host_and_scheme_the_decision_reads() -> None:
    original = original_request([(b"x-original-url", b"https://app.test:8443/x")])
    assert not isinstance(original, Deny)
    assert (b"x-forwarded-host", b"app.test:8443") in original[2] and (b"x-forwarded-proto", b"https") in original[2]


@pytest.mark.parametrize(
    ("name", "headers", "code"),
    [
        ("nothing", [(b"x-forwarded-host", b"app.test")], "missing_original_request"),
        ("a client's X-Original-URL beside Caddy's X-Forwarded-Uri", [*PROXY, (b"x-original-url", b"/public/x")],
         "conflicting_original_request"),
        ("a client's X-Forwarded-Uri beside nginx's X-Original-URL", [(b"x-original-url", b"/secret"),
         (b"x-forwarded-uri", b"/public/x")], "conflicting_original_request"),
        ("another host", [*PROXY, (b"x-original-url", b"https://evil.example/secret?a=1")],
         "conflicting_original_request"),
        ("another method", [*PROXY, (b"x-original-method", b"DELETE")], "conflicting_original_request"),
        ("not a method", [(b"x-forwarded-uri", b"/"), (b"x-forwarded-method", b"GET /x HTTP/1.1")],
         "bad_original_request"),
        ("an X-Original-URL whose host is a bracket that is no IP (nginx writes the client's Host in it)",
         [(b"x-original-url", b"http://[evil]/x")], "bad_original_request"),
        ("an X-Original-URL with an unclosed bracket", [(b"x-original-url", b"http://[::1/x")],
         "bad_original_request"),
    ],
)  # fmt: skip
def test_descriptions_that_disagree_or_are_missing_are_refused(
    name: str, headers: list[tuple[bytes, bytes]], code: str
) -> None:
    refused = original_request(headers)
    assert isinstance(refused, Deny) and refused.status == 400 and refused.code == code, name


def test_a_reverification_refusal_keeps_clerks_body_for_the_proxy() -> None:
    body = reverification_error_body(REVERIFICATION_PRESETS["lax"])
    refusal = Deny(403, "reverification_required", "Confirm it's you.", row="reverification-required", body=body)
    for nginx in (False, True):
        answer = render(refusal, cast(Any, None), nginx=nginx)
        assert (answer.status_code, answer.body) == (403, body)
