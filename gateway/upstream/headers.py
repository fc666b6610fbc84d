"""Hop-by-hop header filtering (RFC 9110 §7.6.1), for the proxy and the Frontend API proxy."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


@lru_cache(maxsize=256)
def named_by(connection: bytes) -> frozenset[bytes]:
    """The header names a `Connection` value lists beyond the hop-by-hop ones (`keep-alive`: none)."""
    return frozenset(token.strip().lower() for token in connection.split(b",")) - HOP_BY_HOP


def filter_headers(
    headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes], spoofs: frozenset[bytes] = frozenset()
) -> Headers:
    """Headers minus `drop` (lower-case names, the hop-by-hop ones among them) minus `spoofs` (`-`
    spelling; `_` spellings match too) minus whatever `Connection` names. Names are lower-cased on the
    way (ASGI's convention). One pass; a second only when `Connection` names more than hop-by-hop."""
    kept: Headers = []
    connection: bytes | None = None
    for name, value in headers:
        lower = name.lower()
        if lower in drop:
            if lower == b"connection":
                connection = value if connection is None else connection + b"," + value
            continue
        if spoofs and (lower.replace(b"_", b"-") if b"_" in lower else lower) in spoofs:
            continue
        kept.append((lower, value))
    named = named_by(connection) if connection is not None else None
    if named:
        kept = [pair for pair in kept if pair[0] not in named]
    return kept
