"""The Backend API (BAPI) client: the few calls the gateway makes to Clerk, mapped to plain answers.

Why its own module: the protocol core only *asks* (`RefreshSession`, `FetchHandshakePayload`,
`VerifyMachineToken`, the JWKS); this is where those asks meet the network. Every call answers an
`ApiResponse` and never raises for HTTP or transport trouble, because PROTOCOL.md turns those into
request states (§6.3 `fetch-error`, §4.3 "no directives", §7.3 `unexpected-error`), not into exceptions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from gateway import __version__
from gateway.clerk.asks import ApiResponse, FetchHandshakePayload, RefreshSession, VerifyMachineToken
from gateway.clerk.errors import ConfigurationError
from gateway.clerk.options import CLERK_API_VERSION, DEFAULT_API_URL, ClerkOptions
from gateway.clerk_api.single_flight import SingleFlight

logger = logging.getLogger(__name__)

USER_AGENT = f"session-gateway/{__version__}"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_REFRESH_RESULT_TTL = 5.0


@dataclass(frozen=True, slots=True)
class _RefreshKey:
    """What makes two refreshes "the same": same tokens, and an answer shaped for the same request.

    `suffixed_cookies` and `request_origin` shape the returned Set-Cookie strings, so they are part of
    the key too; requests of one browser burst agree on them anyway.
    """

    session_id: str
    expired_token: str
    refresh_token: str
    suffixed_cookies: bool
    request_origin: str


class SharedRefreshes(Protocol):
    """Refreshes collapsed across processes (replicas): `run` answers with the one call any of them made.

    `parts` identify the refresh (the `_RefreshKey` fields, in order); an implementation keys on a
    digest of them and calls `call` itself whenever it cannot share (e.g. Redis away)."""

    async def run(self, parts: tuple[str, ...], call: Callable[[], Awaitable[ApiResponse]]) -> ApiResponse: ...


def _is_worth_reusing(response: ApiResponse) -> bool:
    """Keep definitive answers for the burst that follows; a transient failure deserves a new try."""
    return response.status is not None and response.status < 500


def _path_segment(value: str) -> str:
    """Percent-encode an id for one path segment, dots included.

    A session id comes from an *unverified* expired token, so it is attacker-chosen: `../users/x` must
    not become another BAPI path called with our secret key.
    """
    return quote(value, safe="").replace(".", "%2E")


def _declares_json(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class BackendApi:
    """An async client for Clerk's Backend API over one shared, pooled `httpx.AsyncClient`.

    Pass `client` to share the application's pool (its owner closes it); without one, an own client is
    created and `aclose()` closes it. Timeouts are set per request, so a shared client's defaults do
    not leak in. Redirects are never followed: the secret key goes to `api_url` and nowhere else.
    """

    def __init__(
        self,
        secret_key: str,
        *,
        api_url: str = DEFAULT_API_URL,
        api_version: str = "v1",
        client: httpx.AsyncClient | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        refresh_result_ttl: float = DEFAULT_REFRESH_RESULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        shared_refreshes: SharedRefreshes | None = None,
    ) -> None:
        if not secret_key:
            raise ConfigurationError("CLERK_SECRET_KEY", "A secret key is required to call the Backend API.")
        self.base_url = f"{api_url.rstrip('/')}/{api_version.strip('/')}"
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._headers = {
            "Authorization": f"Bearer {secret_key}",
            "Clerk-API-Version": CLERK_API_VERSION,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        self._refreshes: SingleFlight[_RefreshKey, ApiResponse] = SingleFlight(
            result_ttl=refresh_result_ttl, cache_if=_is_worth_reusing, clock=clock
        )
        self._shared_refreshes = shared_refreshes
        self._refresh_http_calls = 0

    @property
    def shared_refreshes(self) -> SharedRefreshes | None:
        """Where refreshes collapse across replicas (None: within this process only)."""
        return self._shared_refreshes

    @classmethod
    def from_options(cls, options: ClerkOptions, **kwargs: Any) -> BackendApi:
        """Build from the core's options (`api_url`, `api_version`, `secret_key`)."""
        if options.secret_key is None:
            raise ConfigurationError("CLERK_SECRET_KEY", "A secret key is required to call the Backend API.")
        return cls(options.secret_key, api_url=options.api_url, api_version=options.api_version, **kwargs)

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/jwks"

    @property
    def refresh_calls_started(self) -> int:
        """Refresh calls that really went out from this process (the others shared one of these)."""
        return self._refresh_http_calls

    async def fetch_jwks(self) -> ApiResponse:
        """`GET /jwks` (PROTOCOL.md §7.3); `JwksCache` interprets the answer."""
        return await self._call("GET", "/jwks")

    async def refresh_session(self, ask: RefreshSession) -> ApiResponse:
        """`POST /sessions/{sid}/refresh` (PROTOCOL.md §6.2), one HTTP call per burst of identical asks:
        per process always, across replicas too when `shared_refreshes` is given."""
        key = _RefreshKey(
            ask.session_id, ask.expired_token, ask.refresh_token, ask.suffixed_cookies, ask.request_origin
        )
        shared = self._shared_refreshes
        if shared is None:
            return await self._refreshes.run(key, lambda: self._refresh_once(ask))
        parts = (key.session_id, key.expired_token, key.refresh_token, str(key.suffixed_cookies), key.request_origin)
        return await self._refreshes.run(key, lambda: shared.run(parts, lambda: self._refresh_once(ask)))

    async def _refresh_once(self, ask: RefreshSession) -> ApiResponse:
        self._refresh_http_calls += 1
        return await self._call(
            "POST",
            f"/sessions/{_path_segment(ask.session_id)}/refresh",
            params={"suffixed_cookies": "true" if ask.suffixed_cookies else "false"},
            json_body=ask.json_body(),
        )

    async def handshake_payload(self, ask: FetchHandshakePayload) -> ApiResponse:
        """`GET /clients/handshake_payload?nonce=…` (PROTOCOL.md §4.3 step 2)."""
        return await self._call("GET", "/clients/handshake_payload", params={"nonce": ask.nonce})

    async def verify_machine_token(self, ask: VerifyMachineToken) -> ApiResponse:
        """`POST /api_keys/verify`, `/m2m_tokens/verify` or `/oauth_applications/access_tokens/verify`
        (PROTOCOL.md §10); `MachineTokenAnswers` caches and shares the answers."""
        return await self._call("POST", ask.path, json_body=ask.json_body())

    async def get_session(self, session_id: str) -> ApiResponse:
        return await self._call("GET", f"/sessions/{_path_segment(session_id)}")

    async def revoke_session(self, session_id: str) -> ApiResponse:
        return await self._call("POST", f"/sessions/{_path_segment(session_id)}/revoke")

    async def get_user(self, user_id: str) -> ApiResponse:
        return await self._call("GET", f"/users/{_path_segment(user_id)}")

    async def get_organization(self, organization_id: str) -> ApiResponse:
        """`GET /organizations/{id}` (its name, for the identity headers)."""
        return await self._call("GET", f"/organizations/{_path_segment(organization_id)}")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> ApiResponse:
        """One HTTP exchange mapped to an `ApiResponse`: `status=None` when no usable response came.

        "No usable response" is a transport failure (connect, DNS, TLS, timeout, protocol error) or a
        body that says it is JSON and is not: Clerk's SDK reports both the same way (§6.3 `fetch-error`).
        """
        content = None if json_body is None else json.dumps(json_body).encode()
        try:
            response = await self._client.request(
                method,
                self.base_url + path,
                params=params,
                content=content,
                headers=self._headers,
                timeout=self._timeout,
                follow_redirects=False,
            )
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
            # The message of a transport error names host and port only; never the headers.
            logger.warning("clerk_api.transport_error method=%s path=%s error=%r", method, path, error)
            return ApiResponse(status=None)
        if not response.content or not _declares_json(response):
            return ApiResponse(status=response.status_code, body=None, body_is_json=False)
        try:
            body = response.json()
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors
            logger.warning("clerk_api.unparsable_json method=%s path=%s status=%s", method, path, response.status_code)
            return ApiResponse(status=None)
        return ApiResponse(status=response.status_code, body=body, body_is_json=True)

    async def aclose(self) -> None:
        """Stop sharing refreshes and close the HTTP client if this object created it."""
        await self._refreshes.aclose()
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> BackendApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
