"""Row D5 with the gateway's allow-list (`ClerkOptions.allowed_redirect_origins`): no open redirect.

Clerk follows `__clerk_redirect_url` wherever it points; the gateway sets an allow-list (its own
origin, `GATEWAY_ALLOWED_REDIRECT_ORIGINS`, the authorized parties, the public origin) and answers a
target outside it with a 400 instead of a redirect.
"""

from __future__ import annotations

import pytest

from gateway.clerk.errors import BadRequestError
from tests.support.clerk import IAT, options, request, run, session_token

SIGNED_IN = {"__client_uat": str(IAT - 1), "__session": session_token()}


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("http://localhost:3000", True),
        ("http://example.com/back", True),  # the request's own origin
        ("https://evil.example/", False),
        ("http://localhost:3000.evil.example/", False),
        ("//evil.example/", False),
    ],
)
def test_primary_sync_follows_only_allowed_origins(target: str, allowed: bool) -> None:
    opts = options(allowed_redirect_origins=("http://localhost:3000",))
    view = request(f"http://example.com/path?__clerk_redirect_url={target}", cookies=SIGNED_IN)
    if allowed:
        state = run(view, opts)
        assert state.reason == "primary-responds-to-syncing"
        assert state.location is not None and state.location.startswith(target)
    else:
        with pytest.raises(BadRequestError):
            run(view, opts)


def test_without_an_allow_list_the_core_follows_clerk() -> None:
    state = run(request("http://example.com/path?__clerk_redirect_url=https://evil.example/", cookies=SIGNED_IN),
                   options())  # fmt: skip
    assert state.location is not None and state.location.startswith("https://evil.example/")
