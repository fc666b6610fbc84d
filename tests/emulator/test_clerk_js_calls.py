"""The Frontend API calls Clerk's browser SDK (`@clerk/clerk-js` 6.40.0) makes, replayed against the emulator.

Recorded by `tests/e2e/test_clerk_js_sdk.py` (the SDK in Chromium, on the demo's `/sdk` page, through the
gateway's `/__clerk` proxy): every call carries `__clerk_api_version=2026-08-20` (newer than the
2026-05-12 specs) and `_clerk_js_version`, PATCH/DELETE are tunnelled as `POST ?_method=`, bodies are
form-encoded with extra fields the specs do not list (`locale`, `timezone`, `intent`, `tab_state`).
Here the same sequence runs without a browser, each answer checked against the FAPI spec.

The dev browser travels two ways: as the `__clerk_db_jwt` cookie on the app's origin (what the demo does:
clerk-js runs its dev-browser setup only for Clerk's own development FAPI hosts, `*.accounts.dev` etc., not
for the emulator's `clerk.localhost`, so it relies on the cookie the gateway's handshake set) and as the
`__clerk_db_jwt` query parameter after `POST /v1/dev_browser` (what it does against a Clerk-hosted dev FAPI);
the spec's own `DevBrowser` scheme names the query parameter `__dev_session`, accepted too.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from tests.emulator.flows import jwks, new_dev_browser
from tests.emulator.support import OpenAPISpec, verify_with_jwks

APP_ORIGIN = "https://tools.example.com"
PROXY_URL = f"{APP_ORIGIN}/__clerk"
CLERK_JS = {"__clerk_api_version": "2026-08-20", "_clerk_js_version": "6.40.0"}


class ClerkJs:
    """Sends what clerk-js sends through a Frontend API proxy, and checks each answer against the spec."""

    def __init__(self, server: EmulatorServer, http: httpx.Client, spec: OpenAPISpec, dev_browser_in: str) -> None:
        self.server, self.http, self.spec, self.dev_browser_in = server, http, spec, dev_browser_in
        self.dev_browser = new_dev_browser(server, http)

    def call(
        self, method: str, path: str, template: str | None = None, form: dict[str, str] | None = None,
        status: int = 200,
    ) -> Any:
        params = dict(CLERK_JS)
        if method not in ("GET", "POST"):
            params["_method"] = method
        headers = {
            "Origin": APP_ORIGIN,
            "Clerk-Proxy-Url": PROXY_URL,
            "Clerk-Secret-Key": self.server.secret_key,
            "X-Forwarded-For": "10.0.0.7",
        }
        if self.dev_browser_in == "cookie":
            headers["Cookie"] = f"__clerk_db_jwt={self.dev_browser}; __client_uat=0"
        elif self.dev_browser_in == "legacy query":  # the spec's DevBrowser security scheme
            params["__dev_session"] = self.dev_browser
        else:
            params["__clerk_db_jwt"] = self.dev_browser
        wire_method = "GET" if method == "GET" else "POST"
        response = self.http.request(
            wire_method, f"{self.server.fapi_url}{path}", params=params, data=form, headers=headers
        )
        assert response.status_code == status, response.text
        return self.spec.validate_response(template or path, method, response)


@pytest.mark.parametrize("dev_browser_in", ["cookie", "query", "legacy query"])
def test_the_clerk_js_sign_in_flow_is_answered_as_the_spec_says(
    dev_emulator: EmulatorServer, http: httpx.Client, fapi_openapi: OpenAPISpec, dev_browser_in: str
) -> None:
    clerk = ClerkJs(dev_emulator, http, fapi_openapi, dev_browser_in)
    # Clerk.load()
    environment = clerk.call("PATCH", "/v1/environment")
    assert environment["display_config"]["sign_in_url"] == f"{PROXY_URL}/sign-in"
    assert environment["auth_config"]["first_factors"] == ["password"]
    loaded = clerk.call("GET", "/v1/client")
    assert loaded["response"]["sessions"] == [] and loaded["client"] == loaded["response"]
    # Clerk.client.signIn.create({identifier, password})
    sign_in = clerk.call(
        "POST", "/v1/client/sign_ins",
        form={"identifier": "alice@example.com", "password": "alice-password", "locale": "en-US", "timezone": "UTC"},
    )
    assert sign_in["response"]["status"] == "complete"
    session_id = sign_in["response"]["created_session_id"]
    assert [s["id"] for s in sign_in["client"]["sessions"]] == [session_id]
    # Clerk.setActive({session})
    sessions = "/v1/client/sessions/{session_id}"
    touched = clerk.call(
        "POST", f"/v1/client/sessions/{session_id}/touch", f"{sessions}/touch",
        form={"active_organization_id": "org_acme", "intent": "select_session"},
    )
    assert touched["response"]["id"] == session_id and touched["response"]["status"] == "active"
    assert touched["response"]["last_active_organization_id"] == "org_acme"
    # Clerk.session.getToken()
    minted = clerk.call(
        "POST", f"/v1/client/sessions/{session_id}/tokens", f"{sessions}/tokens",
        form={"organization_id": "org_acme", "tab_state": "focused"},
    )
    claims = verify_with_jwks(minted["jwt"], jwks(dev_emulator, http))
    assert (claims["sub"], claims["sid"], claims["iss"], claims["azp"]) == (
        "user_alice", session_id, PROXY_URL, APP_ORIGIN)
    assert claims["o"]["slg"] == "acme"
    reloaded = clerk.call("GET", "/v1/client")
    assert reloaded["response"]["last_active_session_id"] == session_id
    # Clerk.signOut()
    signed_out = clerk.call("DELETE", "/v1/client/sessions")
    assert signed_out["response"]["sessions"] == [] and signed_out["client"]["sessions"] == []
    ended = clerk.call("POST", f"/v1/client/sessions/{session_id}/tokens", f"{sessions}/tokens", status=401)
    assert ended["errors"][0]["code"] == "signed_out"
