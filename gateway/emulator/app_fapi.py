"""The Frontend API app: what a browser, clerk-js and the gateway's handshake redirects talk to.

Client identification follows Clerk: production clients by the HttpOnly `__client` cookie on the
FAPI host, development clients by the dev-browser token (`__clerk_db_jwt` query parameter, the spec's
legacy `__dev_session` one, or the `__clerk_db_jwt` cookie: behind a Frontend API proxy that is the
app's cookie, which clerk-js relies on when the FAPI host is not one of Clerk's `*.accounts.dev` ones).
Responses of client endpoints use the `{"response", "client"}` envelope. `__clerk_api_version` and
`_clerk_js_version` are accepted whatever their value (clerk-js 6.40 sends 2026-08-20).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from litestar import Litestar, Request, delete, get, post, route
from litestar.params import FromPath
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from gateway.emulator.asgi import BrowserFacing
from gateway.emulator.cookies import TEN_YEARS, CookieSpec
from gateway.emulator.errors import EXCEPTION_HANDLERS, ClerkAPIError, not_found, param_invalid, signed_out
from gateway.emulator.fapi_requests import Fapi
from gateway.emulator.handshake import HandshakeRequest, answer_handshake
from gateway.emulator.hosted import hosted_routes
from gateway.emulator.instance import Instance
from gateway.emulator.responses import json_reply, redirect
from gateway.emulator.serializers import environment, fapi_sign_in
from gateway.emulator.state import Client, LinkRequest, Session
from gateway.emulator.tokens import mint_session_token
from gateway.emulator.urls import absolute_http_url, origin_of
from gateway.emulator.web import AnyRequest, body_params, fapi_context, query_pairs, query_param, text_param

HANDSHAKE_PATH = "/v1/client/handshake"


def create_fapi_app(instance: Instance) -> ASGIApp:
    fapi = Fapi(instance)
    config, state, keys = instance.config, instance.state, instance.keys

    @get("/v1/health")
    async def health() -> ASGIResponse:
        return json_reply({"status": "healthy"})

    @get("/v1/proxy-health")
    async def proxy_health(request: Request[Any, Any, Any]) -> ASGIResponse:
        context = fapi_context(request, config)
        if context.proxy_url is None:
            return json_reply({"status": "unhealthy", "message": "missing Clerk-Proxy-Url header"})
        forwarded_for = request.headers.get("x-forwarded-for", "")
        return json_reply({"status": "healthy", "x_forwarded_for": forwarded_for})

    @get("/.well-known/jwks.json")
    async def jwks() -> ASGIResponse:
        state.count("jwks")
        return json_reply(keys.jwks())

    @route("/v1/environment", http_method=["GET", "PATCH"])
    async def get_environment(request: Request[Any, Any, Any]) -> ASGIResponse:
        return json_reply(environment(config, fapi_context(request, config).base_url))

    @post("/v1/dev_browser", status_code=200)
    async def create_dev_browser(request: Request[Any, Any, Any]) -> ASGIResponse:
        if config.production:
            raise ClerkAPIError(400, "dev_browser_unsupported", "Dev browsers exist only on development instances.")
        token, _ = state.new_dev_browser()
        secure = fapi_context(request, config).base_url.startswith("https:")
        cookie = CookieSpec("__clerk_db_jwt", token, max_age=TEN_YEARS, secure=secure).header()
        return json_reply({"object": "dev_browser", "id": token, "token": token}, cookies=[cookie])

    # -- client --------------------------------------------------------------------------------

    @get("/v1/client")
    async def get_client(request: Request[Any, Any, Any]) -> ASGIResponse:
        client = fapi.find_client(request, create=False).client
        body = fapi.client_json(client)
        return json_reply({"response": body, "client": body})

    @route("/v1/client", http_method=["POST", "PUT"], status_code=200)
    async def create_client(request: Request[Any, Any, Any]) -> ASGIResponse:
        await body_params(request)
        lookup = fapi.find_client(request, create=True)
        body = fapi.client_json(lookup.client)
        return json_reply({"response": body, "client": body}, cookies=lookup.set_cookies)

    @delete("/v1/client", status_code=200)
    async def delete_client(request: Request[Any, Any, Any]) -> ASGIResponse:
        return fapi.sign_out_client(request)

    # -- sign-in -------------------------------------------------------------------------------

    @post("/v1/client/sign_ins", status_code=200)
    async def create_sign_in(request: Request[Any, Any, Any]) -> ASGIResponse:
        params = await body_params(request)
        lookup = fapi.find_client(request, create=True)
        client = lookup.client
        assert client is not None
        if state.active_session(client) is not None:
            raise ClerkAPIError(400, "session_exists", "You're already signed in.")
        strategy = text_param(params, "strategy")
        identifier = text_param(params, "identifier")
        password = text_param(params, "password")
        if strategy not in (None, "", "password"):
            raise ClerkAPIError(422, "strategy_for_user_invalid", "Only the password strategy is emulated.")
        user = state.seed.user_by_identifier(identifier) if identifier else None
        if identifier and user is None:
            raise ClerkAPIError(422, "form_identifier_not_found", "Couldn't find your account.")
        sign_in = state.new_sign_in(client, identifier, user)
        cookies = list(lookup.set_cookies)
        if user is not None and password is not None:
            if password != user.password:
                raise ClerkAPIError(
                    422, "form_password_incorrect", "Password is incorrect. Try again, or use another method."
                )
            state.complete_sign_in(sign_in, client, user)
            if config.production:
                cookies.append(fapi.uat_cookie(client))
        return fapi.wrapped(fapi_sign_in(sign_in), client, cookies=cookies)

    def find_sign_in(client: Client | None, sign_in_id: str) -> Any:
        sign_in = state.sign_ins.get(sign_in_id)
        if client is None or sign_in is None or sign_in.client_id != client.id:
            raise not_found("sign in")
        return sign_in

    @get("/v1/client/sign_ins/{sign_in_id:str}")
    async def get_sign_in(request: Request[Any, Any, Any], sign_in_id: FromPath[str]) -> ASGIResponse:
        client = fapi.find_client(request, create=False).client
        return fapi.wrapped(fapi_sign_in(find_sign_in(client, sign_in_id)), client)

    @post("/v1/client/sign_ins/{sign_in_id:str}/prepare_first_factor", status_code=200)
    async def prepare_first_factor(request: Request[Any, Any, Any], sign_in_id: FromPath[str]) -> ASGIResponse:
        await body_params(request)
        client = fapi.find_client(request, create=False).client
        return fapi.wrapped(fapi_sign_in(find_sign_in(client, sign_in_id)), client)

    @post("/v1/client/sign_ins/{sign_in_id:str}/attempt_first_factor", status_code=200)
    async def attempt_first_factor(request: Request[Any, Any, Any], sign_in_id: FromPath[str]) -> ASGIResponse:
        params = await body_params(request)
        client = fapi.find_client(request, create=False).client
        sign_in = find_sign_in(client, sign_in_id)
        assert client is not None
        strategy = text_param(params, "strategy")
        if not strategy:
            raise ClerkAPIError(422, "form_param_missing", "strategy must be included.")
        if strategy != "password":
            raise ClerkAPIError(422, "strategy_for_user_invalid", "Only the password strategy is emulated.")
        if sign_in.status != "needs_first_factor":
            raise ClerkAPIError(400, "sign_in_not_in_progress", "This sign in cannot be attempted any more.")
        user = state.seed.user(sign_in.user_id or "")
        password = text_param(params, "password")
        if user is None or password != user.password:
            raise ClerkAPIError(
                422, "form_password_incorrect", "Password is incorrect. Try again, or use another method."
            )
        if state.active_session(client) is not None:
            raise ClerkAPIError(400, "session_exists", "You're already signed in.")
        state.complete_sign_in(sign_in, client, user)
        cookies = fapi.uat_cookies(client)
        return fapi.wrapped(fapi_sign_in(sign_in), client, cookies=cookies)

    # -- sessions ------------------------------------------------------------------------------

    @delete("/v1/client/sessions", status_code=200)
    async def remove_all_sessions(request: Request[Any, Any, Any]) -> ASGIResponse:
        return fapi.sign_out_client(request)

    @get("/v1/client/sessions/{session_id:str}")
    async def get_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> ASGIResponse:
        client = fapi.find_client(request, create=False).client
        return fapi.wrapped(fapi.session_json(fapi.client_session(client, session_id)), client)

    @post("/v1/client/sessions/{session_id:str}/touch", status_code=200)
    async def touch_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> ASGIResponse:
        params = await body_params(request)
        client = fapi.find_client(request, create=False).client
        session = fapi.client_session(client, session_id)
        if session.status != "active":
            raise signed_out()
        if "active_organization_id" in params:
            wanted = text_param(params, "active_organization_id") or ""
            if not state.set_active_organization(session, wanted):
                raise ClerkAPIError(
                    404, "resource_not_found", "Organization not found", "No such organization for this user."
                )
        state.touch(session)
        return fapi.wrapped(fapi.session_json(session), client)

    async def finish_session(request: AnyRequest, session_id: str, status: str) -> ASGIResponse:
        client = fapi.find_client(request, create=False).client
        session = fapi.client_session(client, session_id)
        state.end_session(session, status)
        assert client is not None
        cookies = fapi.uat_cookies(client)
        return fapi.wrapped(fapi.session_json(session), client, cookies=cookies)

    @post("/v1/client/sessions/{session_id:str}/end", status_code=200)
    async def end_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> ASGIResponse:
        return await finish_session(request, session_id, "ended")

    @post("/v1/client/sessions/{session_id:str}/remove", status_code=200)
    async def remove_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> ASGIResponse:
        return await finish_session(request, session_id, "removed")

    @post("/v1/client/sessions/{session_id:str}/tokens", status_code=200)
    async def create_token(request: Request[Any, Any, Any], session_id: FromPath[str]) -> ASGIResponse:
        params = await body_params(request)
        client = fapi.find_client(request, create=False).client
        session = fapi.client_session(client, session_id)
        if session.status != "active":
            raise signed_out()
        if "organization_id" in params and not state.set_active_organization(
            session, text_param(params, "organization_id") or ""
        ):
            raise ClerkAPIError(403, "not_a_member_in_organization", "You are not a member of this organization.")
        context = fapi_context(request, config)
        token = fapi_mint(session, request, context.issuer)
        return json_reply({"object": "token", "jwt": token})

    def fapi_mint(session: Session, request: AnyRequest, issuer: str) -> str:
        origin = request.headers.get("origin")
        party = origin_of(origin) if origin else None
        return mint_session_token(state, keys, session, authorized_party=party, issuer=issuer)

    @post("/v1/client/sessions/{session_id:str}/tokens/{template_name:str}", status_code=200)
    async def create_template_token(session_id: FromPath[str], template_name: FromPath[str]) -> ASGIResponse:
        raise not_found("JWT template")

    # -- handshake and multi-domain sync -------------------------------------------------------

    @get(HANDSHAKE_PATH)
    async def handshake(request: Request[Any, Any, Any]) -> ASGIResponse:
        context = fapi_context(request, config)
        query = dict(reversed(query_pairs(request)))  # first occurrence wins
        handshake_request = HandshakeRequest.from_query(query)
        lookup = fapi.find_client(request, create=not config.production)
        if (
            config.production
            and context.satellite_domain
            and (lookup.client is None or handshake_request.reason == "satellite-needs-syncing")
        ):
            # The satellite's FAPI host has no (or a stale) client: fetch it from the primary.
            here = f"{context.base_url}{HANDSHAKE_PATH}?{request.url.query}"
            sync = (
                f"{config.public_url.rstrip('/')}/v1/client/sync?link_domain={quote(context.satellite_domain, safe='')}"
                f"&redirect_url={quote(here, safe='')}"
            )
            return redirect(sync)
        answer = answer_handshake(state, keys, handshake_request, lookup.client, lookup.dev_browser, context.issuer)
        return redirect(answer.location, cookies=[*lookup.set_cookies, *answer.set_cookies])

    @get("/v1/client/sync")
    async def sync(request: Request[Any, Any, Any]) -> ASGIResponse:
        context = fapi_context(request, config)
        if context.satellite_domain is not None:
            raise ClerkAPIError(400, "sync_not_on_primary", "Syncing starts on the primary domain.")
        link_domain = query_param(request, "link_domain")
        if not link_domain:
            raise ClerkAPIError(422, "form_param_missing", "link_domain must be included.")
        if link_domain.lower() not in {d.lower() for d in config.satellite_domains}:
            raise param_invalid("link_domain", "not a satellite domain of this instance")
        redirect_url = absolute_http_url(query_param(request, "redirect_url"), "redirect_url")
        lookup = fapi.find_client(request, create=True)
        assert lookup.client is not None
        target = urlsplit(redirect_url)
        handshake_query: tuple[tuple[str, str], ...] | None = None
        link_base = config.satellite_fapi_url(link_domain)
        if target.path.endswith(HANDSHAKE_PATH):
            handshake_query = tuple(parse_qsl(target.query, keep_blank_values=True))
            link_base = f"{target.scheme}://{target.netloc}{target.path[: -len(HANDSHAKE_PATH)]}"
        token = state.store_link(
            LinkRequest(
                client_id=lookup.client.id,
                satellite_domain=link_domain.lower(),
                redirect_url=redirect_url,
                handshake_query=handshake_query,
                proxy_url=context.proxy_url,
                expires_at=state.clock() + 300,
            )
        )
        location = f"{link_base}/v1/client/link?__clerk_token={quote(token, safe='')}"
        return redirect(location, cookies=lookup.set_cookies)

    @get("/v1/client/link")
    async def link(request: Request[Any, Any, Any]) -> ASGIResponse:
        context = fapi_context(request, config)
        token = query_param(request, "__clerk_token")
        if not token:
            raise ClerkAPIError(422, "form_param_missing", "__clerk_token must be included.")
        link_request = state.take_link(token)
        if link_request is None:
            raise ClerkAPIError(422, "sync_token_invalid", "The sync token is invalid or has expired.")
        if context.satellite_domain is not None and context.satellite_domain != link_request.satellite_domain:
            raise ClerkAPIError(403, "sync_domain_mismatch", "This sync token belongs to another domain.")
        client = state.clients.get(link_request.client_id)
        if client is None:
            raise not_found("client")
        cookies: list[str] = []
        dev_browser = None
        if config.production:
            cookies.append(fapi.client_cookie(client, context.base_url))
        else:
            dev_browser, _ = state.new_dev_browser(client)
        if link_request.handshake_query is None:
            return redirect(link_request.redirect_url, cookies=cookies)
        handshake_request = HandshakeRequest.from_query(dict(reversed(link_request.handshake_query)))
        answer = answer_handshake(state, keys, handshake_request, client, dev_browser, context.issuer)
        return redirect(answer.location, cookies=[*cookies, *answer.set_cookies])

    app = Litestar(
        route_handlers=[
            health,
            proxy_health,
            jwks,
            get_environment,
            create_dev_browser,
            get_client,
            create_client,
            delete_client,
            create_sign_in,
            get_sign_in,
            prepare_first_factor,
            attempt_first_factor,
            remove_all_sessions,
            get_session,
            touch_session,
            end_session,
            remove_session,
            create_token,
            create_template_token,
            handshake,
            sync,
            link,
            *hosted_routes(fapi),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        debug=False,
    )
    return BrowserFacing(app)
