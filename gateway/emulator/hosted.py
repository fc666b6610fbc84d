"""Hosted pages, like Clerk's Account Portal: a plain sign-in form and a sign-out link.

After signing in the browser goes back to `redirect_url`: in development with the dev-browser token
appended (`__clerk_db_jwt`, which makes the app handshake, PROTOCOL.md §3.2 row D6); in production
with `__client_uat` set on the parent domain (which makes the app handshake, row D10).
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template
from typing import Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse

from gateway.emulator.errors import ClerkAPIError
from gateway.emulator.fapi_requests import Fapi
from gateway.emulator.responses import html_reply, redirect
from gateway.emulator.urls import absolute_http_url, with_query_param
from gateway.emulator.web import body_params, fapi_context, query_param, text_param

SIGN_IN_PATH = "/sign-in"
SIGN_OUT_PATH = "/sign-out"


def _template() -> Template:
    text = resources.files("gateway.emulator").joinpath("templates/sign_in.html").read_text("utf-8")
    return Template(text)


def hosted_routes(fapi: Fapi) -> list[HTTPRouteHandler]:
    config, state = fapi.config, fapi.state
    template = _template()

    def page(action: str, redirect_url: str, dev_browser: str, identifier: str = "", error: str = "") -> str:
        return template.substitute(
            application_name=html.escape(config.application_name),
            action=html.escape(action),
            redirect_url=html.escape(redirect_url),
            dev_browser=html.escape(dev_browser),
            identifier=html.escape(identifier),
            error=html.escape(error),
            instance_type=config.instance_type,
        )

    def back_to_app(redirect_url: str, dev_browser: str | None, cookies: list[str]) -> ASGIResponse:
        if not config.production and dev_browser:
            redirect_url = with_query_param(redirect_url, "__clerk_db_jwt", dev_browser)
        return redirect(redirect_url, status=303, cookies=cookies)

    def bad_redirect(error: ClerkAPIError) -> ASGIResponse:
        return html_reply(f"<!doctype html><p>{html.escape(error.long_message)}</p>", error.status)

    @get(SIGN_IN_PATH)
    async def sign_in_page(request: Request[Any, Any, Any]) -> ASGIResponse:
        try:
            redirect_url = absolute_http_url(query_param(request, "redirect_url"), "redirect_url")
        except ClerkAPIError as error:
            return bad_redirect(error)
        lookup = fapi.find_client(request, create=False) if config.production else None
        if lookup is None:
            dev_token = query_param(request, "__clerk_db_jwt") or request.cookies.get("__clerk_db_jwt") or ""
            client = state.client_for_dev_browser(dev_token)
        else:
            dev_token, client = "", lookup.client
        if state.active_session(client) is not None:
            return back_to_app(redirect_url, dev_token or None, [])
        action = f"{fapi_context(request, config).base_url}{SIGN_IN_PATH}"
        return html_reply(page(action, redirect_url, dev_token))

    @post(SIGN_IN_PATH, status_code=200)
    async def sign_in_submit(request: Request[Any, Any, Any]) -> ASGIResponse:
        params = await body_params(request)
        try:
            redirect_url = absolute_http_url(text_param(params, "redirect_url"), "redirect_url")
        except ClerkAPIError as error:
            return bad_redirect(error)
        identifier = text_param(params, "identifier") or ""
        password = text_param(params, "password") or ""
        lookup = fapi.find_client(request, create=True, dev_token=text_param(params, "__clerk_db_jwt") or None)
        client = lookup.client
        assert client is not None
        user = state.seed.user_by_identifier(identifier) if identifier else None
        if user is None or password != user.password:
            action = f"{fapi_context(request, config).base_url}{SIGN_IN_PATH}"
            text = page(action, redirect_url, lookup.dev_browser or "", identifier, "Wrong email address or password.")
            return html_reply(text, 422, cookies=lookup.set_cookies)
        fapi.sign_out_all(client)
        sign_in = state.new_sign_in(client, identifier, user)
        state.complete_sign_in(sign_in, client, user)
        cookies = [*lookup.set_cookies, *([fapi.uat_cookie(client)] if config.production else [])]
        return back_to_app(redirect_url, lookup.dev_browser, cookies)

    @get(SIGN_OUT_PATH)
    async def sign_out(request: Request[Any, Any, Any]) -> ASGIResponse:
        try:
            redirect_url = absolute_http_url(query_param(request, "redirect_url"), "redirect_url")
        except ClerkAPIError as error:
            return bad_redirect(error)
        try:
            lookup = fapi.find_client(request, create=False)
        except ClerkAPIError:
            return redirect(redirect_url, status=303)
        fapi.sign_out_all(lookup.client)
        cookies = [fapi.uat_cookie(lookup.client)] if config.production and lookup.client else []
        return redirect(redirect_url, status=303, cookies=cookies)

    return [sign_in_page, sign_in_submit, sign_out]
