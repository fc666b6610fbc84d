"""Where a signed-out visitor is sent (Clerk's `createRedirect(...).redirectToSignIn`): the sign-in URL
or the primary's Account Portal, the way back, a satellite's sync marker, the dev-browser token and a
pending session's tasks."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.clerk.keys import make_publishable_key, parse_publishable_key
from gateway.clerk.options import ClerkOptions
from gateway.clerk.redirects import account_portal_sign_in_url, sign_in_url

DEV = make_publishable_key("happy-hen-42.clerk.accounts.dev")
LIVE = make_publishable_key("clerk.example.com", "production")


def options(key: str, **values: Any) -> ClerkOptions:
    return ClerkOptions(publishable_key=parse_publishable_key(key), **values)


@pytest.mark.parametrize(
    ("frontend_api", "portal"),
    [
        ("clerk.example.com", "https://accounts.example.com/sign-in"),
        ("happy-hen-42.clerk.accounts.dev", "https://happy-hen-42.accounts.dev/sign-in"),
        ("clerk.accountsstage.dev", "https://accountsstage.dev/sign-in"),
        ("foo.clerk.example.com", "https://foo.accounts.example.com/sign-in"),  # the first `clerk.`, as Clerk
    ],
)
def test_the_account_portal_of_the_instance(frontend_api: str, portal: str) -> None:
    assert account_portal_sign_in_url(options(make_publishable_key(frontend_api, "production"))) == portal


@pytest.mark.parametrize(
    ("name", "opts", "url", "dev_browser", "expected"),
    [
        ("a production satellite without a sign-in URL goes to the primary's Account Portal",
         options(LIVE, is_satellite=True, domain="example.net"), "https://app.example.net/a?b=1", None,
         "https://accounts.example.com/sign-in?redirect_url=https%3A%2F%2Fapp.example.net%2Fa%3Fb%3D1%26"
         "__clerk_synced%3Dfalse"),
        ("a dev satellite on localhost:3001 keeps its marker; its primary has the dev browser from the sync",
         options(DEV, is_satellite=True, domain="localhost:3001", sign_in_url="http://localhost:3000/sign-in"),
         "http://localhost:3001/home", "dvb_1",
         "http://localhost:3000/sign-in?redirect_url=http%3A%2F%2Flocalhost%3A3001%2Fhome%3F__clerk_synced%3Dfalse"),
        ("a dev primary hands its dev browser to the Account Portal",
         options(DEV), "http://localhost:3000/home", "dvb_1", None),
        ("a marker already there is set, not repeated",
         options(DEV, is_satellite=True, domain="sat.test", sign_in_url="http://app.test/sign-in"),
         "http://sat.test/x?__clerk_synced=true&y=2", None,
         "http://app.test/sign-in?redirect_url=http%3A%2F%2Fsat.test%2Fx%3F__clerk_synced%3Dfalse%26y%3D2"),
        ("a primary gets no marker", options(LIVE), "https://example.com/a", None,
         "https://accounts.example.com/sign-in?redirect_url=https%3A%2F%2Fexample.com%2Fa"),
        ("a same-host sign-in page gets no marker nor dev browser",
         options(DEV, is_satellite=True, domain="sat.test", sign_in_url="/sign-in"), "http://sat.test/x", "dvb_1",
         "http://sat.test/sign-in?redirect_url=http%3A%2F%2Fsat.test%2Fx"),
    ],
)  # fmt: skip
def test_the_sign_in_redirect(
    name: str, opts: ClerkOptions, url: str, dev_browser: str | None, expected: str | None
) -> None:
    origin = url.split("/", 3)
    built = sign_in_url(opts, url, "/".join(origin[:3]), dev_browser)
    if expected is None:  # another origin: the dev browser goes along, as Clerk's redirectToSignIn sends it
        assert built.endswith("&__clerk_db_jwt=dvb_1"), name
    else:
        assert built == expected, name


def test_a_pending_session_goes_to_the_sign_in_pages_tasks() -> None:
    assert sign_in_url(options(LIVE), "https://example.com/a", "https://example.com", None, pending=True) == (
        "https://accounts.example.com/sign-in/tasks?redirect_url=https%3A%2F%2Fexample.com%2Fa"
    )
