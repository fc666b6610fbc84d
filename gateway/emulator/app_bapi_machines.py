"""The Backend API's machine endpoints: API keys, machines, M2M tokens and OAuth access tokens.

Clerk's endpoints (spec paths `/v1/api_keys*`, `/v1/machines*`, `/v1/m2m_tokens*`,
`/v1/oauth_applications/access_tokens/verify`) plus one emulator-only endpoint to mint an OAuth access
token, which in Clerk only an OAuth flow issues: `POST /v1/__emulator/oauth_access_tokens`
(`{"user_id", "scopes", "format": "opaque"|"jwt", "seconds_until_expiration", "audience"}`).

`POST /v1/m2m_tokens` is authenticated with a machine's secret key (as in Clerk); verify and revoke
accept it or the instance secret key. `machine_secret_allowed` tells the app's secret-key check so.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response.base import ASGIResponse
from litestar.types import ControllerRouterHandler

from gateway.emulator.errors import ClerkAPIError, not_found, param_invalid, param_missing
from gateway.emulator.instance import INSTANCE_ID, Instance
from gateway.emulator.machine_tokens import (
    Machine,
    bapi_api_key,
    bapi_m2m_token,
    bapi_machine,
    bapi_oauth_token,
)
from gateway.emulator.responses import json_reply
from gateway.emulator.web import AnyRequest, body_params, query_param, text_param

MACHINE_SECRET_PATHS = ("/v1/m2m_tokens",)


def machine_secret_allowed(path: str) -> bool:
    """Paths a machine secret key may call instead of the instance secret key."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in MACHINE_SECRET_PATHS)


def _bearer(request: AnyRequest) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme == "Bearer" else ""


def _scopes(params: dict[str, Any], name: str = "scopes") -> list[str]:
    value = params.get(name, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise param_invalid(name, "must be an array of strings")
    return list(value)


def _seconds(params: dict[str, Any]) -> float | None:
    value = params.get("seconds_until_expiration")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise param_invalid("seconds_until_expiration", "must be a positive number")
    return float(value)


def machine_handlers(instance: Instance) -> list[ControllerRouterHandler]:
    store = instance.machine_tokens

    def calling_machine(request: AnyRequest) -> Machine | None:
        return store.machine_for_secret(_bearer(request))

    def not_found_token(what: str) -> ClerkAPIError:
        return ClerkAPIError(404, "resource_not_found", "not found", f"The {what} was not found.")

    # -- API keys ---------------------------------------------------------------------------------

    @post("/v1/api_keys", status_code=200)
    async def create_api_key(request: Request[Any, Any, Any]) -> ASGIResponse:
        params = await body_params(request)
        name, subject = text_param(params, "name"), text_param(params, "subject")
        if not name:
            raise param_missing("name", 400)
        if not subject:
            raise param_missing("subject", 400)
        if subject.startswith("user_") and instance.state.seed.user(subject) is None:
            raise not_found("user")
        key_type = text_param(params, "type") or "api_key"
        key = store.create_api_key(
            subject=subject,
            name=name,
            scopes=_scopes(params),
            claims=params.get("claims"),
            description=text_param(params, "description"),
            created_by=text_param(params, "created_by"),
            seconds_until_expiration=_seconds(params),
            key_type=key_type,
        )
        return json_reply(bapi_api_key(key, store.now_ms(), with_secret=True))

    @get("/v1/api_keys")
    async def list_api_keys(request: Request[Any, Any, Any]) -> ASGIResponse:
        subject = query_param(request, "subject")
        if not subject:
            raise param_missing("subject", 400)
        include_invalid = query_param(request, "include_invalid") == "true"
        keys = store.list_api_keys(subject, include_invalid=include_invalid)
        now = store.now_ms()
        return json_reply({"data": [bapi_api_key(key, now) for key in keys], "total_count": len(keys)})

    @post("/v1/api_keys/verify", status_code=200)
    async def verify_api_key(request: Request[Any, Any, Any]) -> ASGIResponse:
        instance.state.count("verify_api_key")
        params = await body_params(request)
        secret = text_param(params, "secret")
        if not secret:
            raise param_missing("secret", 400)
        key = store.verify_api_key(secret)
        if key is None:
            raise not_found_token("API key")
        return json_reply(bapi_api_key(key, store.now_ms()))

    @post("/v1/api_keys/{key_id:str}/revoke", status_code=200)
    async def revoke_api_key(request: Request[Any, Any, Any], key_id: FromPath[str]) -> ASGIResponse:
        params = await body_params(request)
        key = store.api_key(key_id)
        if key is None:
            raise not_found("API key")
        store.revoke(key, text_param(params, "revocation_reason"))
        return json_reply(bapi_api_key(key, store.now_ms()))

    # -- machines ---------------------------------------------------------------------------------

    @post("/v1/machines", status_code=200)
    async def create_machine(request: Request[Any, Any, Any]) -> ASGIResponse:
        params = await body_params(request)
        name = text_param(params, "name")
        if not name:
            raise param_missing("name", 400)
        scoped = _scopes(params, "scoped_machines")
        ttl = params.get("default_token_ttl", 3600)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise param_invalid("default_token_ttl", "must be an integer of at least 1")
        machine = store.create_machine(name, scoped_machines=scoped, ttl=ttl)
        return json_reply(bapi_machine(machine, store, INSTANCE_ID, with_secret=True))

    @get("/v1/machines/{machine_id:str}")
    async def get_machine(machine_id: FromPath[str]) -> ASGIResponse:
        machine = store.machine(machine_id)
        if machine is None:
            raise not_found("machine")
        return json_reply(bapi_machine(machine, store, INSTANCE_ID))

    @get("/v1/machines/{machine_id:str}/secret_key")
    async def get_machine_secret_key(machine_id: FromPath[str]) -> ASGIResponse:
        machine = store.machine(machine_id)
        if machine is None:
            raise not_found("machine")
        return json_reply({"object": "machine_secret_key", "secret": machine.secret_key})

    # -- M2M tokens -------------------------------------------------------------------------------

    @post("/v1/m2m_tokens", status_code=201)
    async def create_m2m_token(request: Request[Any, Any, Any]) -> ASGIResponse:
        machine = calling_machine(request)
        if machine is None:
            raise ClerkAPIError(
                401, "machine_secret_key_invalid", "Machine secret key is invalid",
                "Creating an M2M token needs the machine's secret key.",
            )  # fmt: skip
        params = await body_params(request)
        token_format = text_param(params, "token_format") or "opaque"
        if token_format not in ("opaque", "jwt"):
            raise param_invalid("token_format", "must be opaque or jwt")
        seconds = _seconds(params)
        claims = params.get("claims")
        if token_format == "jwt":
            token_id, jwt_token, expiration = store.m2m_jwt(machine, seconds_until_expiration=seconds, claims=claims)
            now = store.now_ms()
            body = {
                "object": "machine_to_machine_token",
                "id": token_id,
                "subject": machine.id,
                "claims": claims,
                "scopes": list(machine.scoped_machines),
                "token": jwt_token,
                "revoked": False,
                "revocation_reason": None,
                "expired": False,
                "expiration": expiration,
                "last_used_at": None,
                "created_at": now,
                "updated_at": now,
            }
            return json_reply(body, status=201)
        token = store.create_m2m_token(machine, seconds_until_expiration=seconds, claims=claims)
        return json_reply(bapi_m2m_token(token, store.now_ms(), with_secret=True), status=201)

    @post("/v1/m2m_tokens/verify", status_code=200)
    async def verify_m2m_token(request: Request[Any, Any, Any]) -> ASGIResponse:
        instance.state.count("verify_m2m_token")
        params = await body_params(request)
        secret = text_param(params, "token")
        if not secret:
            raise param_missing("token", 400)
        token = store.verify_m2m_token(secret)
        machine = calling_machine(request)
        if token is None or (machine is not None and machine.id not in (token.subject, *token.scopes)):
            raise not_found_token("M2M token")
        return json_reply(bapi_m2m_token(token, store.now_ms()))

    @post("/v1/m2m_tokens/{token_id:str}/revoke", status_code=200)
    async def revoke_m2m_token(request: Request[Any, Any, Any], token_id: FromPath[str]) -> ASGIResponse:
        params = await body_params(request)
        token = store.m2m_token(token_id)
        machine = calling_machine(request)
        if token is None or (machine is not None and machine.id != token.subject):
            raise not_found("M2M token")
        store.revoke(token, text_param(params, "revocation_reason"))
        return json_reply(bapi_m2m_token(token, store.now_ms()))

    # -- OAuth access tokens ----------------------------------------------------------------------

    @post("/v1/oauth_applications/access_tokens/verify", status_code=200)
    async def verify_oauth_token(request: Request[Any, Any, Any]) -> ASGIResponse:
        instance.state.count("verify_oauth_token")
        params = await body_params(request)
        secret = text_param(params, "access_token") or text_param(params, "secret")
        if not secret:
            raise param_missing("access_token", 400)
        token = store.verify_oauth_token(secret)
        if token is None:
            raise not_found_token("OAuth access token")
        return json_reply(bapi_oauth_token(token, store.now_ms()))

    @post("/v1/__emulator/oauth_access_tokens", status_code=200)
    async def mint_oauth_token(request: Request[Any, Any, Any]) -> ASGIResponse:
        params = await body_params(request)
        user_id = text_param(params, "user_id")
        if not user_id:
            raise param_missing("user_id", 400)
        if instance.state.seed.user(user_id) is None:
            raise not_found("user")
        scopes = _scopes(params)
        seconds = _seconds(params) or 3600.0
        client_id = text_param(params, "client_id")
        extra = {"client_id": client_id} if client_id else {}
        if (text_param(params, "format") or "opaque") == "jwt":
            token = store.oauth_jwt(
                user_id=user_id, scopes=scopes, seconds_until_expiration=seconds,
                audience=text_param(params, "audience"), **extra,
            )  # fmt: skip
            return json_reply({"object": "oauth_access_token", "token": token})
        record = store.create_oauth_token(user_id=user_id, scopes=scopes, seconds_until_expiration=seconds, **extra)
        return json_reply({**bapi_oauth_token(record, store.now_ms()), "token": record.secret})

    @post("/v1/__emulator/oauth_access_tokens/{token_id:str}/revoke", status_code=200)
    async def revoke_oauth_token(token_id: FromPath[str]) -> ASGIResponse:
        token = store.oauth_token(token_id)
        if token is None:
            raise not_found("OAuth access token")
        store.revoke(token, None)
        return json_reply(bapi_oauth_token(token, store.now_ms()))

    return [
        create_api_key,
        list_api_keys,
        verify_api_key,
        revoke_api_key,
        create_machine,
        get_machine,
        get_machine_secret_key,
        create_m2m_token,
        verify_m2m_token,
        revoke_m2m_token,
        verify_oauth_token,
        mint_oauth_token,
        revoke_oauth_token,
    ]
