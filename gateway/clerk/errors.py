"""The core's own error hierarchy, each carrying Clerk's reason string.

Nothing but these leaves the core: the edge maps them to precise 4xx answers or startup errors.
"""

from __future__ import annotations


class ClerkProtocolError(Exception):
    """Base of every error the core raises on purpose."""

    reason: str = "unexpected-error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class ConfigurationError(ClerkProtocolError):
    """A setting is missing or malformed (the cases where Clerk's SDK throws before any request)."""

    reason = "configuration-error"

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


class BadRequestError(ClerkProtocolError):
    """The request itself is malformed in a way Clerk's SDK would throw on (we answer 400 instead)."""

    reason = "bad-request"


class HandshakeVerificationError(BadRequestError):
    """A development handshake token failed verification (row D1: fatal for the request)."""

    reason = "handshake-verification-failed"
