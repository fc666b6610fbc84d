"""Is this webhook from Clerk? Svix's signature, verified by the `standardwebhooks` library.

Clerk delivers through Svix, which signs `{id}.{timestamp}.{body}` with HMAC-SHA256 under the
endpoint's `whsec_` secret and sends `svix-id`, `svix-timestamp`, `svix-signature`; the Standard
Webhooks names (`webhook-*`) are the same scheme and accepted too. A message is accepted within the
library's tolerance of five minutes either way; its id is then remembered for twice that (a replay
older than the tolerance is refused by its timestamp anyway). The header and timestamp checks run
here first only to name what is wrong precisely; the library decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from standardwebhooks import Webhook, WebhookVerificationError

TOLERANCE = 5 * 60
"""Seconds a signature's timestamp may be off, as `standardwebhooks` (and Svix) define it."""
MESSAGE_ID_TTL = 2 * TOLERANCE
"""How long a message id is remembered: past it, the same message is refused as stale."""
_NAMES = ("id", "timestamp", "signature")


class SignatureError(Exception):
    """Not a webhook from this endpoint's sender; `code` for the 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Signed:
    message_id: str
    signed_at: float


class WebhookVerifier:
    """Built once from the signing secrets (`whsec_…`, validated by the settings): one per Clerk
    instance the gateway serves, since each instance's endpoint signs with its own."""

    __slots__ = ("_wall_clock", "_webhooks")

    def __init__(self, *signing_secrets: str, wall_clock: Callable[[], float] = time.time) -> None:
        self._webhooks = tuple(Webhook(secret) for secret in dict.fromkeys(signing_secrets))
        self._wall_clock = wall_clock
        """The library reads the wall clock for its tolerance (no way to give it another), so must this."""

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Signed:
        """The message id and signing time of a genuine webhook; raises `SignatureError` otherwise.

        `headers` has lower-case names. `svix-*` are read when `svix-id` is present, else `webhook-*`.
        """
        prefix = "svix-" if "svix-id" in headers else "webhook-"
        values = {name: headers.get(prefix + name, "").strip() for name in _NAMES}
        missing = [prefix + name for name in _NAMES if not values[name]]
        if missing:
            raise SignatureError(
                "webhook_signature_missing", f"The webhook lacks {', '.join(missing)} (Svix's signature headers)."
            )
        now = self._wall_clock()
        try:
            signed_at = float(int(values["timestamp"]))
        except (ValueError, OverflowError):  # not digits, or more of them than a float holds
            raise SignatureError("webhook_timestamp_invalid", "The webhook's timestamp is not a number.") from None
        if signed_at < now - TOLERANCE:
            raise SignatureError("webhook_timestamp_too_old", "The webhook's timestamp is more than 5 minutes old.")
        if signed_at > now + TOLERANCE:
            raise SignatureError("webhook_timestamp_too_new", "The webhook's timestamp is more than 5 minutes ahead.")
        named = {f"webhook-{name}": value for name, value in values.items()}
        for webhook in self._webhooks:
            try:
                webhook.verify(body, named, json_parse=False)
            except WebhookVerificationError:
                continue
            return Signed(values["id"], signed_at)
        raise SignatureError(
            "webhook_signature_invalid", "The webhook's signature does not match (is the signing secret right?)."
        )
