"""A micro-benchmark of one signed-in request's decision, in process: screen, decide, identity headers.

    .venv/bin/python bench/admission.py [--baseline DIR]

Times the admission pipeline (limits, canonical path, Host, the app, the remembered decision, the route
policy) and the identity headers for a signed-in GET the memo has seen, with the bench's settings
(`bench/run.py`), without HTTP. With `--baseline DIR` (another checkout of the gateway) it times that
tree too, in a process of its own, so the two print side by side. Not a test: microseconds depend on
the machine; the ratio says what the decision's own steps cost beside another tree's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CALLS = 20_000
ROUNDS = 5
HERE = Path(__file__).resolve().parents[1]


async def _time_one_tree() -> float:
    """Best of `ROUNDS`, in microseconds per request, for the `gateway` package on `sys.path`."""
    from bench.run import gateway_env, make_tokens
    from gateway.edge.admission import Incoming
    from gateway.edge.runtime import EdgeRuntime
    from gateway.settings import load_settings

    tokens = make_tokens(3600)
    settings = load_settings(None, gateway_env(tokens, 9, 8080), require_upstream=True)
    runtime = EdgeRuntime(settings)
    cookie = f"__session={tokens.session}; __client_uat={tokens.issued_at - 10}".encode()
    headers = [(b"host", b"127.0.0.1:8080"), (b"accept", b"*/*"), (b"cookie", cookie)]
    incoming = Incoming("GET", b"/app/hello", b"", headers, "http", "127.0.0.1:8080", False)
    admission: Any = runtime.admission
    per_app = hasattr(runtime, "apps")  # a tree of one app has `runtime.identity` and sync headers

    async def once() -> object:
        screened = admission.screen(incoming)
        outcome = await admission.decide(screened)
        if per_app:
            return await screened.app.identity.headers(outcome.state, pending_signed_in=outcome.pending_signed_in)
        return runtime.identity.headers_for(outcome.state, pending_signed_in=outcome.pending_signed_in)

    for _ in range(CALLS // 10):
        await once()
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            await once()
        best = min(best, (time.perf_counter() - started) / CALLS)
    await runtime.aclose()
    return best * 1e6


def _measure(tree: Path) -> float:
    """The figure of the tree at `tree`, measured in a fresh interpreter that imports its `gateway`."""
    code = (
        f"import sys; sys.path[:0] = [{str(tree)!r}, {str(HERE)!r}]; import asyncio; "
        "from bench.admission import _time_one_tree; print(asyncio.run(_time_one_tree()))"
    )
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="another checkout to time beside this one")
    args = parser.parse_args(argv)
    this = _measure(HERE)
    print(f"this tree: {this:.2f} µs per signed-in request (screen + decide + identity headers)")
    if args.baseline:
        other = _measure(args.baseline.resolve())
        print(f"baseline {args.baseline.name}: {other:.2f} µs ({this / other:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
