"""What replicas store in Redis is sealed: only this instance's secret opens it, under the key it was stored at."""

from __future__ import annotations

import pytest

from gateway.shared.sealing import Sealer

SEALER = Sealer("sk_test_instance_one")
VALUE = b'{"cookies": ["__session=eyJ...; Path=/"]}'


@pytest.mark.parametrize(
    ("what", "opener", "key", "tamper"),
    [
        ("another instance's secret", Sealer("sk_test_instance_two"), "k1", False),
        ("the same value copied under another key", SEALER, "k2", False),
        ("a flipped bit", SEALER, "k1", True),
    ],
)
def test_a_sealed_value_opens_nowhere_else(what: str, opener: Sealer, key: str, tamper: bool) -> None:
    sealed = SEALER.seal(VALUE, "k1")
    if tamper:
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert opener.open(sealed, key) is None, what


def test_a_sealed_value_opens_under_its_key_and_hides_its_content() -> None:
    sealed = SEALER.seal(VALUE, "k1")
    assert b"__session" not in sealed and SEALER.open(sealed, "k1") == VALUE
    assert SEALER.seal(VALUE, "k1") != sealed  # a fresh nonce each time
    assert SEALER.open(b"short", "k1") is None


def test_names_are_stable_per_secret_and_cannot_be_shifted_between_parts() -> None:
    assert SEALER.digest("ab", "c") == Sealer("sk_test_instance_one").digest("ab", "c")
    assert SEALER.digest("ab", "c") != SEALER.digest("a", "bc")
    assert SEALER.digest("ab", "c") != Sealer("sk_test_instance_two").digest("ab", "c")
    assert len(SEALER.digest("token")) == 64 and "token" not in SEALER.digest("token")
