"""What an app behind the gateway received: its identity headers, and the signed assertion decoded.

Both demo apps show this card, so a visitor sees exactly what each app's preset sends. The assertion is
verified as an app should verify it: with the gateway's published keys (`/__gateway/jwks.json`), its
issuer, and this app's audience.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ASSERTION_HEADER = "X-Gateway-Identity-Assertion"
ASSERTION_ISSUER = "session-gateway"
ORDINARY_HEADERS = frozenset({
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "cookie", "connection", "referer",
    "origin", "cache-control", "pragma", "priority", "dnt", "upgrade-insecure-requests", "content-length",
    "content-type", "x-request-id", "keep-alive", "te", "authorization", "x-forwarded-for", "x-forwarded-proto",
    "x-forwarded-host", "x-forwarded-port",
})  # fmt: skip
"""Not identity: left out of the card (`Cookie` and `Authorization` carry secrets). `X-Forwarded-User` and
`X-Forwarded-Email` (the oauth2-proxy preset's) are identity, so stay."""


def identity_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The received headers that are not ordinary HTTP or the browser's own, in the order received."""
    return [
        (name, value)
        for name, value in headers.items()
        if name.lower() not in ORDINARY_HEADERS
        and not name.lower().startswith("sec-")
        and name.lower() != ASSERTION_HEADER.lower()
    ]


@dataclass(frozen=True)
class AssertionReading:
    claims: dict[str, Any]
    verdict: str
    """`verified` or why not (`no keys URL`, the verification error)."""


class AssertionReader:
    """Decodes the assertion and verifies it with the gateway's JWKS (fetched once, refetched on a new kid)."""

    def __init__(self, jwks_url: str, audience: str) -> None:
        self.audience = audience
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300) if jwks_url else None

    async def read(self, assertion: str) -> AssertionReading:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            return AssertionReading({}, f"not a JWT: {error}")
        if self._keys is None:
            return AssertionReading(unverified, "not verified: no keys URL")
        try:
            key = await asyncio.to_thread(self._keys.get_signing_key_from_jwt, assertion)
            claims = jwt.decode(assertion, key.key, algorithms=[key.algorithm_name], issuer=ASSERTION_ISSUER,
                                audience=self.audience or None,
                                options={"verify_aud": bool(self.audience)})
        except jwt.PyJWTError as error:
            return AssertionReading(unverified, f"not verified: {error}")
        return AssertionReading(claims, "verified")


async def received_card(headers: Mapping[str, str], reader: AssertionReader) -> str:
    """The card's HTML: a row per identity header (`#received`), then the assertion (`#assertion`)."""
    rows = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in identity_headers(headers)
    ) or "<dt>—</dt><dd>no identity headers</dd>"
    card = f'<div class="card"><h2>Headers this app received</h2><dl id=received>{rows}</dl>'
    assertion = headers.get(ASSERTION_HEADER)
    if assertion:
        reading = await reader.read(assertion)
        card += (
            f"<h2>{html.escape(ASSERTION_HEADER)}</h2><p id=assertion-verdict>{html.escape(reading.verdict)}</p>"
            f"<pre id=assertion>{html.escape(json.dumps(reading.claims, indent=2, sort_keys=True))}</pre>"
        )
    return card + "</div>"
