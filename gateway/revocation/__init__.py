"""Immediate revocation: what Clerk said is over (a session revoked, a user deleted) and who changed.

No I/O here. `DenyList` is what the hot path asks (synchronous, in this process); a `RevocationFeed` is
what the webhook endpoint publishes through (`LocalFeed` for one process; a shared feed applies what
any replica heard to every replica's DenyList); `ChangeListeners` tell caches that a user or an
organization changed. `Revocations` holds the three so that a configuration reload can hand them to
the next runtime.
"""

from gateway.revocation.changes import Change, ChangeListener, ChangeListeners
from gateway.revocation.deny_list import DenyList, Revocation
from gateway.revocation.feed import LocalFeed, RevocationFeed
from gateway.revocation.hub import Revocations, local_revocations
from gateway.revocation.verdict import REVOKED, SESSION_REVOKED, is_revoked, unless_revoked

__all__ = [
    "REVOKED",
    "SESSION_REVOKED",
    "Change",
    "ChangeListener",
    "ChangeListeners",
    "DenyList",
    "LocalFeed",
    "Revocation",
    "RevocationFeed",
    "Revocations",
    "is_revoked",
    "local_revocations",
    "unless_revoked",
]
