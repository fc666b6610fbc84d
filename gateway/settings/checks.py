"""Checks that involve more than one setting, in the order of Clerk's own assertions.

Why a module of its own: each setting's parser sees only its own value; whether the combination is
usable (a key to verify tokens with, a satellite's sign-in URL and domain) is decided here, after
every value is parsed, with the same wording as Clerk's SDK where it has one.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from gateway.clerk.errors import ConfigurationError
from gateway.clerk.keys import is_development_secret_key, parse_publishable_key
from gateway.settings.apps import DEFAULT_APP, overlap_problems
from gateway.settings.clerk import ClerkSettings
from gateway.settings.edge import GatewaySettings
from gateway.settings.identity import identity_header_conflicts

MISSING_SECRET_KEY = "Missing Clerk Secret Key. Go to https://dashboard.clerk.com and get your key for your instance."


def clerk_problems(clerk: ClerkSettings, gateway: GatewaySettings, failed: set[str]) -> Iterator[str]:
    """Cross-setting checks, in the order of Clerk's own assertions (PROTOCOL.md §1.1, §1.3)."""
    yield from instance_problems(clerk, gateway, failed)
    for number, app in enumerate(gateway.apps, start=1):
        if app.clerk is not None:
            for problem in instance_problems(app.clerk, gateway, set()):
                yield f"GATEWAY_APPS: apps[{number}] ({app.name}): clerk: {problem}"
            if not app.hosts and gateway.frontend_api_path:
                # The Frontend API proxy's path is the gateway's on every host: only a host tells whose it is.
                yield (
                    f"GATEWAY_APPS: apps[{number}] ({app.name}): clerk: an app of its own Clerk instance needs "
                    f"hosts of its own; on a shared host, {gateway.frontend_api_path} would proxy [clerk]'s "
                    "Frontend API to its browsers (or set GATEWAY_FRONTEND_API_PATH to empty)"
                )
    conflicts = identity_header_conflicts(gateway.identity, gateway.identity_headers)
    yield from (f"GATEWAY_IDENTITY: {problem}" for problem in conflicts)
    if gateway.assertion_previous_keys and gateway.assertion_key is None and "GATEWAY_ASSERTION_KEY" not in failed:
        yield "GATEWAY_ASSERTION_PREVIOUS_KEYS: set GATEWAY_ASSERTION_KEY too (the previous keys never sign)"
    for number, app in enumerate(gateway.apps, start=1):
        if app.identity is not None:
            for problem in identity_header_conflicts(app.identity, gateway.identity_headers):
                yield f"GATEWAY_APPS: apps[{number}] ({app.name}): identity: {problem}"
    if gateway.apps and gateway.upstream is not None:
        yield from _default_app_problems(gateway)
    if gateway.assertion_key is not None:
        yield from _shared_audience_problems(gateway)


def instance_problems(clerk: ClerkSettings, gateway: GatewaySettings, failed: set[str]) -> Iterator[str]:
    """The checks of one Clerk instance (`[clerk]`, or an app's own)."""
    if clerk.publishable_key is None and "CLERK_PUBLISHABLE_KEY" not in failed:
        try:
            parse_publishable_key(None)
        except ConfigurationError as error:
            yield str(error)
    if clerk.jwt_key and clerk.jwt_key_file:
        yield "CLERK_JWT_KEY_FILE: set either CLERK_JWT_KEY or CLERK_JWT_KEY_FILE, not both"
    if not clerk.secret_key and clerk.verification_key is None and not failed & {"CLERK_JWT_KEY", "CLERK_JWT_KEY_FILE"}:
        yield f"CLERK_SECRET_KEY: {MISSING_SECRET_KEY} (Or set CLERK_JWT_KEY to verify tokens without the network.)"
    if clerk.is_satellite:
        yield from _satellite_problems(clerk, gateway, failed)


def _default_app_problems(gateway: GatewaySettings) -> Iterator[str]:
    """The top-level upstream is one more app (`default`, any host, `/`): it must not shadow a configured one."""
    numbers = {app.name: number for number, app in enumerate(gateway.apps, start=1)}
    for problem in overlap_problems(list(gateway.served_apps()), numbers=numbers):
        if problem.startswith(f"{DEFAULT_APP}:"):
            yield (
                "GATEWAY_UPSTREAM: the top-level upstream is the app "
                f"{DEFAULT_APP!r} (any host, path_prefix '/'), {problem[len(DEFAULT_APP) + 2:]}"
            )


def _shared_audience_problems(gateway: GatewaySettings) -> Iterator[str]:
    """Each app's assertion needs an audience of its own: an app verifies the signature and its audience,
    so one that shares its audience with another (or neither has one) accepts the assertions the other
    received, and whoever can replay those to it (that app, its logs) passes as their users."""
    apps = gateway.served_apps()
    audiences = [app.assertion_audience or gateway.assertion_audience or gateway.public_origin for app in apps]
    for number, app in enumerate(gateway.apps, start=1):
        index = apps.index(app)
        other = next((apps[at] for at, audience in enumerate(audiences) if at != index
                      and audience == audiences[index]), None)  # fmt: skip
        if other is None:
            continue
        shared = f"the same as app {other.name!r}'s ({audiences[index]!r})" if audiences[index] else (
            f"none, as app {other.name!r} has none"
        )
        yield (
            f"GATEWAY_APPS: apps[{number}] ({app.name}): assertion_audience: {shared}; give each app its own, "
            "or an assertion one app receives is accepted by the other"
        )


def _satellite_problems(clerk: ClerkSettings, gateway: GatewaySettings, failed: set[str]) -> Iterator[str]:
    """PROTOCOL.md §1.3 (2a)-(2c), checked at start, refusing what Clerk's SDK refuses with its words.

    (a) only a development satellite (by the secret key) needs a sign-in URL: a production one sends
    signed-out visitors to the primary's Account Portal, as Clerk's redirect helpers do. (b) Clerk
    checks the sign-in URL against each request's `Origin`; a relative URL fails that check for every
    request that carries one, so it is refused here whatever the origin, and the same-origin check runs
    against `GATEWAY_PUBLIC_ORIGIN` when it is set."""
    if clerk.sign_in_url is None and "CLERK_SIGN_IN_URL" not in failed:
        if _is_development(clerk):
            yield "CLERK_SIGN_IN_URL: Missing signInUrl. Pass a signInUrl for dev instances if an app is satellite"
    elif clerk.sign_in_url is not None:
        if clerk.sign_in_url.startswith("/"):
            yield "CLERK_SIGN_IN_URL: The signInUrl needs to have a absolute url format."
        elif gateway.public_origin and _origin_of(clerk.sign_in_url) == _origin_of(gateway.public_origin):
            yield (
                "CLERK_SIGN_IN_URL: The signInUrl needs to be on a different origin than your satellite "
                "application (GATEWAY_PUBLIC_ORIGIN)."
            )
    if not clerk.domain and not clerk.proxy_url and not failed & {"CLERK_DOMAIN", "CLERK_PROXY_URL"}:
        yield (
            "CLERK_DOMAIN: Missing domain and proxyUrl. A satellite application needs to specify a domain "
            "(CLERK_DOMAIN) or a proxyUrl (CLERK_PROXY_URL)"
        )


def _is_development(clerk: ClerkSettings) -> bool:
    """Clerk decides by the secret key's prefix; without one, by the publishable key's instance type."""
    if clerk.secret_key:
        return is_development_secret_key(clerk.secret_key.value)
    return clerk.publishable_key is not None and not clerk.publishable_key.is_production


def _origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), parts.port or default_port
