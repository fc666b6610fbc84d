"""`gateway doctor`: live checks of the settings against the configured Clerk (or the emulator) and the app.

What Clerk users hit most is not a bad setting `check-config` can see, but two good-looking settings that
do not fit together: keys of two instances, a clock minutes off, a satellite its primary will not send
browsers back to, a public origin the session tokens are not minted for. Each check makes at most a few
requests and prints one line: `ok`, `FAIL` (with the fix), `note` or `skip`. The exit status is 1 when
a check failed, so a pipeline can run it before deploying.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO
from urllib.parse import urlencode, urlsplit

import httpx
import redis.asyncio as redis_asyncio

from gateway.clerk.options import CLERK_API_VERSION
from gateway.edge.frontend_api import configured_proxy_url
from gateway.edge.runtime import frontend_api_base_url
from gateway.settings import Settings
from gateway.settings.apps import AppSettings

Status = Literal["ok", "FAIL", "note", "skip"]
TIMEOUT = httpx.Timeout(5.0, connect=3.0)
_NAVIGATION = {"sec-fetch-dest": "document", "sec-fetch-mode": "navigate", "accept": "text/html"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's outcome: `check` names it, `text` says what was found, `fix` what to change."""

    check: str
    status: Status
    text: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:<4} {self.check:<17} {self.text}" + (f" Fix: {self.fix}" if self.fix else "")


@dataclass(slots=True)
class Reply:
    """What one probe got: the status (None: no answer), the JSON body (if any), the `Date` header."""

    url: str
    status: int | None
    body: Any = None
    date: float | None = None
    error: str = ""
    text: str = ""
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    sent_at: float = 0.0
    received_at: float = 0.0

    @property
    def answered(self) -> bool:
        return self.status is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (the environment overrides it)")


def run(args: argparse.Namespace) -> int:
    from gateway.settings_command import load_or_exit

    settings = load_or_exit(args.config, require_upstream=False)
    return asyncio.run(diagnose(settings, sys.stdout))


async def diagnose(
    settings: Settings, out: TextIO, *, clock: Callable[[], float] = time.time, client: httpx.AsyncClient | None = None
) -> int:
    """Run every check, print one line each and a summary; 1 if any failed, else 0."""
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
    try:
        verdicts = await Doctor(settings, http, clock).verdicts()
    finally:
        if own_client:
            await http.aclose()
    for verdict in verdicts:
        out.write(verdict.line() + "\n")
    failed = sum(verdict.status == "FAIL" for verdict in verdicts)
    out.write(f"{failed} check{'s' if failed != 1 else ''} failed\n" if failed else "all checks passed\n")
    out.flush()
    return 1 if failed else 0


class Doctor:
    def __init__(self, settings: Settings, client: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clerk = settings.clerk
        self.gateway = settings.gateway
        self.client = client
        self.clock = clock
        self.fapi_url = frontend_api_base_url(settings)
        self.bapi_url = f"{self.clerk.api_url.rstrip('/')}/{self.clerk.api_version.strip('/')}"

    async def verdicts(self) -> list[Verdict]:
        secret = self.clerk.secret_key
        bapi_jwks, fapi_environment, fapi_jwks = await asyncio.gather(
            self.get(f"{self.bapi_url}/jwks", {"authorization": f"Bearer {secret}"}) if secret else _nothing(),
            self.get(f"{self.fapi_url}/v1/environment"),
            self.get(f"{self.fapi_url}/.well-known/jwks.json"),
        )
        found = [
            *self.backend_api(bapi_jwks),
            self.frontend_api(fapi_environment),
            self.one_instance(bapi_jwks, fapi_jwks),
            *self.clock_skew(fapi_environment, bapi_jwks),
            *await self.satellite(),
            *self.origin(),
            await self.frontend_api_proxy(),
            *await asyncio.gather(*(self.upstream(app) for app in self.gateway.served_apps())),
            await self.redis(),
        ]
        return found

    # ------------------------------------------------------------------------------------------ probes

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Reply:
        sent_at = self.clock()
        try:
            response = await self.client.get(url, headers=headers or {})
        except httpx.HTTPError as error:
            return Reply(url, None, error=_error_text(error), sent_at=sent_at, received_at=self.clock())
        received_at = self.clock()
        try:
            body = response.json()
        except ValueError:
            body = None
        return Reply(
            url, response.status_code, body, _date_of(response), text=response.text[:4000], headers=response.headers,
            sent_at=sent_at, received_at=received_at,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ checks

    def backend_api(self, jwks: Reply | None) -> Iterator[Verdict]:
        if jwks is None:
            text = "no secret key: tokens are verified with CLERK_JWT_KEY only (no refresh, handshake or proxy)."
            yield Verdict("jwks", "skip", text)
            yield Verdict("secret-key", "skip", "no CLERK_SECRET_KEY to check.")
            return
        if not jwks.answered:
            yield Verdict(
                "jwks", "FAIL", f"the JWKS at {jwks.url} is unreachable ({jwks.error}).",
                "check CLERK_API_URL and that this machine may reach it (proxy, firewall, DNS).",
            )  # fmt: skip
            yield Verdict("secret-key", "skip", "not checked: the Backend API does not answer.")
            return
        if jwks.status == 401 or _error_code(jwks.body) == "clerk_key_invalid":
            yield Verdict("jwks", "ok", f"the Backend API answers at {self.bapi_url}.")
            yield Verdict(
                "secret-key", "FAIL", "the Backend API refuses the secret key (401 clerk_key_invalid).",
                "copy CLERK_SECRET_KEY from the API keys page of the instance CLERK_PUBLISHABLE_KEY names.",
            )  # fmt: skip
            return
        keys = _kids(jwks.body)
        if jwks.status != 200 or not keys:
            yield Verdict(
                "jwks", "FAIL", f"the JWKS at {jwks.url} answered {jwks.status} without signing keys.",
                "check CLERK_API_URL (it is the Backend API's base URL, without /v1).",
            )  # fmt: skip
            yield Verdict("secret-key", "skip", "not checked: no JWKS.")
            return
        yield Verdict("jwks", "ok", f"the JWKS at {jwks.url} has {len(keys)} signing key(s).")
        text = "the Backend API accepts the secret key."
        secret = self.clerk.secret_key or ""
        if secret.startswith(("sk_live_", "sk_test_")) and secret.startswith("sk_live_") != self.clerk.is_production:
            kinds = ("production", "development") if self.clerk.is_production else ("development", "production")
            yield Verdict(
                "secret-key", "FAIL", f"the publishable key is a {kinds[0]} key, the secret key a {kinds[1]} one.",
                "take both keys from the same instance.",
            )  # fmt: skip
            return
        yield Verdict("secret-key", "ok", text)

    def frontend_api(self, environment: Reply) -> Verdict:
        host = self.clerk.original_frontend_api
        if environment.answered and environment.status == 200 and isinstance(environment.body, dict):
            return Verdict("frontend-api", "ok", f"the Frontend API of the publishable key ({host}) answers at "
                           f"{self.fapi_url}.")
        found = environment.error or f"HTTP {environment.status}"
        return Verdict(
            "frontend-api", "FAIL",
            f"the Frontend API of the publishable key ({host}) does not answer at {self.fapi_url} ({found}).",
            "check CLERK_PUBLISHABLE_KEY (it names the instance's Frontend API) and, for a local emulator, "
            "CLERK_FAPI_URL.",
        )  # fmt: skip

    def one_instance(self, bapi_jwks: Reply | None, fapi_jwks: Reply) -> Verdict:
        """The keys the Frontend API signs with are the ones the Backend API (secret key) publishes."""
        fapi_keys = _kids(fapi_jwks.body) if fapi_jwks.status == 200 else set()
        if not fapi_keys:
            return Verdict("same-instance", "skip", "not checked: the Frontend API's JWKS could not be read.")
        if bapi_jwks is None:
            return Verdict("same-instance", "skip", "not checked: no secret key.")
        backend_keys = _kids(bapi_jwks.body) if bapi_jwks.status == 200 else set()
        if not backend_keys:
            return Verdict("same-instance", "skip", "not checked: the Backend API's JWKS could not be read.")
        if fapi_keys & backend_keys:
            return Verdict("same-instance", "ok", "the publishable and the secret key belong to one instance.")
        return Verdict(
            "same-instance", "FAIL",
            f"the publishable key's instance ({self.clerk.original_frontend_api}) signs with keys the secret "
            "key's Backend API does not publish: the two keys belong to different instances "
            "(every session would be refused: jwk-kid-mismatch).",
            "take CLERK_PUBLISHABLE_KEY and CLERK_SECRET_KEY from the same instance.",
        )  # fmt: skip

    def clock_skew(self, *replies: Reply | None) -> Iterator[Verdict]:
        tolerance = self.clerk.clock_skew_ms / 1000
        measured = [
            (name, reply) for name, reply in zip(("Frontend API", "Backend API"), replies, strict=True)
            if reply is not None and reply.date is not None
        ]  # fmt: skip
        if not measured:
            yield Verdict("clock", "skip", "not checked: no Date header from Clerk.")
            return
        worst_name, worst_skew = "", 0.0
        for name, reply in measured:
            assert reply.date is not None
            # `Date` has one-second resolution: the server's "now" is within [date, date + 1).
            local = (reply.sent_at + reply.received_at) / 2
            skew = reply.date + 0.5 - local
            if abs(skew) >= abs(worst_skew):
                worst_name, worst_skew = name, skew
        margin = 1.5  # the Date header's resolution, and the time the answer took
        names = " and ".join(name for name, _ in measured)
        if abs(worst_skew) <= tolerance + margin:
            yield Verdict("clock", "ok", f"this clock agrees with the {names} (within {abs(worst_skew):.0f} s).")
            return
        direction = "behind" if worst_skew > 0 else "ahead of"
        yield Verdict(
            "clock", "FAIL",
            f"this clock is {abs(worst_skew):.0f} s {direction} the {worst_name}'s (its Date header); Clerk "
            f"tolerates {tolerance:g} s, so fresh tokens look "
            f"{'not yet valid' if worst_skew > 0 else 'expired'} (handshake loops).",
            "synchronise this machine's clock (NTP); CLERK_CLOCK_SKEW_MS only hides the difference.",
        )  # fmt: skip

    async def satellite(self) -> list[Verdict]:
        clerk, gateway = self.clerk, self.gateway
        if not clerk.is_satellite:
            return [Verdict("satellite", "skip", "not a satellite.")]
        found: list[Verdict] = []
        sign_in = clerk.sign_in_url or ""
        origin = gateway.public_origin
        sign_in_origin = _origin(sign_in)
        if sign_in_origin is None:
            found.append(Verdict(
                "satellite-sign-in", "FAIL",
                f"CLERK_SIGN_IN_URL ({sign_in or 'not set'}) is not an absolute URL on the primary.",
                "set it to the primary's sign-in page, e.g. https://primary.example.com/sign-in.",
            ))  # fmt: skip
        elif origin is not None and sign_in_origin == origin:
            found.append(Verdict(
                "satellite-sign-in", "FAIL", f"CLERK_SIGN_IN_URL ({sign_in}) is on the satellite itself.",
                "point it at the primary's sign-in page.",
            ))  # fmt: skip
        else:
            found.append(Verdict("satellite-sign-in", "ok", f"sign-in happens on the primary ({sign_in_origin})."))
        found.append(await self._primary_sends_back(sign_in if sign_in_origin else None))
        if clerk.satellite_auto_sync:
            found.append(Verdict("satellite-sync", "ok", "auto-sync on: a first visit syncs with the primary."))
        else:
            found.append(Verdict(
                "satellite-sync", "note",
                "auto-sync off (CLERK_SATELLITE_AUTO_SYNC): a first visit without cookies is signed out until "
                "the browser comes back from the primary's sign-in with __clerk_synced=false.",
            ))  # fmt: skip
        return found

    async def _primary_sends_back(self, sign_in: str | None) -> Verdict:
        """Dev satellites sync through the primary's sign-in URL (row D5): ask it to send us back."""
        origin = self.gateway.public_origin
        if self.clerk.is_production:
            return Verdict("satellite-return", "skip", "production: the sync goes through Clerk (satellite "
                           "domains are listed in the Dashboard).")
        if sign_in is None or origin is None:
            return Verdict("satellite-return", "skip", "not checkable without CLERK_SIGN_IN_URL and "
                           "GATEWAY_PUBLIC_ORIGIN.")
        back = f"{origin}/"
        separator = "&" if urlsplit(sign_in).query else "?"
        probe = f"{sign_in}{separator}{urlencode({'__clerk_redirect_url': back})}"
        reply = await self.get(probe, _NAVIGATION)
        location = reply.headers.get("location", "")
        if reply.status in (302, 303, 307) and location.startswith(origin + "/"):
            return Verdict("satellite-return", "ok", f"the primary sends browsers back to {origin}.")
        refused = reply.status == 400 and "__clerk_redirect_url" in reply.text
        if refused:
            return Verdict(
                "satellite-return", "FAIL", f"the primary ({_origin(sign_in)}) refuses to send browsers back to "
                f"{origin}: the sync never completes.",
                f"add {origin} to the primary's GATEWAY_ALLOWED_REDIRECT_ORIGINS.",
            )  # fmt: skip
        seen = reply.error or f"HTTP {reply.status}"
        return Verdict("satellite-return", "skip", f"not checkable: the primary's sign-in URL answered {seen}.")

    def origin(self) -> list[Verdict]:
        clerk, gateway = self.clerk, self.gateway
        origin = gateway.public_origin
        if origin is None:
            return [Verdict("public-origin", "note", "GATEWAY_PUBLIC_ORIGIN is not set: redirects and origin "
                            "checks use each request's Host header.")]
        parts = urlsplit(origin)
        host = (parts.hostname or "").lower()
        found: list[Verdict] = []
        if clerk.authorized_parties and origin not in clerk.authorized_parties:
            found.append(Verdict(
                "public-origin", "FAIL",
                f"{origin} is not in CLERK_AUTHORIZED_PARTIES ({', '.join(clerk.authorized_parties)}): every "
                "session token minted for it is refused (token-invalid-authorized-parties, a sign-in loop).",
                f"add {origin} to CLERK_AUTHORIZED_PARTIES.",
            ))  # fmt: skip
        hosts = gateway.allowed_hosts
        if hosts and not any(host == allowed.split(":")[0] or (allowed.startswith("*.") and host.endswith(
                allowed[1:])) for allowed in hosts):
            found.append(Verdict(
                "public-origin", "FAIL", f"its host {host} is not in GATEWAY_ALLOWED_HOSTS: every request gets 421.",
                f"add {parts.netloc} to GATEWAY_ALLOWED_HOSTS.",
            ))  # fmt: skip
        if clerk.is_production and parts.scheme != "https" and not _is_local(host):
            found.append(Verdict(
                "public-origin", "FAIL", f"{origin} is plain http: Clerk's production cookies are Secure and are "
                "never sent back over it.", "serve the app over https.",
            ))  # fmt: skip
        if clerk.is_satellite and clerk.domain and not _within(host, clerk.domain.lower()):
            found.append(Verdict(
                "cookie-domain", "FAIL", f"CLERK_DOMAIN ({clerk.domain}) is not the public origin's host ({host}).",
                f"set CLERK_DOMAIN to {host}.",
            ))  # fmt: skip
        fapi_host = clerk.original_frontend_api.split(":")[0].lower()
        if clerk.is_production and not clerk.is_satellite and not clerk.proxy_url and fapi_host.startswith("clerk."):
            root = fapi_host.removeprefix("clerk.")
            if not _within(host, root):
                found.append(Verdict(
                    "cookie-domain", "FAIL",
                    f"the Frontend API ({fapi_host}) sets __client_uat on {root}, which {host} never receives: "
                    "every visit looks signed out.",
                    f"serve the app under {root}, make it a satellite, or proxy the Frontend API (CLERK_PROXY_URL).",
                ))  # fmt: skip
        if not found:
            found.append(Verdict("public-origin", "ok", f"{origin} fits the keys, hosts and cookie domains."))
        return found

    async def frontend_api_proxy(self) -> Verdict:
        gateway, clerk = self.gateway, self.clerk
        if not gateway.frontend_api_path or not clerk.secret_key:
            return Verdict("frontend-api-proxy", "skip", "off (no GATEWAY_FRONTEND_API_PATH or no secret key).")
        proxy_url = configured_proxy_url(clerk.proxy_url, gateway.public_origin, gateway.frontend_api_path)
        headers = {
            "clerk-secret-key": clerk.secret_key,
            "clerk-proxy-url": proxy_url or f"http://localhost{gateway.frontend_api_path}",
            "x-forwarded-for": "127.0.0.1",
            "clerk-api-version": CLERK_API_VERSION,
        }
        reply = await self.get(f"{self.fapi_url}/v1/proxy-health", headers)
        healthy = isinstance(reply.body, dict) and reply.body.get("status") == "healthy"
        if reply.status == 200 and healthy:
            return Verdict("frontend-api-proxy", "ok", f"{gateway.frontend_api_path} reaches the Frontend API "
                           f"({self.fapi_url}/v1/proxy-health is healthy).")
        seen = reply.error or f"HTTP {reply.status}"
        return Verdict(
            "frontend-api-proxy", "FAIL", f"the proxy's target {self.fapi_url} is not healthy ({seen}).",
            "check CLERK_FAPI_URL / the publishable key, and that this machine may reach the Frontend API.",
        )  # fmt: skip

    async def upstream(self, app: AppSettings) -> Verdict:
        """One verdict per app; the check is `upstream` alone for the default app, `upstream (name)` for others."""
        upstream = app.upstream
        check = "upstream" if app.implicit else f"upstream ({app.name})"
        setting = "GATEWAY_UPSTREAM" if app.implicit else f"the upstream of [[gateway.apps]] {app.name!r}"
        if not upstream:
            return Verdict(check, "skip", "no GATEWAY_UPSTREAM (forward-auth only).")
        reply = await self.get(upstream)
        if reply.answered:
            return Verdict(check, "ok", f"the app answers at {upstream} (HTTP {reply.status}).")
        return Verdict(
            check, "FAIL", f"the app does not answer at {upstream} ({reply.error}).",
            f"start the app, or fix {setting}.",
        )  # fmt: skip

    async def redis(self) -> Verdict:
        """With `GATEWAY_REDIS_URL`: Redis answers, and is recent enough for the commands the feed uses."""
        configured = self.gateway.redis_url
        if configured is None:
            return Verdict("redis", "skip", "no GATEWAY_REDIS_URL: each process keeps its own revocations, refreshes.")
        client = redis_asyncio.Redis.from_url(configured.url, socket_timeout=3, socket_connect_timeout=3)
        try:
            info = await client.info("server")
        except (redis_asyncio.RedisError, OSError) as error:
            return Verdict(
                "redis", "FAIL", f"Redis does not answer at {configured} ({type(error).__name__}): replicas "
                "serve from their own state meanwhile.", "start Redis, or fix GATEWAY_REDIS_URL.",
            )  # fmt: skip
        finally:
            await client.aclose()
        version = str(info.get("redis_version", "0"))
        numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
        if numbers < MINIMUM_REDIS:
            return Verdict(
                "redis", "FAIL", f"Redis {version} at {configured} lacks SET PXAT, which the revocation feed uses.",
                "use Redis 6.2 or later.",
            )  # fmt: skip
        return Verdict("redis", "ok", f"Redis {version} answers at {configured}.")


MINIMUM_REDIS = (6, 2)
"""`SET ... PXAT` (the revocation entries' expiry) arrived in Redis 6.2."""


async def _nothing() -> None:
    return None


def _error_text(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.ConnectError):
        return "connection refused or host unknown"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return type(error).__name__


def _date_of(response: httpx.Response) -> float | None:
    value = response.headers.get("date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _kids(body: Any) -> set[str]:
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        return set()
    return {str(key.get("kid")) for key in keys if isinstance(key, dict) and key.get("kid")}


def _error_code(body: Any) -> str | None:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return code if isinstance(code, str) else None
    return None


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _within(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _is_local(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")
