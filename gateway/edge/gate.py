"""The entrances for browsers and programs: proxied requests, WebSocket upgrades and `/__clerk`.

A raw ASGI callable that the app's dispatcher sends every request outside `/__gateway/` to. Each
request goes through the one admission pipeline (`gateway.edge.admission`); this module only renders
its outcome: the app's answer with the identity headers, a WebSocket relay, the Frontend API proxy,
or the gateway's own answer (`answers.send_outcome`). The app receives the canonical path the policy
judged, never the spelling the client sent.
"""

from __future__ import annotations

import logging

from gateway.asgi_types import Receive, Scope, Send
from gateway.edge import answers
from gateway.edge.admission import Incoming, Screened
from gateway.edge.outcomes import Deny, Outcome, Proceed
from gateway.edge.record import RequestRecord, note_outcome, record_of, stamp, stamping
from gateway.edge.runtime import EdgeRuntime

logger = logging.getLogger("gateway")

_NO_UPSTREAM = Deny(404, "no_upstream", "This gateway answers forward-auth only; no app is configured.")
_NO_WEBSOCKETS = Deny(404, "websockets_disabled", "This app takes no WebSocket connections.")


class Gate:
    def __init__(self, runtime: EdgeRuntime) -> None:
        self.runtime = runtime
        self.admission = runtime.admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        record = record_of(scope)
        websocket = scope["type"] == "websocket"
        incoming = Incoming.from_scope(scope, runtime.forwarded, method="GET" if websocket else None)
        screened = self.admission.screen(incoming)
        if isinstance(screened, Deny):
            await self._refuse(scope, receive, send, record, screened)
            return
        _route_to_canonical(scope, screened)
        app = screened.app
        # An app of its own Clerk instance: its host's Frontend API is that instance's, never `[clerk]`'s.
        frontend_api = app.frontend_api if app is not None and app.instance is not None else runtime.frontend_api
        if frontend_api is not None and frontend_api.matches(screened.path.judged):
            record.route_class = "frontend_api"
            if record.request_id is not None:  # the Frontend API proxy builds its own answers
                send = stamping(send, record, record.request_id)
            await frontend_api.handle(scope, receive, send)
            return
        if app is not None:
            record.app = app.name
        if websocket:
            record.route_class = "websocket"
            if app is not None and not app.websockets:
                await self._refuse(scope, receive, send, record, _NO_WEBSOCKETS)
                return
        outcome = await self.admission.decide(screened)
        note_outcome(record, outcome)
        if not isinstance(outcome, Proceed):
            await self._refuse(scope, receive, send, record, outcome)
            return
        assert app is not None  # no app: `decide` refused (`no_app`)
        proxy = app.proxy
        if proxy is None:
            await self._refuse(scope, receive, send, record, _NO_UPSTREAM)
            return
        _route_to_app(scope, screened)
        writer = app.identity
        identity = await writer.headers(outcome.state, pending_signed_in=outcome.pending_signed_in)
        if websocket:
            watch = runtime.session_watch
            ended = watch.open(outcome.state)  # a revocation of its session ends it, not only its next upgrade
            try:
                failed = await proxy.forward_websocket(
                    scope, receive, send, add_request_headers=identity, remove_request_headers=writer.strip,
                    ended=ended,
                )  # fmt: skip
            finally:
                watch.close(ended)
            if failed is not None:  # the app refused or failed the upgrade: the client's connect was received
                refusal = Deny(failed.status, failed.code, failed.public_message)
                await answers.refuse_websocket(scope, receive, send, refusal, connected=True)
            return
        response_headers = stamp(record, list(outcome.response_headers), 0)
        proxied = await proxy.forward(
            scope,
            receive,
            send,
            add_request_headers=identity,
            remove_request_headers=writer.strip,
            add_response_headers=response_headers,
        )
        record.status = proxied.status
        record.upstream_seconds = proxied.upstream_seconds
        record.upstream_error = proxied.error
        failure = proxied.failure
        if failure is not None:  # the app failed before answering: nothing was sent yet
            record.status = failure.status
            await answers.error(
                send,
                failure.status,
                failure.code,
                failure.public_message,
                html_page=screened.navigation,
                headers=response_headers,
            )

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord, outcome: Outcome
    ) -> None:
        if isinstance(outcome, Deny):
            record.decision = record.decision or "refused"
            record.reason = record.reason or outcome.code
        if scope["type"] == "websocket":
            await answers.refuse_websocket(scope, receive, send, outcome)
            return
        await answers.send_outcome(send, outcome, stamp(record, [], answers.status_of(outcome)))


def _route_to_canonical(scope: Scope, screened: Screened) -> None:
    """From here on the request is its canonical path: what the Frontend API proxy and the app receive."""
    scope["raw_path"] = screened.path.forwarded
    scope["path"] = screened.path.judged


def _route_to_app(scope: Scope, screened: Screened) -> None:
    """The app receives the path its rules judged: without its prefix when it strips it. `path` stays the
    request's own (the access log's), the proxy sends `raw_path`."""
    if screened.app_path is not screened.path:
        scope["raw_path"] = screened.app_path.forwarded
