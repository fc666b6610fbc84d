"""`gateway explain`: why did the gateway answer what it answered? ("why am I in a redirect loop?")

Reads requests as JSON lines on stdin and writes one JSON decision a line, running the real flow with
the configured settings, I/O included (JWKS, refresh and handshake-nonce calls go to the Backend API).
Then the app the request is for (`app`: its name and the path it receives, by host then path prefix,
as `[[gateway.apps]]` say; null when no app takes it) and that app's route policy, as the gateway runs
it on that path and its readings: `policy` names the rule that decided (`route 2 (/admin/*)`), its
verdict and why (the condition that failed, e.g. `not met: plan = 'pro'`).
`--trace` adds the rows of the decision table the request went through, in order. A JWKS that cannot
be loaded is reported once on stderr at the end, not once a fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import urlsplit

from gateway.clerk.decide import AuthState
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.request import RequestView
from gateway.clerk_api.authenticator import Authenticator
from gateway.edge.app_choice import AppChooser
from gateway.edge.apps import app_policy
from gateway.edge.paths import AmbiguousPath, CanonicalPath, canonical_path
from gateway.edge.policy import Policy
from gateway.settings import GatewaySettings

Apps = AppChooser[tuple[str, Policy]]
"""Each app's name and route policy, chosen as the gateway chooses."""


def explained_apps(gateway: GatewaySettings) -> Apps:
    return AppChooser([(app, (app.name, app_policy(app, gateway))) for app in gateway.served_apps()])

EXAMPLE = (
    '{"method": "GET", "url": "https://app.example.com/x", '
    '"headers": {"cookie": "__client_uat=1700000000", "sec-fetch-dest": "document"}, "now": 1795406971}'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (the environment overrides it)")
    parser.add_argument(
        "--trace", action="store_true", help="add the rows of the decision table the request took, in order"
    )
    parser.epilog = f"Input, one JSON object a line, e.g.:\n  {EXAMPLE}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def run(args: argparse.Namespace) -> int:
    from gateway.settings_command import load_or_exit

    settings = load_or_exit(args.config, require_upstream=False)
    apps = explained_apps(settings.gateway)
    return asyncio.run(
        explain_stream(Authenticator(settings.clerk), sys.stdin, sys.stdout, apps, trace=args.trace, errors=sys.stderr)
    )


async def explain_stream(
    authenticator: Authenticator,
    lines: Iterable[str],
    out: TextIO,
    apps: Apps | None = None,
    *,
    trace: bool = False,
    errors: TextIO | None = None,
) -> int:
    """Explain each line; a malformed line gets an `error` object and makes the exit status 1."""
    failures = 0
    jwks_logger = logging.getLogger("gateway.clerk_api.jwks")
    quiet, jwks_logger.disabled = jwks_logger.disabled, True  # summed up once below instead
    try:
        await authenticator.start()
        for line in lines:
            if not line.strip():
                continue
            result = await explain_line(authenticator, line, apps, trace=trace)
            failures += "error" in result
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        jwks_logger.disabled = quiet
        await authenticator.aclose()
    summary = jwks_summary(authenticator)
    if summary and errors is not None:
        errors.write(summary + "\n")
    return 1 if failures else 0


def jwks_summary(authenticator: Authenticator) -> str | None:
    """One line for every JWKS fetch that failed, or None when none did."""
    jwks = authenticator.jwks
    if jwks is None or jwks.failure_count == 0 or jwks.last_failure is None:
        return None
    failure = jwks.last_failure
    fetches = f"{jwks.failure_count} fetch{'es' if jwks.failure_count != 1 else ''}"
    return (
        f"gateway explain: the JWKS could not be loaded ({fetches} failed, {jwks.request_count} request(s)): "
        f"{failure.reason}: {failure.message} Decisions that needed a key say so in their reason; "
        "`gateway doctor` checks the keys and the Backend API."
    )


async def explain_line(
    authenticator: Authenticator, line: str, apps: Apps | None = None, *, trace: bool = False
) -> dict[str, Any]:
    try:
        item = json.loads(line)
        view, now = _request_from_json(item)
    except (ValueError, TypeError) as error:
        return {"error": f"invalid input: {error}"}
    except ClerkProtocolError as error:
        return {"error": error.message, "reason": error.reason}
    rows: list[str] | None = [] if trace else None
    try:
        state = await authenticator.authenticate(view, now, trace=rows)
    except ClerkProtocolError as error:
        failed = {"status": "error", "http_status": 400, "reason": error.reason, "message": error.message}
        return failed if rows is None else {**failed, "trace": rows}
    result = describe(state)
    if apps is not None:
        result.update(describe_app_and_policy(apps, view, state))
    if rows is not None:
        result["trace"] = rows
    return result


def _request_from_json(item: Any) -> tuple[RequestView, float | None]:
    if not isinstance(item, Mapping):
        raise TypeError("each line must be a JSON object")
    url = item.get("url")
    if not isinstance(url, str) or not url:
        raise TypeError('"url" (an absolute URL) is required')
    method = item.get("method", "GET")
    headers = item.get("headers", {})
    if not isinstance(method, str) or not isinstance(headers, Mapping):
        raise TypeError('"method" must be a string and "headers" an object')
    pairs = [(str(name), str(value)) for name, value in headers.items()]
    now = item.get("now")
    if now is not None and (isinstance(now, bool) or not isinstance(now, int | float)):
        raise TypeError('"now" must be epoch seconds')
    return RequestView.build(method, url, pairs), (float(now) if now is not None else None)


def describe(state: AuthState) -> dict[str, Any]:
    """The JSON shape of a decision: what the gateway would answer or forward."""
    headers = {name: value for name, value in state.headers if name != "set-cookie"}
    claims = state.claims if state.is_signed_in else None
    return {
        "status": state.status,
        "reason": state.reason,
        "message": state.message,
        "http_status": 307 if state.location else None,
        "headers": headers,
        "set_cookies": state.set_cookies,
        "token_type": state.token_type,
        "machine": state.machine.as_dict() if state.machine is not None and state.is_signed_in else None,
        "auth": None
        if claims is None
        else {
            "user_id": claims.user_id,
            "session_id": claims.session_id,
            "org_id": claims.org_id,
            "org_role": claims.org_role,
            "org_slug": claims.org_slug,
            "org_permissions": list(claims.org_permissions),
        },
    }


def describe_app_and_policy(apps: Apps, view: RequestView, state: AuthState) -> dict[str, Any]:
    """The app the request is for, and which of its rules decided the path and method, the verdict and why."""
    parts = urlsplit(view.url)
    try:
        path = canonical_path((parts.path or "/").encode("utf-8"))
    except AmbiguousPath as error:
        return {"app": None, "policy": {"verdict": "refused", "http_status": 400, "because": error.message}}
    chosen = apps.choose(parts.netloc, parts.scheme, path)
    if chosen is None:
        refused = {"verdict": "refused", "http_status": 404, "because": "no app takes this host and path (no_app)"}
        return {"app": None, "policy": refused}
    name, policy = chosen.app
    app = {"name": name, "path": chosen.path.judged}
    if state.headers and state.location is not None:
        return {"app": app, "policy": {"verdict": None,
                                       "because": "Clerk's decision redirects first; the route policy is not asked"}}
    return {"app": app, "policy": describe_policy(policy, chosen.path, view, state)}


def describe_policy(policy: Policy, path: CanonicalPath, view: RequestView, state: AuthState) -> dict[str, Any]:
    """Which rule decided the app's path and method, its verdict and why."""
    claims = state.claims if state.status == "signed-in" else None
    decision = policy.decide(path.readings, view.headers, claims, view.method)
    rule = decision.rule
    if rule.number:
        label = rule.label
    else:
        label = "public_paths" if rule.access == "public" else "(no rule: every path needs a signed-in user)"
    return {
        "verdict": decision.verdict,
        "rule": label,
        "because": decision.because,
        "api": decision.is_api,
        "path": path.judged,
    }
