"""The demo apps' card of what they received: identity headers kept, secrets and plain HTTP left out."""

from __future__ import annotations

import jwt
import pytest

from gateway.demo.received import AssertionReader, identity_headers


@pytest.mark.parametrize(("name", "shown"), [
    ("Remote-User", True), ("X-WEBAUTH-USER", True), ("X-Clerk-User-Id", True), ("X-Wiki-Author", True),
    ("X-Forwarded-User", True), ("X-Forwarded-Email", True),  # the oauth2-proxy preset's
    ("X-Forwarded-For", False), ("X-Forwarded-Host", False), ("Cookie", False), ("Authorization", False),
    ("Sec-Fetch-Dest", False), ("Host", False), ("X-Gateway-Identity-Assertion", False),  # shown decoded instead
])  # fmt: skip
def test_the_card_lists_identity_headers_only(name: str, shown: bool) -> None:
    assert identity_headers({name: "value"}) == ([(name, "value")] if shown else [])


async def test_an_assertion_without_a_keys_url_is_shown_but_not_called_verified() -> None:
    token = jwt.encode({"sub": "user_alice", "aud": "wiki"}, "k" * 32, algorithm="HS256")
    reading = await AssertionReader("", "wiki").read(token)
    assert reading.claims == {"sub": "user_alice", "aud": "wiki"} and reading.verdict == "not verified: no keys URL"


async def test_a_header_that_is_not_a_jwt_says_so() -> None:
    reading = await AssertionReader("", "wiki").read("forged")
    assert reading.claims == {} and reading.verdict.startswith("not a JWT")
