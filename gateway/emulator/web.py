"""What handlers read from a request: parameters (form or JSON), the proxy context, the client.

clerk-js sends form-encoded bodies, the backend SDKs JSON; both are accepted. A body that cannot be
read is a 400 in Clerk's envelope, never a 500.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from litestar import Request

from gateway.emulator.config import EmulatorConfig
from gateway.emulator.errors import ClerkAPIError, param_invalid, secret_key_invalid

AnyRequest = Request[Any, Any, Any]


def malformed_body(detail: str) -> ClerkAPIError:
    return ClerkAPIError(400, "malformed_request_body", "The request body is malformed.", detail)


async def body_params(request: AnyRequest) -> dict[str, Any]:
    """The request body as a flat dict: JSON object or form fields (last value wins)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or (not content_type and raw.lstrip()[:1] == b"{"):
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise malformed_body(f"invalid JSON: {error}") from error
        if not isinstance(data, dict):
            raise malformed_body("expected a JSON object")
        return data
    if content_type == "multipart/form-data":
        form = await request.form()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as error:
        raise malformed_body("body is not UTF-8") from error


def text_param(params: dict[str, Any], name: str) -> str | None:
    """A parameter as text; JSON numbers/bools are stringified, objects are rejected."""
    value = params.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise param_invalid(name, "must be a string")


def query_param(request: AnyRequest, name: str) -> str | None:
    """First value of a query parameter; None when absent, "" when present without a value."""
    for key, value in parse_qsl(request.url.query or "", keep_blank_values=True):
        if key == name:
            return value
    return None


def query_pairs(request: AnyRequest) -> tuple[tuple[str, str], ...]:
    return tuple(parse_qsl(request.url.query or "", keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class FapiContext:
    """Per-request view of the instance: which base URL to advertise and which domain is served."""

    base_url: str
    issuer: str
    proxy_url: str | None
    satellite_domain: str | None


def fapi_context(request: AnyRequest, config: EmulatorConfig) -> FapiContext:
    """Proxy mode (PROTOCOL.md §8): `Clerk-Proxy-Url` is honoured only with the right `Clerk-Secret-Key`."""
    proxy_url = request.headers.get("clerk-proxy-url")
    if proxy_url:
        secret = request.headers.get("clerk-secret-key", "")
        if not hmac.compare_digest(secret.encode(), config.secret_key.encode()):
            raise secret_key_invalid()
        parts = urlsplit(proxy_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise param_invalid("Clerk-Proxy-Url", "must be an absolute http(s) URL")
        base = proxy_url.rstrip("/")
        return FapiContext(
            base_url=base,
            issuer=base,
            proxy_url=base,
            satellite_domain=config.satellite_for_host(parts.hostname),
        )
    hostname = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
    satellite = config.satellite_for_host(hostname) if hostname else None
    if satellite:
        # A production satellite's FAPI is `clerk.<domain>`; its tokens are issued there too.
        return FapiContext(
            base_url=config.satellite_fapi_url(satellite),
            issuer=f"https://clerk.{satellite}",
            proxy_url=None,
            satellite_domain=satellite,
        )
    return FapiContext(
        base_url=config.public_url.rstrip("/"), issuer=config.issuer, proxy_url=None, satellite_domain=None
    )
