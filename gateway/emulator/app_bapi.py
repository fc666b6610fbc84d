"""The Backend API app: what the gateway calls with `Authorization: Bearer <secret key>`.

Besides Clerk's endpoints it has two emulator-only admin endpoints under `/v1/__emulator/`:
`POST rotate_keys` (new signing key, old one kept in the JWKS for the grace period) and
`GET state` (call counters, session statuses and webhook deliveries, for debugging and tests) and
`POST webhooks` (`url`: one more endpoint to send Clerk's webhooks to). The machine endpoints (API keys,
machines, M2M and OAuth tokens) live in `app_bapi_machines`.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl

from litestar import Litestar, Request, delete, get, post
from litestar.params import FromPath
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from gateway.emulator.app_bapi_machines import machine_handlers, machine_secret_allowed
from gateway.emulator.cookies import refreshed_session_cookies
from gateway.emulator.errors import EXCEPTION_HANDLERS, ClerkAPIError, not_found, param_invalid, param_missing
from gateway.emulator.instance import Instance
from gateway.emulator.responses import json_reply
from gateway.emulator.serializers import bapi_client, bapi_membership, bapi_organization, bapi_session, bapi_user
from gateway.emulator.signing import TokenRejected
from gateway.emulator.tokens import mint_session_token
from gateway.emulator.web import AnyRequest, body_params, query_param, text_param

PUBLIC_PATHS = frozenset({"/v1/health"})


def _pagination(request: AnyRequest, default_limit: int = 10) -> tuple[int, int]:
    def number(name: str, default: int, low: int, high: int) -> int:
        raw = query_param(request, name)
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise param_invalid(name, f"must be an integer between {low} and {high}")
        return int(raw)

    return number("limit", default_limit, 1, 500), number("offset", 0, 0, 10**9)


def _all_query_values(request: AnyRequest, name: str) -> list[str]:
    pairs = parse_qsl(request.url.query or "", keep_blank_values=True)
    return [value for key, value in pairs if key in (name, f"{name}[]") and value]


def create_bapi_app(instance: Instance) -> ASGIApp:
    config, state, keys = instance.config, instance.state, instance.keys
    created_ms = instance.started_at_ms

    async def require_secret_key(request: Request[Any, Any, Any]) -> None:
        if request.url.path in PUBLIC_PATHS:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if (
            scheme == "Bearer"
            and machine_secret_allowed(request.url.path)
            and instance.machine_tokens.machine_for_secret(token.strip()) is not None
        ):
            return
        if scheme != "Bearer" or not hmac.compare_digest(token.strip().encode(), config.secret_key.encode()):
            raise ClerkAPIError(
                401,
                "clerk_key_invalid",
                "Secret Key is invalid",
                "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
            )

    @get("/v1/health")
    async def health() -> ASGIResponse:
        return json_reply({"status": "healthy"})

    @get("/v1/jwks")
    async def jwks() -> ASGIResponse:
        state.count("jwks")
        return json_reply(keys.jwks())

    @get("/v1/clients/handshake_payload")
    async def handshake_payload(request: Request[Any, Any, Any]) -> ASGIResponse:
        nonce = query_param(request, "nonce")
        if not nonce:
            raise param_missing("nonce", 400)
        state.count("handshake_payload")
        directives = state.take_nonce(nonce)
        if directives is None:
            raise not_found("handshake payload")
        return json_reply({"directives": directives})

    @get("/v1/clients/{client_id:str}")
    async def get_client(client_id: FromPath[str]) -> ASGIResponse:
        client = state.clients.get(client_id)
        if client is None:
            raise not_found("client")
        return json_reply(bapi_client(state, client))

    def find_session(session_id: str) -> Any:
        session = state.session(session_id)
        if session is None:
            raise not_found("session")
        return session

    @get("/v1/sessions/{session_id:str}")
    async def get_session(session_id: FromPath[str]) -> ASGIResponse:
        return json_reply(bapi_session(find_session(session_id)))

    @post("/v1/sessions/{session_id:str}/revoke", status_code=200)
    async def revoke_session(session_id: FromPath[str]) -> ASGIResponse:
        session = find_session(session_id)
        state.end_session(session, "revoked")
        return json_reply(bapi_session(session))

    @post("/v1/sessions/{session_id:str}/refresh", status_code=200)
    async def refresh_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> ASGIResponse:
        state.count("refresh")
        params = await body_params(request)
        fields = {name: text_param(params, name) for name in ("expired_token", "refresh_token", "request_origin")}
        for name, value in fields.items():
            if not value:
                raise param_missing(name, 400)
        response_format = text_param(params, "format") or "token"
        if response_format not in ("token", "cookie"):
            raise param_invalid("format", "must be token or cookie")
        suffixed = query_param(request, "suffixed_cookies") == "true"
        session = find_session(session_id)
        if session.status != "active":
            raise ClerkAPIError(
                401, f"session_{session.status}", f"Session is {session.status}", f"The session is {session.status}."
            )
        try:
            claims = keys.verify_ignoring_expiry(fields["expired_token"] or "")
        except TokenRejected as error:
            raise ClerkAPIError(401, "expired_token_invalid", "Invalid expired token", str(error)) from error
        if claims.get("sid") != session.id:
            raise ClerkAPIError(
                401, "expired_token_invalid", "Invalid expired token", "Token belongs to another session."
            )
        if not hmac.compare_digest((fields["refresh_token"] or "").encode(), session.refresh_token.encode()):
            raise ClerkAPIError(401, "refresh_token_invalid", "Invalid refresh token", "The refresh token is invalid.")
        issuer = claims.get("iss") if isinstance(claims.get("iss"), str) else config.issuer
        token = mint_session_token(state, keys, session, authorized_party=fields["request_origin"], issuer=str(issuer))
        if response_format == "cookie":
            return json_reply(
                {"object": "cookies", "cookies": refreshed_session_cookies(token, config.cookie_suffix, suffixed)}
            )
        return json_reply({"object": "token", "jwt": token})

    @post("/v1/sessions/{session_id:str}/tokens", status_code=200)
    async def create_session_token(request: Request[Any, Any, Any], session_id: FromPath[str]) -> ASGIResponse:
        await body_params(request)
        session = find_session(session_id)
        if session.status != "active":
            raise ClerkAPIError(401, "signed_out", "Signed out", "You are signed out")
        token = mint_session_token(state, keys, session, authorized_party=None, issuer=config.issuer)
        return json_reply({"object": "token", "jwt": token})

    @get("/v1/users")
    async def list_users(request: Request[Any, Any, Any]) -> ASGIResponse:
        limit, offset = _pagination(request)
        emails = {e.lower() for e in _all_query_values(request, "email_address")}
        user_ids = set(_all_query_values(request, "user_id"))
        usernames = set(_all_query_values(request, "username"))
        search = (query_param(request, "query") or "").lower()
        users = [
            user
            for user in state.seed.users
            if (not emails or user.email.lower() in emails)
            and (not user_ids or user.id in user_ids)
            and (not usernames or user.username in usernames)
            and (not search or search in f"{user.email} {user.first_name} {user.last_name} {user.username}".lower())
        ]
        return json_reply([bapi_user(user, created_ms) for user in users[offset : offset + limit]])

    @get("/v1/users/{user_id:str}")
    async def get_user(user_id: FromPath[str]) -> ASGIResponse:
        state.count("get_user")
        user = state.seed.user(user_id)
        if user is None:
            raise not_found("user")
        return json_reply(bapi_user(user, created_ms))

    @delete("/v1/users/{user_id:str}", status_code=200)
    async def delete_user(user_id: FromPath[str]) -> ASGIResponse:
        """Clerk's `DeleteUser`: answers the spec's `DeletedObject`; the user's sessions end with it."""
        if not state.delete_user(user_id):
            raise not_found("user")
        return json_reply({"object": "user", "id": user_id, "deleted": True})

    def find_organization(organization_id: str) -> Any:
        organization = state.seed.organization(organization_id)
        if organization is None:
            raise not_found("organization")
        return organization

    @get("/v1/organizations/{organization_id:str}")
    async def get_organization(organization_id: FromPath[str]) -> ASGIResponse:
        state.count("get_organization")
        return json_reply(bapi_organization(state, find_organization(organization_id), created_ms))

    @get("/v1/organizations/{organization_id:str}/memberships")
    async def list_memberships(request: Request[Any, Any, Any], organization_id: FromPath[str]) -> ASGIResponse:
        organization = find_organization(organization_id)
        limit, offset = _pagination(request)
        memberships = state.seed.memberships_of_organization(organization.id)
        data = [bapi_membership(state, m, created_ms) for m in memberships[offset : offset + limit]]
        return json_reply({"data": data, "total_count": len(memberships)})

    @post("/v1/__emulator/rotate_keys", status_code=200)
    async def rotate_keys() -> ASGIResponse:
        fresh = keys.rotate()
        return json_reply({"kid": fresh.kid, **keys.jwks()})

    @get("/v1/__emulator/state")
    async def emulator_state() -> ASGIResponse:
        return json_reply({**state.snapshot(), "webhooks": instance.webhooks.snapshot()})

    @post("/v1/__emulator/webhooks", status_code=200)
    async def add_webhook_endpoint(request: Request[Any, Any, Any]) -> ASGIResponse:
        """Send Clerk's webhooks to one more endpoint (`url`): for tests that learn the gateway's port late."""
        url = text_param(await body_params(request), "url")
        if not url or not url.startswith(("http://", "https://")):
            raise param_invalid("url", "must be an http(s) URL")
        instance.webhooks.add_url(url)
        return json_reply(instance.webhooks.snapshot())

    return Litestar(
        route_handlers=[
            health,
            jwks,
            handshake_payload,
            get_client,
            get_session,
            revoke_session,
            refresh_session,
            create_session_token,
            list_users,
            get_user,
            delete_user,
            get_organization,
            list_memberships,
            rotate_keys,
            emulator_state,
            add_webhook_endpoint,
            *machine_handlers(instance),
        ],
        before_request=require_secret_key,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        debug=False,
    )
