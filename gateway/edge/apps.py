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
from gateway.edge.frontend_api import FrontendApiProxy
from gateway.edge.identity import IdentityHeaderWriter
from gateway.edge.instance import ClerkInstance
from gateway.edge.policy import Policy
from gateway.forwarded import ForwardedPolicy
from gateway.settings import GatewaySettings
from gateway.settings.apps import AppSettings
from gateway.settings.identity import IdentitySettings
from gateway.upstream.proxy import UpstreamProxy


class App:
    """One app behind the gateway. `memo_prefix` keeps its remembered decisions apart from other apps'."""

    __slots__ = (
        "accepts_token", "frontend_api", "identity", "instance", "memo_prefix", "name", "policy", "proxy", "settings",
        "websockets",
    )  # fmt: skip

    def __init__(
        self,
        settings: AppSettings,
        gateway: GatewaySettings,
        number: int,
        forwarded: ForwardedPolicy,
        identity: IdentityHeaderWriter,
        instance: ClerkInstance | None = None,
        frontend_api: FrontendApiProxy | None = None,
    ) -> None:
        """`instance`, `frontend_api`: the app's own Clerk instance and its Frontend API proxy (None: the
        `[clerk]` instance's, which serves every other app)."""
        self.settings = settings
        self.name = settings.name
        self.accepts_token = app_accepts_token(settings, gateway)
        self.policy = app_policy(settings, gateway)
        self.identity = identity
        self.instance = instance
        self.frontend_api = frontend_api
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


OwnInstance = tuple[ClerkInstance, FrontendApiProxy | None]
"""An app's own Clerk instance and its Frontend API proxy."""


def build_apps(
    gateway: GatewaySettings,
    forwarded: ForwardedPolicy,
    writer: Callable[[AppSettings, IdentitySettings, str | None, tuple[str, ...]], IdentityHeaderWriter],
    own_instance: Callable[[AppSettings], OwnInstance | None] = lambda app: None,
) -> AppChooser[App]:
    """Every app, each with the identity writer `writer(app, mapping, audience, also_strip)` makes for
    it and its own Clerk instance (`own_instance(app)`, None for the `[clerk]` one).

    An app without its own `identity` or `assertion_audience` has the top-level one; each writer also
    strips the custom headers of every other app's mapping, so no app can be sent a spoofed one."""
    apps = gateway.served_apps()
    identities = [app_identity(app, gateway) for app in apps]
    custom = tuple(dict.fromkeys(header.name for identity in identities for header in identity.headers))
    built: list[tuple[AppSettings, App]] = []
    for number, (app, identity) in enumerate(zip(apps, identities, strict=True)):
        own = own_instance(app)
        identity_writer = writer(app, identity, app_audience(app, gateway), custom)
        instance, frontend_api = own if own is not None else (None, None)
        built.append((app, App(app, gateway, number, forwarded, identity_writer, instance, frontend_api)))
    return AppChooser(built)


def app_policy(app: AppSettings, gateway: GatewaySettings) -> Policy:
    """The app's route rules, judged with the top-level mode, path case and pending-session default."""
    accepts = app_accepts_token(app, gateway)
    return Policy(
        replace(
            gateway, routes=app.routes, public_paths=app.public_paths, api_paths=app.api_paths, accepts_token=accepts
        )
    )


def app_accepts_token(app: AppSettings, gateway: GatewaySettings) -> AcceptsToken:
    return app.accepts_token if app.accepts_token is not None else gateway.accepts_token


def app_identity(app: AppSettings, gateway: GatewaySettings) -> IdentitySettings:
    return app.identity if app.identity is not None else gateway.identity


def app_audience(app: AppSettings, gateway: GatewaySettings) -> str | None:
    return app.assertion_audience if app.assertion_audience is not None else gateway.assertion_audience
