"""Request-level operations of the Frontend API, shared by its handlers and its hosted pages.

Its own module so that the hosted pages (`hosted.py`) and the API (`app_fapi.py`) both use it without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar.response.base import ASGIResponse

from gateway.emulator.cookies import TEN_YEARS, CookieSpec
from gateway.emulator.errors import ClerkAPIError, not_found
from gateway.emulator.instance import Instance
from gateway.emulator.responses import json_reply
from gateway.emulator.serializers import fapi_client, fapi_session
from gateway.emulator.state import Client, Session
from gateway.emulator.web import AnyRequest, fapi_context, query_param


def dev_browser_missing() -> ClerkAPIError:
    return ClerkAPIError(
        401,
        "dev_browser_unauthenticated",
        "Browser unauthenticated",
        "Unable to authenticate this browser for your development instance. Pass __clerk_db_jwt.",
    )


@dataclass(slots=True)
class ClientLookup:
    client: Client | None
    dev_browser: str | None
    set_cookies: list[str] = field(default_factory=list)


class Fapi:
    """Request-level operations shared by the FAPI handlers and the hosted pages."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.config = instance.config
        self.state = instance.state

    def client_cookie(self, client: Client, base_url: str) -> str:
        secure = base_url.startswith("https:")
        value = self.state.new_client_cookie(client)
        return CookieSpec("__client", value, max_age=TEN_YEARS, http_only=True, secure=secure).header()

    def uat_cookies(self, client: Client) -> list[str]:
        """The `__client_uat` change to announce after a sign-in or sign-out (production only)."""
        return [self.uat_cookie(client)] if self.config.production else []

    def sign_out_client(self, request: AnyRequest) -> ASGIResponse:
        """End every session of the request's client and answer with the client (`DELETE` forms)."""
        client = self.find_client(request, create=False).client
        if client is None:
            raise not_found("client")
        self.sign_out_all(client)
        return self.wrapped(self.client_json(client), client, cookies=self.uat_cookies(client))

    def uat_cookie(self, client: Client) -> str:
        """`__client_uat` on the parent domain, so the app sees the sign-in state change (production)."""
        return CookieSpec(
            "__client_uat", str(client.signed_in_at), max_age=TEN_YEARS, domain=self.config.cookie_domain
        ).header()

    def find_client(self, request: AnyRequest, *, create: bool, dev_token: str | None = None) -> ClientLookup:
        if not self.config.production:
            token = (
                dev_token
                or query_param(request, "__clerk_db_jwt")
                or query_param(request, "__dev_session")  # the spec's DevBrowser scheme, older clients
                or request.cookies.get("__clerk_db_jwt")
            )
            client = self.state.client_for_dev_browser(token)
            if client is None:
                if not create:
                    raise dev_browser_missing()
                token, client = self.state.new_dev_browser()
            return ClientLookup(client, token)
        client = self.state.client_for_cookie(request.cookies.get("__client"))
        if client is None and create:
            client = self.state.new_client()
            base_url = fapi_context(request, self.config).base_url
            return ClientLookup(client, None, [self.client_cookie(client, base_url)])
        return ClientLookup(client, None)

    def client_session(self, client: Client | None, session_id: str) -> Session:
        session = self.state.session(session_id)
        if client is None or session is None or session.id not in client.session_ids:
            raise not_found("session")
        return session

    def client_json(self, client: Client | None) -> dict[str, Any] | None:
        return fapi_client(self.state, client, self.instance.started_at_ms)

    def session_json(self, session: Session) -> dict[str, Any]:
        return fapi_session(self.state, session, self.instance.started_at_ms)

    def wrapped(self, response: Any, client: Client | None, cookies: list[str] | None = None) -> ASGIResponse:
        body = {"response": response, "client": self.client_json(client)}
        return json_reply(body, cookies=cookies or [])

    def sign_out_all(self, client: Client | None) -> None:
        if client is None:
            return
        for session_id in list(client.session_ids):
            session = self.state.session(session_id)
            if session is not None and session.status == "active":
                self.state.end_session(session, "ended")
