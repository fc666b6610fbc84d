"""Multi-step flows shared by the tests: sign a user in, mint tokens, call BAPI."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.emulator.server import EmulatorServer
from tests.emulator.support import Browser


def bapi_headers(server: EmulatorServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.secret_key}"}


def new_dev_browser(server: EmulatorServer, http: httpx.Client) -> str:
    response = http.post(f"{server.fapi_url}/v1/dev_browser")
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def dev_sign_in(
    server: EmulatorServer, http: httpx.Client, email: str = "alice@example.com", password: str = "alice-password"
) -> tuple[str, dict[str, Any]]:
    """Sign in on a fresh dev browser; returns (dev browser token, FAPI sign-in answer)."""
    token = new_dev_browser(server, http)
    response = http.post(
        f"{server.fapi_url}/v1/client/sign_ins",
        params={"__clerk_db_jwt": token},
        data={"strategy": "password", "identifier": email, "password": password},
    )
    assert response.status_code == 200, response.text
    return token, response.json()


def prod_sign_in(
    server: EmulatorServer, browser: Browser, email: str = "alice@example.com", password: str = "alice-password"
) -> dict[str, Any]:
    """Sign in a production browser (cookie `__client` on the FAPI host)."""
    response = browser.post(
        f"{server.fapi_url}/v1/client/sign_ins",
        data={"strategy": "password", "identifier": email, "password": password},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def mint_token(server: EmulatorServer, http: httpx.Client, dev_token: str, session_id: str, **data: str) -> str:
    response = http.post(
        f"{server.fapi_url}/v1/client/sessions/{session_id}/tokens",
        params={"__clerk_db_jwt": dev_token},
        data=data,
        headers={"Origin": "http://app.test:3000"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["jwt"])


def jwks(server: EmulatorServer, http: httpx.Client) -> dict[str, Any]:
    return dict(http.get(f"{server.bapi_url}/v1/jwks", headers=bapi_headers(server)).json())
