"""Clerk-looking identifiers (`sess_…`, `client_…`) from an injectable source of randomness."""

from __future__ import annotations

import secrets
from collections.abc import Callable

RandomText = Callable[[int], str]
"""Returns a URL-safe random string built from the given number of random bytes."""

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def system_random_text(nbytes: int) -> str:
    number = int.from_bytes(secrets.token_bytes(nbytes), "big")
    digits = []
    while number:
        number, digit = divmod(number, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits)) or "0"


class IdFactory:
    """Makes prefixed identifiers; deterministic when given a deterministic `random_text`."""

    def __init__(self, random_text: RandomText = system_random_text) -> None:
        self._random_text = random_text

    def new(self, prefix: str, nbytes: int = 16) -> str:
        return f"{prefix}_{self._random_text(nbytes)}"

    def secret(self, nbytes: int = 32) -> str:
        return self._random_text(nbytes)
