"""ASGI types for the raw-ASGI parts of the edge and the upstream proxy (Litestar's TypedDicts are too
strict for scopes we copy and messages we build by hand)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
