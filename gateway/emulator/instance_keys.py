"""Publishable/secret keys of the emulated instance and the cookie suffix derived from them.

Written here on purpose instead of imported from `gateway.clerk`: the emulator is the independent
other side of the protocol (PROTOCOL.md §1.1 and §2.1), so a bug in the gateway's key helpers must
not be mirrored here.
"""

from __future__ import annotations

import base64
import hashlib

from gateway.emulator.ids import IdFactory


def publishable_key(fapi_host: str, *, production: bool) -> str:
    """`pk_test_`/`pk_live_` + unpadded base64 of `<fapi-host>$` (PROTOCOL.md §1.1)."""
    if "." not in fapi_host or "$" in fapi_host:
        raise ValueError(f"Frontend API host must contain a '.' and no '$': {fapi_host!r}")
    encoded = base64.b64encode(f"{fapi_host}$".encode()).decode().rstrip("=")
    return ("pk_live_" if production else "pk_test_") + encoded


def cookie_suffix(publishable: str) -> str:
    """First 8 characters of the URL-safe base64 SHA-1 of the publishable key (PROTOCOL.md §2.1)."""
    digest = hashlib.sha1(publishable.encode()).digest()  # protocol-defined, not for security
    return base64.b64encode(digest).decode().replace("+", "-").replace("/", "_")[:8]


def new_secret_key(ids: IdFactory, *, production: bool) -> str:
    return ("sk_live_" if production else "sk_test_") + ids.secret(30)
