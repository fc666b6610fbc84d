"""What the edge builds for each app: its route policy, identity writer and upstream proxy.

Why a module of its own: an app's settings default to the top-level ones (`preserve_host`, timeouts,
`accepts_token`), and the runtime builds one `App` per `settings.apps.AppSettings` the same way for the
implicit default app as for a configured one, so a single-app configuration runs the same code.
An app's identity mapping and assertion audience default to the top-level ones too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from gateway.clerk.token_types import AcceptsToken
from gateway.edge.app_choice import AppChooser
from gateway.edge.identity import IdentityHeaderWriter
from gateway.edge.policy import Policy
from gateway.forwarded import ForwardedPolicy
from gateway.settings import GatewaySettings
from gateway.settings.apps import AppSettings
from gateway.settings.identity import IdentitySettings
from gateway.upstream.proxy import UpstreamProxy


class App:
    """One app behind the gateway. `memo_prefix` keeps its remembered decisions apart from other apps'."""

    __slots__ = ("accepts_token", "identity", "memo_prefix", "name", "policy", "proxy", "settings", "websockets")

    def __init__(
        self,
        settings: AppSettings,
        gateway: GatewaySettings,
        number: int,
        forwarded: ForwardedPolicy,
        identity: IdentityHeaderWriter,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.accepts_token: AcceptsToken = (
            settings.accepts_token if settings.accepts_token is not None else gateway.accepts_token
        )
        self.policy = app_policy(settings, gateway)
        self.identity = identity
        self.websockets = settings.websockets
        self.memo_prefix = number.to_bytes(2, "big")
        self.proxy: UpstreamProxy | None = (
            UpstreamProxy(
                settings.upstream,
                connect_timeout=settings.connect_timeout or gateway.connect_timeout,
                read_timeout=settings.read_timeout or gateway.read_timeout,
                preserve_host=gateway.preserve_host if settings.preserve_host is None else settings.preserve_host,
                forwarded=forwarded,
            )
            if settings.upstream
            else None
        )
        """None for the default app of a gateway that answers forward-auth only."""


def build_apps(
    gateway: GatewaySettings,
    forwarded: ForwardedPolicy,
    writer: Callable[[IdentitySettings, str | None, tuple[str, ...]], IdentityHeaderWriter],
) -> AppChooser[App]:
    """Every app, each with the identity writer `writer(mapping, audience, also_strip)` makes for it.

    An app without its own `identity` or `assertion_audience` has the top-level one; each writer also
    strips the custom headers of every other app's mapping, so no app can be sent a spoofed one."""
    apps = gateway.served_apps()
    identities = [app_identity(app, gateway) for app in apps]
    custom = tuple(dict.fromkeys(header.name for identity in identities for header in identity.headers))
    return AppChooser(
        [
            (app, App(app, gateway, number, forwarded, writer(identity, app_audience(app, gateway), custom)))
            for number, (app, identity) in enumerate(zip(apps, identities, strict=True))
        ]
    )


def app_policy(app: AppSettings, gateway: GatewaySettings) -> Policy:
    """The app's route rules, judged with the top-level mode, path case and pending-session default."""
    accepts = app.accepts_token if app.accepts_token is not None else gateway.accepts_token
    return Policy(
        replace(
            gateway, routes=app.routes, public_paths=app.public_paths, api_paths=app.api_paths, accepts_token=accepts
        )
    )


def app_identity(app: AppSettings, gateway: GatewaySettings) -> IdentitySettings:
    return app.identity if app.identity is not None else gateway.identity


def app_audience(app: AppSettings, gateway: GatewaySettings) -> str | None:
    return app.assertion_audience if app.assertion_audience is not None else gateway.assertion_audience
