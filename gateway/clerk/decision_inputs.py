"""Every input of the decision in one place, so a remembered decision is keyed by all of them.

`decide` reads the method, the public origin (`Host`, believed `X-Forwarded-Host/-Proto`, the scheme),
the cookies, `Authorization`, `Sec-Fetch-Dest`, `Accept` and `Referer` (row D15), `__clerk_*` query
parameters, and the path when organization sync is configured (PROTOCOL.md §10). A test runs the
decision table with a recording header mapping and checks that it reads no header outside
`DECISION_HEADERS`: a new input cannot be forgotten here.
"""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b

from gateway.clerk.token_types import AcceptsToken

DECISION_HEADERS = (
    "host",
    "x-forwarded-host",
    "x-forwarded-proto",
    "cookie",
    "authorization",
    "sec-fetch-dest",
    "accept",
    "referer",
)


def decision_key(
    method: str,
    scheme: str,
    server: str,
    headers: Mapping[str, str],
    path: str,
    query: str,
    *,
    by_path: bool,
    accepts: AcceptsToken | None = None,
) -> bytes | None:
    """A 16-byte digest of every input of the decision, or None when the request must be decided afresh:
    no token at all (never signed in), a handshake to resolve (row D1), or a query that holds, or could
    spell with percent-escapes, a `__clerk_*` parameter. `server`: the address the request arrived at,
    the origin's host when there is no `Host`; `accepts`: a route's own `acceptsToken`, an input too.
    The digest keeps a memo entry small whatever the size of the headers."""
    if query and ("%" in query or "__clerk" in query):
        return None
    cookie = headers.get("cookie")
    if cookie is None and headers.get("authorization") is None:
        return None
    if cookie is not None and "__clerk_handshake" in cookie:
        return None
    get = headers.get
    parts = (method, scheme, server, path if by_path else None, accepts, *[get(name) for name in DECISION_HEADERS])
    # repr() of a tuple of str/None/tuples is unambiguous (quoted, escaped): one encoding, one hash
    return blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()
