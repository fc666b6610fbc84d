"""Clerk's own browser SDK on a page of the tool, through the gateway's Frontend API proxy, in Chromium.

The sample tool's `/sdk` page loads `@clerk/clerk-js` (the npm package pinned in
`gateway/demo/clerk-js/package-lock.json`, served by the tool itself) with the emulator's publishable key
and `proxyUrl` = the tool's own `/__clerk`. The test drives the SDK as an app would: `Clerk.load()` (the
page calls it; its promise is `window.sdkDemo.ready`),
`Clerk.client.signIn.create({identifier, password})`, `Clerk.setActive`, `Clerk.session.getToken()`, a
protected page of the tool seen signed in, `Clerk.signOut()`. Every Frontend API call the SDK made is
recorded (`test-artifacts/e2e/clerk-js-calls.txt`), must have succeeded, and its JSON body must match the
FAPI spec's response schema for that operation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.demo.command import DemoPlan
from gateway.demo.sample_app import CLERK_JS_DIST, build_app
from tests.e2e.conftest import ARTIFACTS, shot
from tests.emulator.support import OpenAPISpec, fapi_spec, verify_with_jwks

ALICE = ("alice@example.com", "alice-password")
PROXY_PREFIX = "/__clerk"

needs_clerk_js = pytest.mark.skipif(
    not (CLERK_JS_DIST / "clerk.browser.js").is_file(),
    reason="NO CLERK-JS: gateway/demo/clerk-js/node_modules is missing (run `make clerk-js`, which needs npm); "
    "the clerk-js browser test did not run",
)


@dataclass
class Call:
    method: str
    path: str  # under the proxy prefix, e.g. /v1/client/sign_ins
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    status: int | None = None
    body: Any = None

    def line(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query)
        form = "&".join(f"{k}={'***' if k == 'password' else v}" for k, v in self.form)
        return f"{self.method} {PROXY_PREFIX}{self.path}?{query}" + (f"  body: {form}" if form else "") + (
            f"  -> {self.status}"
        )


@dataclass
class Recorder:
    """Every request the page sends to the Frontend API proxy, with its answer."""

    origin: str
    calls: list[Call] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def _is_fapi(self, url: str) -> bool:
        return url.startswith(f"{self.origin}{PROXY_PREFIX}/")

    def on_response(self, response: Any) -> None:
        request = response.request
        if not self._is_fapi(request.url):
            return
        parts = urlsplit(request.url)
        form = parse_qsl(request.post_data or "", keep_blank_values=True)
        call = Call(request.method, parts.path[len(PROXY_PREFIX):], parse_qsl(parts.query, keep_blank_values=True),
                    form, response.status)
        try:
            call.body = response.json()
        except Exception as error:  # not JSON, or gone with a navigation: fails the spec check below
            call.body = f"<unreadable body: {error}>"
        self.calls.append(call)

    def on_failed(self, request: Any) -> None:
        if self._is_fapi(request.url):
            self.failures.append(f"{request.method} {request.url}: {request.failure}")

    def save(self, extra: list[str]) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        lines = [call.line() for call in self.calls] + [f"FAILED {line}" for line in self.failures]
        (ARTIFACTS / "clerk-js-calls.txt").write_text("\n".join([*extra, "", *lines]) + "\n")


def spec_operation(spec: OpenAPISpec, method: str, path: str) -> str:
    """The spec path template (`/v1/client/sessions/{session_id}/touch`) that `path` instantiates."""
    for template, operations in spec.document["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return str(template)
    raise AssertionError(f"{method} {path} is not an operation of the FAPI spec")


def effective_method(call: Call) -> str:
    override = dict(call.query).get("_method")
    return override.upper() if call.method == "POST" and override else call.method


async def test_the_sdk_page_names_the_key_and_the_proxy_or_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "clerk.browser.js").write_text("window.loaded = true;")
    for dist, key, expected in (
        (tmp_path, "pk_test_abc", '<script src="/static/clerk-js/clerk.browser.js" '
                                  'data-clerk-publishable-key="pk_test_abc" data-clerk-proxy-url="/__clerk">'),
        (tmp_path / "missing", "pk_test_abc", "run `make clerk-js`"),
        (tmp_path, "", "no publishable key"),
    ):
        app = build_app(publishable_key=key, clerk_js_dist=dist)
        async with TestClient(TestServer(app)) as client:
            page = await (await client.get("/sdk")).text()
            bundle = await client.get("/static/clerk-js/clerk.browser.js")
        assert expected in page
        assert bundle.status == (200 if dist.is_dir() else 404)


@needs_clerk_js
def test_clerk_js_signs_in_through_the_frontend_api_proxy_and_the_tool_sees_it(page: Any, demo: DemoPlan) -> None:
    recorder = Recorder(demo.primary_origin)
    page.on("response", recorder.on_response)
    page.on("requestfailed", recorder.on_failed)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    # -- load: the page is public; the gateway's dev-browser handshake runs first, as for any page ------
    page.goto(f"{demo.primary_origin}/sdk")
    assert page.url == f"{demo.primary_origin}/sdk", page.url
    version = page.evaluate("window.sdkDemo.ready")  # the page's own `Clerk.load()` resolved with `Clerk.version`
    package = json.loads((CLERK_JS_DIST.parent / "package.json").read_text())
    assert version == package["version"]
    assert page.evaluate("[Clerk.loaded, Clerk.user, Clerk.proxyUrl]") == [True, None,
                                                                            f"{demo.primary_origin}/__clerk"]
    page.wait_for_function("document.getElementById('sdk-status').textContent.startsWith('Signed out')")
    shot(page, "clerk-js-01-loaded-signed-out")

    # -- sign in with the SDK's own resources ----------------------------------------------------------
    attempt = page.evaluate(
        """async ([identifier, password]) => {
             const signIn = await Clerk.client.signIn.create({identifier, password});
             return {status: signIn.status, session: signIn.createdSessionId, identifier: signIn.identifier};
           }""",
        list(ALICE),
    )
    assert attempt["status"] == "complete" and attempt["session"].startswith("sess_"), attempt
    assert attempt["identifier"] == ALICE[0]
    page.evaluate("(session) => Clerk.setActive({session})", attempt["session"])
    assert page.evaluate("[Clerk.user.id, Clerk.session.id, Clerk.organization && Clerk.organization.slug]") == [
        "user_alice", attempt["session"], "acme"]

    token = page.evaluate("Clerk.session.getToken()")
    jwks = httpx.get(f"http://127.0.0.1:{demo.fapi_port}/.well-known/jwks.json", timeout=5).json()
    claims = verify_with_jwks(token, jwks)
    assert claims["sub"] == "user_alice" and claims["sid"] == attempt["session"]
    assert claims["iss"] == f"{demo.primary_origin}/__clerk"  # issued for the proxy, as Clerk does
    assert claims["azp"] == demo.primary_origin
    page.wait_for_function("document.getElementById('sdk-status').textContent.startsWith("
                           "'Signed in with clerk-js as user_alice')")
    shot(page, "clerk-js-02-signed-in-with-the-sdk")

    # -- the tool, behind the gateway, sees the SDK's session ------------------------------------------
    page.goto(f"{demo.primary_origin}/")
    assert page.url == f"{demo.primary_origin}/", page.url
    assert page.inner_text("#greeting") == "Signed in as user_alice."
    assert page.inner_text("#session_id") == attempt["session"]
    shot(page, "clerk-js-03-dashboard-signed-in")

    # -- sign out with the SDK; the tool asks to sign in again ------------------------------------------
    page.goto(f"{demo.primary_origin}/sdk")
    assert page.evaluate("window.sdkDemo.ready.then(() => Clerk.user && Clerk.user.id)") == "user_alice"
    # signOut() ends the sessions and clears `__session`; given a callback it calls that instead of
    # navigating to `afterSignOutUrl` (so the recorder can still read the answer's body).
    page.evaluate("new Promise((done) => Clerk.signOut(() => done()))")
    assert page.evaluate("[Clerk.user, Clerk.session]") == [None, None]
    page.wait_for_function("document.getElementById('sdk-status').textContent.startsWith('Signed out')")
    shot(page, "clerk-js-04-signed-out-with-the-sdk")
    page.goto(f"{demo.primary_origin}/")
    assert page.url.startswith(demo.sign_in_url), page.url
    cookies = {c["name"]: c["value"] for c in page.context.cookies(demo.primary_origin)}
    assert "__session" not in cookies and cookies.get("__client_uat") == "0", cookies
    shot(page, "clerk-js-05-tool-asks-to-sign-in")

    # -- what the SDK asked the Frontend API, and what it got --------------------------------------------
    spec = fapi_spec()
    operations = [f"{effective_method(call)} {spec_operation(spec, effective_method(call), call.path)}"
                  for call in recorder.calls]
    recorder.save([f"clerk-js {version} through {demo.primary_origin}{PROXY_PREFIX} (emulator, development instance)",
                   "operations: " + ", ".join(dict.fromkeys(operations))])
    assert not recorder.failures and not page_errors, (recorder.failures, page_errors)
    for call, operation in zip(recorder.calls, operations, strict=True):
        assert call.status == 200, call.line()
        query = dict(call.query)
        assert query.get("_clerk_js_version") == version, call.line()
        assert query.get("__clerk_api_version"), call.line()  # newer than the 2026-05-12 specs: accepted
        method, template = operation.split(" ", 1)
        spec.validate(spec.response_schema(template, method, 200), call.body)
    expected = {
        "PATCH /v1/environment",
        "GET /v1/client",
        "POST /v1/client/sign_ins",
        "POST /v1/client/sessions/{session_id}/touch",
        "POST /v1/client/sessions/{session_id}/tokens",
        "DELETE /v1/client/sessions",
    }
    assert expected <= set(operations), sorted(set(operations))
    sign_out = [call for call, operation in zip(recorder.calls, operations, strict=True)
                if operation == "DELETE /v1/client/sessions"]
    assert sign_out[-1].body["response"]["sessions"] == [] and sign_out[-1].body["client"]["sessions"] == []


@needs_clerk_js
def test_a_wrong_authorized_parties_loop_ends_on_a_page_that_names_it(page: Any, demo: DemoPlan,
                                                                       tmp_path: Path) -> None:
    """Before: signed in with the SDK, Chromium went round sign-in redirects and dev-browser handshakes
    until ERR_TOO_MANY_REDIRECTS (Clerk's three-handshake guard never fired)."""
    import os
    import subprocess
    import sys
    import time

    from gateway.demo.command import CONFIG
    from tests.e2e.conftest import free_port

    port = free_port()
    origin = f"http://tools.localhost:{port}"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("CLERK_", "GATEWAY_"))}
    environment.update({**demo.primary_environment(), "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                        "GATEWAY_PUBLIC_ORIGIN": origin, "CLERK_AUTHORIZED_PARTIES": "https://elsewhere.example.com"})
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(CONFIG)], env=environment,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/__gateway/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        page.goto(f"{origin}/sdk")
        page.evaluate("window.sdkDemo.ready")
        result = page.evaluate("([identifier, password]) => window.sdkDemo.signIn(identifier, password)", list(ALICE))
        assert result["status"] == "complete", result
        hops: list[str] = []
        page.on("response", lambda response: hops.append(response.url) if 300 <= response.status < 400 else None)
        response = page.goto(f"{origin}/")
        assert response is not None and response.status == 508, hops
        assert len(hops) <= 4, hops
        assert "CLERK_AUTHORIZED_PARTIES" in page.inner_text("#message")
        assert f"Add {origin} to CLERK_AUTHORIZED_PARTIES" in page.inner_text("#fix")
        shot(page, "clerk-js-06-loop-page")
        metrics = httpx.get(f"http://127.0.0.1:{port}/__gateway/metrics", timeout=5).text
        assert 'gateway_redirect_loops_total{cause="authorized-parties"} 1.0' in metrics
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    assert "gateway.redirect_loop cause=authorized-parties" in (tmp_path / "gateway.log").read_text()
