"""Session-token verification cost: the core beside a bare PyJWT `jwt.decode`, measured in one run.

Prints microseconds per operation (median of interleaved rounds) and ratios to the bare decode:
- bare `jwt.decode` of the token with an already-parsed key (the floor of any verifier);
- the core's `verify_token` on a token seen for the first time (cache miss: decode + signature + claims);
- the same on a repeat (cache hit: clock and settings checks only);
- the whole decision (`decide`) for a signed-in cookie request, first sight and repeat.
Usage: python bench/core_verify.py [--rounds 7] [--tokens 400] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.clerk.asks import KeysAnswer
from gateway.clerk.decide import decide
from gateway.clerk.jwk import KeySet
from gateway.clerk.keys import make_publishable_key, parse_publishable_key
from gateway.clerk.options import ClerkOptions
from gateway.clerk.request import RequestView
from gateway.clerk.verify import KeyRing, VerifiedTokenCache, verify_token

KID = "ins_bench"
NOW = int(time.time())  # bare jwt.decode checks against the real clock


def make_tokens(count: int) -> tuple[list[str], KeySet, ClerkOptions]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = KeySet({KID: private.public_key()})
    publishable = make_publishable_key("clerk.bench.example.com", "production")
    options = ClerkOptions(publishable_key=parse_publishable_key(publishable), secret_key="sk_live_bench",
                           authorized_parties=("https://app.bench.example.com",))
    tokens = [
        jwt.encode(
            {"sub": f"user_{i}", "sid": f"sess_{i}", "iat": NOW, "nbf": NOW - 10, "exp": NOW + 60,
             "iss": "https://clerk.bench.example.com", "azp": "https://app.bench.example.com", "v": 2,
             "o": {"id": "org_1", "slg": "acme", "rol": "admin", "per": "read,manage", "fpm": "3"},
             "fea": "o:reports"},
            private, algorithm="RS256", headers={"kid": KID},
        )
        for i in range(count)
    ]
    return tokens, keys, options


def run_verify(token: str, options: ClerkOptions, keys: KeySet, cache: VerifiedTokenCache | None) -> None:
    flow = verify_token(token, options, KeyRing(keys), NOW * 1000, cache)
    try:
        next(flow)
    except StopIteration:
        return
    raise AssertionError("verification asked for I/O")


def cookie_request(token: str) -> RequestView:
    return RequestView.build("GET", "https://app.bench.example.com/dashboard", {
        "host": "app.bench.example.com", "sec-fetch-dest": "document",
        "cookie": f"__client_uat={NOW - 5}; __session={token}; _ga=GA1.2.3",
    })


def per_op(operation: Callable[[int], None], count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        operation(index)
    return (time.perf_counter() - start) / count * 1e6


def unexpected(ask: object) -> KeysAnswer:
    raise AssertionError(f"decision asked for I/O: {ask!r}")


def measure_round(
    tokens: list[str], views: list[RequestView], keys: KeySet, options: ClerkOptions
) -> dict[str, float]:
    """One interleaved round of every contender, each over the same tokens."""
    count = len(tokens)
    public_key = keys.by_kid[KID]
    verify_cache = VerifiedTokenCache(count * 2)
    decision_cache = VerifiedTokenCache(count * 2)

    def bare(i: int) -> None:
        jwt.decode(tokens[i], public_key, algorithms=["RS256"], options={"verify_aud": False}, leeway=5)

    def core(i: int) -> None:
        run_verify(tokens[i], options, keys, verify_cache)

    def decision(i: int) -> None:
        decide(views[i], options, keys, NOW, unexpected, decision_cache)

    return {
        "bare jwt.decode": per_op(bare, count),
        "core verify, first sight": per_op(core, count),
        "core verify, repeat": per_op(core, count),
        "decision, first sight": per_op(decision, count),
        "decision, repeat": per_op(decision, count),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="a few iterations, to prove the script runs")
    args = parser.parse_args()
    rounds, count = (1, 20) if args.smoke else (args.rounds, args.tokens)
    tokens, keys, options = make_tokens(count)
    views = [cookie_request(token) for token in tokens]

    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, value in measure_round(tokens, views, keys, options).items():
            results.setdefault(name, []).append(value)

    floor = statistics.median(results["bare jwt.decode"])
    print(f"{'operation':<28} {'µs/op':>9} {'x bare decode':>14}")
    for name, samples in results.items():
        value = statistics.median(samples)
        print(f"{name:<28} {value:>9.1f} {value / floor:>14.2f}")
    first = statistics.median(results["core verify, first sight"]) / floor
    repeat = statistics.median(results["core verify, repeat"]) / floor
    print(f"targets: first sight <= 1.3x ({'ok' if first <= 1.3 else 'MISSED'}), "
          f"repeat <= 0.2x ({'ok' if repeat <= 0.2 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
