"""One Clerk instance as the admission pipeline uses it: its options, its `Authenticator` and what is
derived from its keys (the loop guard's signing key, whether tokens can be verified right now).

Why a module of its own: the `[clerk]` instance serves every app, unless an app names its own
(`[[gateway.apps]]` `clerk = {...}`); the pipeline asks the instance of the app a request is for, so
one app's tokens, keys and sign-in redirects never stand for another's.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.clerk.options import ClerkOptions
from gateway.clerk_api.authenticator import Authenticator
from gateway.edge.loops import LoopGuard


class ClerkInstance:
    __slots__ = ("_keys_available", "authenticator", "by_path", "explain_loops", "loops", "options")

    def __init__(
        self,
        options: ClerkOptions,
        authenticator: Authenticator,
        *,
        explain_loops: bool,
        keys_available: Callable[[], bool] | None = None,
    ) -> None:
        self.options = options
        self.authenticator = authenticator
        self.loops = LoopGuard(options.secret_key)
        self.by_path = options.organization_sync is not None
        """Clerk's organization sync reads the path, so the memo key includes it."""
        self.explain_loops = explain_loops or not options.is_production
        self._keys_available = keys_available

    def keys_available(self) -> bool:
        """Whether tokens can be verified at all right now (a PEM key, or a JWKS loaded at least once)."""
        if self._keys_available is not None:
            return self._keys_available()
        return self.options.jwt_key is not None or len(self.authenticator.keys) > 0
