"""Publishable and secret keys: what instance we serve, where its Frontend API lives, the cookie suffix.

PROTOCOL.md §1.1, §1.2 and §2.1 (cookie suffix).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Literal

from gateway.clerk.errors import ConfigurationError

InstanceType = Literal["development", "production"]

PUBLISHABLE_KEY_ERROR = "Publishable key not valid (expected format: pk_test_... or pk_live_...)."


@dataclass(frozen=True, slots=True)
class PublishableKey:
    """A parsed publishable key: `pk_test_`/`pk_live_` + base64(`<frontend-api-host>$`)."""

    raw: str
    instance_type: InstanceType
    frontend_api: str
    cookie_suffix: str

    @property
    def is_production(self) -> bool:
        return self.instance_type == "production"


def parse_publishable_key(raw: str | None) -> PublishableKey:
    """Parse a publishable key, raising `ConfigurationError` exactly where Clerk's `parsePublishableKey` does."""
    if not raw:
        raise ConfigurationError("CLERK_PUBLISHABLE_KEY", "missing. " + PUBLISHABLE_KEY_ERROR)
    parts = raw.split("_")
    if len(parts) != 3 or not (raw.startswith("pk_test_") or raw.startswith("pk_live_")):
        raise ConfigurationError("CLERK_PUBLISHABLE_KEY", PUBLISHABLE_KEY_ERROR)
    decoded = _decode_base64_lenient(parts[2])
    if decoded is None or not decoded.endswith("$") or "$" in decoded[:-1] or "." not in decoded:
        raise ConfigurationError("CLERK_PUBLISHABLE_KEY", PUBLISHABLE_KEY_ERROR)
    instance: InstanceType = "production" if raw.startswith("pk_live_") else "development"
    return PublishableKey(raw=raw, instance_type=instance, frontend_api=decoded[:-1], cookie_suffix=cookie_suffix(raw))


def make_publishable_key(frontend_api: str, instance_type: InstanceType = "development") -> str:
    """Build the publishable key for a Frontend API host (used by tests and the demo)."""
    prefix = "pk_live_" if instance_type == "production" else "pk_test_"
    encoded = base64.b64encode(f"{frontend_api}$".encode()).decode().rstrip("=")
    return prefix + encoded


def _decode_base64_lenient(data: str) -> str | None:
    try:
        padded = data + "=" * (-len(data) % 4)
        return base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def cookie_suffix(publishable_key: str) -> str:
    """First 8 characters of base64url(SHA-1(publishable key)), as `getCookieSuffix` computes it."""
    digest = hashlib.sha1(publishable_key.encode("utf-8")).digest()
    return base64.b64encode(digest).decode().replace("+", "-").replace("/", "_")[:8]


def is_development_secret_key(secret_key: str) -> bool:
    return secret_key.startswith("sk_test_") or secret_key.startswith("test_")
