"""FAPI's side of the handshake (PROTOCOL.md §4): directives for the app, then back to `redirect_url`.

`format=nonce` stores the directives behind a one-time nonce that BAPI's `handshake_payload` hands
out; `format=token` (legacy, the default) signs them into a `__clerk_handshake` JWT. Development
instances send either in the query of `redirect_url`, production instances as a cookie on the
parent domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.emulator.cookies import CookieSpec, DirectiveInputs, session_directives
from gateway.emulator.errors import param_invalid
from gateway.emulator.signing import KeyRing
from gateway.emulator.state import Client, EmulatorState
from gateway.emulator.tokens import mint_session_token
from gateway.emulator.urls import absolute_http_url, origin_of, with_query_param

HANDSHAKE_COOKIE_MAX_AGE = 60


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    redirect_url: str
    format: str
    suffixed_cookies: bool
    organization_id: str | None
    reason: str | None

    @classmethod
    def from_query(cls, query: dict[str, str]) -> HandshakeRequest:
        redirect_url = absolute_http_url(query.get("redirect_url"), "redirect_url")
        handshake_format = query.get("format") or "token"
        if handshake_format not in ("nonce", "token"):
            raise param_invalid("format", "must be one of nonce, token")
        suffixed = query.get("suffixed_cookies", "false")
        if suffixed not in ("true", "false", ""):
            raise param_invalid("suffixed_cookies", "must be true or false")
        return cls(
            redirect_url=redirect_url,
            format=handshake_format,
            suffixed_cookies=suffixed == "true",
            organization_id=query.get("organization_id"),
            reason=query.get("__clerk_hs_reason"),
        )


@dataclass(frozen=True, slots=True)
class HandshakeAnswer:
    location: str
    set_cookies: tuple[str, ...]
    directives: tuple[str, ...]


def handshake_directives(
    state: EmulatorState,
    keys: KeyRing,
    request: HandshakeRequest,
    client: Client | None,
    dev_browser: str | None,
    issuer: str,
) -> list[str]:
    """Set-Cookie strings for the app: a fresh session when the client has an active one, else cleared."""
    config = state.config
    session = state.active_session(client)
    token = None
    if session is not None:
        state.set_active_organization(session, request.organization_id)
        token = mint_session_token(
            state, keys, session, authorized_party=origin_of(request.redirect_url), issuer=issuer
        )
    return session_directives(
        DirectiveInputs(
            suffix=config.cookie_suffix,
            suffixed=request.suffixed_cookies,
            production=config.production,
            cookie_domain=config.cookie_domain,
            session_token=token,
            client_uat=(client.signed_in_at if client else 0) or state.now(),
            refresh_token=session.refresh_token if session else None,
            dev_browser=dev_browser if not config.production else None,
        )
    )


def answer_handshake(
    state: EmulatorState,
    keys: KeyRing,
    request: HandshakeRequest,
    client: Client | None,
    dev_browser: str | None,
    issuer: str,
) -> HandshakeAnswer:
    state.count("handshake")
    config = state.config
    directives = handshake_directives(state, keys, request, client, dev_browser, issuer)
    if request.format == "nonce":
        name, value = "__clerk_handshake_nonce", state.store_nonce(directives)
    else:
        now = state.now()
        name = "__clerk_handshake"
        value = keys.sign({"handshake": directives, "iat": now, "exp": now + 300})
    in_query = not config.production or (config.nonce_in_query and request.format == "nonce")
    if in_query:
        return HandshakeAnswer(with_query_param(request.redirect_url, name, value), (), tuple(directives))
    cookie = CookieSpec(
        name, value, max_age=HANDSHAKE_COOKIE_MAX_AGE, domain=config.cookie_domain, http_only=True
    ).header()
    return HandshakeAnswer(request.redirect_url, (cookie,), tuple(directives))
