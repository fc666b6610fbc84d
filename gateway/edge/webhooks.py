"""`POST /__gateway/webhooks/clerk`: Clerk's webhooks, so revoked sessions are refused at once.

Screened like every other entrance (limits, canonical path, `Host` allow-list); then the Svix
signature (`gateway.revocation.signature`), the event (`gateway.revocation.events`), the message id
(a redelivery is acknowledged and not applied twice) and the effects, published through the runtime's
`RevocationFeed` only: the hot path reads the DenyList the feed fills. Answers: 204 applied, 200
acknowledged without effect (a duplicate, an event type the gateway has no use for), 400 not a
genuine event (a JSON body with a precise `error` code), 404 no signing secret configured, 405 not
a POST, 413 a body over `MAX_BODY_BYTES`, 503 the feed failed. Never a 500.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, cast

from litestar import Request, route
from litestar.response.base import ASGIResponse

from gateway.edge.admission import Incoming
from gateway.edge.outcomes import Deny
from gateway.edge.runtime import EdgeRuntime
from gateway.revocation.events import EventError, effects_of
from gateway.revocation.signature import MESSAGE_ID_TTL, SignatureError

PATH = "/__gateway/webhooks/clerk"
MAX_BODY_BYTES = 1024 * 1024
"""Clerk's events are a few kilobytes; a user with much metadata stays far below this."""

logger = logging.getLogger("gateway.revocation")


@route(PATH, http_method=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def clerk_webhook(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Verify, de-duplicate and apply one Clerk webhook."""
    runtime: EdgeRuntime = request.app.state.runtime
    screened = runtime.admission.screen(Incoming.from_scope(cast(dict[str, Any], request.scope), runtime.forwarded))
    if isinstance(screened, Deny):
        return _error(screened.status, screened.code, screened.message)
    verifier = runtime.webhook_verifier
    if verifier is None:
        return _error(404, "not_found", "No webhook signing secret is configured (CLERK_WEBHOOK_SIGNING_SECRET).")
    if request.method != "POST":
        return _error(405, "method_not_allowed", "Webhooks are POSTed.", [("allow", "POST")])
    body = await _body(request)
    if body is None:
        return _error(413, "webhook_body_too_large", f"The webhook body is over {MAX_BODY_BYTES} bytes.")
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        signed = verifier.verify(body, headers)
        effects = effects_of(body, signed_at=signed.signed_at, retention=runtime.revocations.retention)
    except (SignatureError, EventError) as error:
        logger.warning("webhook refused: %s", error.code)
        return _error(400, error.code, error.message)
    feed = runtime.revocations.feed
    try:
        if not await feed.first_delivery(signed.message_id, MESSAGE_ID_TTL):
            logger.info("webhook %s (%s) already applied", signed.message_id, effects.event_type)
            return _answer(200, {"status": "duplicate", "type": effects.event_type})
        for revocation in effects.revocations:
            await feed.publish(revocation)
        for change in effects.changes:
            await feed.publish_change(change)
    except Exception:
        logger.exception("webhook %s (%s) could not be applied", signed.message_id, effects.event_type)
        with contextlib.suppress(Exception):  # its redelivery (the 503 asks for one) must not be a duplicate
            await feed.forget_delivery(signed.message_id)
        return _error(503, "webhook_not_applied", "The revocation could not be recorded; deliver it again later.")
    if effects.ignored:
        logger.info("webhook %s (%s) acknowledged: nothing to apply", signed.message_id, effects.event_type)
        return _answer(200, {"status": "ignored", "type": effects.event_type})
    logger.info(
        "webhook %s (%s) applied: %s",
        signed.message_id,
        effects.event_type,
        ", ".join(effects.describe()),
    )
    return _answer(204, None)


async def _body(request: Request[Any, Any, Any]) -> bytes | None:
    """The body, or None past `MAX_BODY_BYTES` (refused by `Content-Length` before reading any of it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> ASGIResponse:
    return _answer(status, {"error": code, "message": message}, headers)


def _answer(status: int, body: dict[str, Any] | None, headers: list[tuple[str, str]] | None = None) -> ASGIResponse:
    return ASGIResponse(
        body=b"" if body is None else json.dumps(body).encode(),
        status_code=status,
        media_type="application/json" if body is not None else None,
        headers=[*(headers or []), ("cache-control", "no-store")],
    )
