"""Satellites configured as Clerk's SDK allows (PROTOCOL.md §1.3): every configuration it accepts
starts, with its defaults; every one it refuses is refused with its message."""

from __future__ import annotations

import pytest

from gateway.clerk.keys import make_publishable_key
from gateway.settings import SettingsError, load_settings

DEV_KEY = make_publishable_key("happy-hen-42.clerk.accounts.dev")
LIVE_KEY = make_publishable_key("clerk.example.com", "production")
DEV_SECRET = "sk_test_0123456789abcdefghijWXYZ"
LIVE_SECRET = "sk_live_0123456789abcdefghijWXYZ"
DEV = {"CLERK_PUBLISHABLE_KEY": DEV_KEY, "CLERK_SECRET_KEY": DEV_SECRET}
LIVE = {"CLERK_PUBLISHABLE_KEY": LIVE_KEY, "CLERK_SECRET_KEY": LIVE_SECRET}

MISSING_SIGN_IN = "CLERK_SIGN_IN_URL: Missing signInUrl. Pass a signInUrl for dev instances if an app is satellite"
MISSING_DOMAIN = (
    "CLERK_DOMAIN: Missing domain and proxyUrl. A satellite application needs to specify a domain "
    "(CLERK_DOMAIN) or a proxyUrl (CLERK_PROXY_URL)"
)
RELATIVE = "CLERK_SIGN_IN_URL: The signInUrl needs to have a absolute url format."
SAME_ORIGIN = (
    "CLERK_SIGN_IN_URL: The signInUrl needs to be on a different origin than your satellite application "
    "(GATEWAY_PUBLIC_ORIGIN)."
)


def not_a_domain(value: str) -> str:
    return (
        "CLERK_DOMAIN: expected a domain such as example.com or localhost:3001 (a host name, optionally with "
        f":port), got {value!r}"
    )


# (name, instance, settings, problems: [] when accepted)
CONFIGURATIONS: list[tuple[str, dict[str, str], dict[str, str], list[str]]] = [
    ("dev, domain with a port as in Clerk's local docs", DEV,
     {"CLERK_DOMAIN": "localhost:3001", "CLERK_SIGN_IN_URL": "http://localhost:3000/sign-in"}, []),
    ("dev, a proxy URL instead of a domain", DEV,
     {"CLERK_PROXY_URL": "/__clerk", "CLERK_SIGN_IN_URL": "https://primary.example/sign-in"}, []),
    ("dev, a domain given with its scheme", DEV,
     {"CLERK_DOMAIN": "https://Satellite.example.net/", "CLERK_SIGN_IN_URL": "https://primary.example/sign-in"}, []),
    ("dev, same host on another port is another origin", DEV,
     {"CLERK_DOMAIN": "localhost:3001", "CLERK_SIGN_IN_URL": "http://localhost:3000/sign-in",
      "GATEWAY_PUBLIC_ORIGIN": "http://localhost:3001"}, []),
    ("prod, no sign-in URL: the primary's Account Portal", LIVE, {"CLERK_DOMAIN": "example.net"}, []),
    ("prod, no sign-in URL, a public origin", LIVE,
     {"CLERK_DOMAIN": "example.net", "GATEWAY_PUBLIC_ORIGIN": "https://app.example.net"}, []),
    ("prod, a proxy URL and no sign-in URL", LIVE, {"CLERK_PROXY_URL": "https://app.example.net/__clerk"}, []),
    ("prod, domain with a port", LIVE, {"CLERK_DOMAIN": "example.net:8443"}, []),
    ("dev, no sign-in URL", DEV, {"CLERK_DOMAIN": "localhost:3001"}, [MISSING_SIGN_IN]),
    ("dev is decided by the secret key", {"CLERK_PUBLISHABLE_KEY": LIVE_KEY, "CLERK_SECRET_KEY": "test_abc"},
     {"CLERK_DOMAIN": "example.net"}, [MISSING_SIGN_IN]),
    ("prod, a relative sign-in URL", LIVE, {"CLERK_DOMAIN": "example.net", "CLERK_SIGN_IN_URL": "/sign-in"},
     [RELATIVE]),
    ("dev, the sign-in URL on the satellite's own origin", DEV,
     {"CLERK_DOMAIN": "localhost:3001", "CLERK_SIGN_IN_URL": "http://localhost:3001/sign-in",
      "GATEWAY_PUBLIC_ORIGIN": "http://localhost:3001"}, [SAME_ORIGIN]),
    ("prod, neither domain nor proxy URL", LIVE, {}, [MISSING_DOMAIN]),
    ("dev, nothing: both, in Clerk's order", DEV, {}, [MISSING_SIGN_IN, MISSING_DOMAIN]),
    ("a domain with a path", DEV, {"CLERK_DOMAIN": "example.net/app", "CLERK_SIGN_IN_URL": "https://p.example/in"},
     [not_a_domain("example.net/app")]),
    ("a port out of range", DEV, {"CLERK_DOMAIN": "localhost:99999", "CLERK_SIGN_IN_URL": "https://p.example/in"},
     [not_a_domain("localhost:99999")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("instance", "values", "problems"), [case[1:] for case in CONFIGURATIONS], ids=[case[0] for case in CONFIGURATIONS]
)
def test_satellite_configurations_are_accepted_and_refused_as_clerk_does(
    instance: dict[str, str], values: dict[str, str], problems: list[str]
) -> None:
    environment = {**instance, "CLERK_IS_SATELLITE": "true", **values}
    if not problems:
        assert load_settings(None, environment).clerk.is_satellite is True
        return
    with pytest.raises(SettingsError) as raised:
        load_settings(None, environment)
    assert list(raised.value.problems) == problems


def test_the_domain_is_kept_as_a_host_and_port() -> None:
    environment = {**DEV, "CLERK_IS_SATELLITE": "true", "CLERK_SIGN_IN_URL": "https://p.example/in"}
    assert load_settings(None, {**environment, "CLERK_DOMAIN": "localhost:3001"}).clerk.domain == "localhost:3001"
    assert load_settings(None, {**environment, "CLERK_DOMAIN": "HTTPS://Sat.Example.net/"}).clerk.domain == (
        "sat.example.net"
    )


def test_a_production_satellite_with_a_port_has_its_frontend_api_on_that_port() -> None:
    settings = load_settings(None, {**LIVE, "CLERK_IS_SATELLITE": "true", "CLERK_DOMAIN": "example.net:8443"})
    assert settings.clerk.original_frontend_api == "clerk.example.net:8443"  # `clerk.${domain}`, as Clerk
