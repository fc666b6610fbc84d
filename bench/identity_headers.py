"""A micro-benchmark of the identity writer's hot path: a signed-in token seen before (the memo hit).

    .venv/bin/python bench/identity_headers.py

Prints nanoseconds per call for the default mapping (the `clerk` preset, no lookup) and for a mapping
that needs the Backend API's user (served from the lookup cache, no network). Not a test: the numbers
depend on the machine; they say what a request pays for its identity headers once they are built.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from gateway.clerk.asks import ApiResponse
from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.clerk_api.identity_lookups import IdentityLookups
from gateway.edge.identity import IdentityHeaderWriter
from gateway.settings import IdentityHeaders, parse_identity_settings

CALLS = 200_000
CLAIMS = SessionClaims("user_1", "sess_1", "active", "org_1", "org:admin", "acme", ("org:a:read",), None, None, None)
STATE = AuthState("signed-in", token="token", claims=CLAIMS)


async def _user(_: str) -> ApiResponse:
    body = {"primary_email_address_id": "e", "email_addresses": [{"id": "e", "email_address": "a@example.com"}]}
    return ApiResponse(status=200, body=body, body_is_json=True)


async def _per_call(call: Callable[[], Awaitable[object]]) -> float:
    for _ in range(100):
        await call()
    started = time.perf_counter()
    for _ in range(CALLS):
        await call()
    return (time.perf_counter() - started) / CALLS * 1e9


async def main() -> None:
    lookups = IdentityLookups(_user, _user, ttl=3600, stale_if_error=0, max_entries=10)
    writers = {
        "clerk preset (token only)": IdentityHeaderWriter(IdentityHeaders(), lookups=lookups),
        "clerk + remote-user (cached user)": IdentityHeaderWriter(
            IdentityHeaders(), identity=parse_identity_settings({"presets": ["clerk", "remote-user"]}), lookups=lookups
        ),
    }
    for label, writer in writers.items():
        nanoseconds = await _per_call(functools.partial(writer.headers, STATE))
        print(f"{label:40s} {nanoseconds:7.0f} ns per request")


if __name__ == "__main__":
    asyncio.run(main())
