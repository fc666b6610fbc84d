"""A legacy-style internal tool: it knows nothing of Clerk and only reads the gateway's identity headers.

Pages: a dashboard (who you are, your organization), an admin page (the gateway's policy restricts it to
`org:admin`), a JSON API, a large download and an upload form. Run: `python -m gateway.demo.sample_app`.

One page is not legacy: `/sdk` loads Clerk's own browser SDK (`@clerk/clerk-js`, pinned in
`gateway/demo/clerk-js/package-lock.json`, served from its `node_modules/.../dist` under `/static/clerk-js/`,
never from a CDN) with the instance's publishable key and `proxyUrl` = this origin's `/__clerk`, the
gateway's Frontend API proxy. Signing in there is seen by the gateway like any other sign-in.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from gateway.demo.received import AssertionReader, received_card


@dataclass(frozen=True)
class SampleSettings:
    name: str
    satellite_url: str
    sign_in_url: str
    primary_url: str
    publishable_key: str
    clerk_js: bool


SETTINGS = web.AppKey("settings", SampleSettings)
READER = web.AppKey("reader", AssertionReader)
CHUNK = 256 * 1024
CLERK_JS_DIST = Path(__file__).resolve().parent / "clerk-js" / "node_modules" / "@clerk" / "clerk-js" / "dist"
CLERK_JS_STATIC = "/static/clerk-js"
STYLE = """
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
nav a{margin-right:1rem} .card{border:1px solid #d6dae3;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}
dt{font-weight:600} dd{margin:0 0 .5rem 0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}
.muted{color:#687086} ul.permissions{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.3rem}
ul.permissions li{background:#eef1f6;border-radius:4px;padding:.05rem .4rem;max-width:100%;overflow-wrap:anywhere}
button{padding:.4rem .9rem} h1{font-size:1.5rem} h2{font-size:1.1rem}
pre{background:#f3f5f9;padding:.75rem;border-radius:6px;overflow-x:auto}
"""


def identity(request: web.Request) -> dict[str, str | None]:
    headers = request.headers
    return {
        "status": headers.get("X-Clerk-Auth-Status"),
        "user_id": headers.get("X-Clerk-User-Id"),
        "session_id": headers.get("X-Clerk-Session-Id"),
        "org_id": headers.get("X-Clerk-Org-Id"),
        "org_role": headers.get("X-Clerk-Org-Role"),
        "org_slug": headers.get("X-Clerk-Org-Slug"),
        "org_permissions": headers.get("X-Clerk-Org-Permissions"),
        "token_type": headers.get("X-Clerk-Token-Type"),
        "api_key_name": headers.get("X-Clerk-Api-Key-Name"),
    }


def page(request: web.Request, title: str, body: str) -> web.Response:
    app_name = request.app[SETTINGS].name
    nav = (
        '<nav><a href="/">Dashboard</a><a href="/admin">Admin</a><a href="/api/me">API</a>'
        '<a href="/files">Files</a><a href="/sdk">Clerk SDK</a></nav>'
    )
    signed_in = request.headers.get("X-Clerk-Auth-Status") == "signed-in"
    sign_out = (
        '<form method="post" action="/__gateway/sign-out" style="margin-top:2rem">'
        '<input type="hidden" name="redirect_url" value="/"><button id="sign-out">Sign out</button></form>'
        if signed_in
        else ""
    )
    text = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)} · {app_name}</title>"
        f"<style>{STYLE}</style></head><body><p class=muted>{app_name} · "
        f"<span id=host>{html.escape(request.host)}</span></p>{nav}<h1>{html.escape(title)}</h1>"
        f"{body}{sign_out}</body></html>"
    )
    return web.Response(text=text, content_type="text/html")


def describe(who: dict[str, str | None]) -> str:
    rows = "".join(
        f"<dt>{html.escape(label)}</dt><dd id={key}>{html.escape(who[key] or '—')}</dd>"
        for key, label in (("user_id", "User"), ("session_id", "Session"), ("org_slug", "Organization"),
                           ("org_role", "Role"))
    )
    permissions = [item.strip() for item in (who["org_permissions"] or "").split(",") if item.strip()]
    listed = "".join(f"<li>{html.escape(item)}</li>" for item in permissions) if permissions else "<li>—</li>"
    rows += f'<dt>Permissions</dt><dd><ul id=org_permissions class="permissions">{listed}</ul></dd>'
    return f'<div class="card"><dl>{rows}</dl></div>'


async def dashboard(request: web.Request) -> web.Response:
    who = identity(request)
    body = f"<p id=greeting>Signed in as <b>{html.escape(who['user_id'] or 'nobody')}</b>.</p>{describe(who)}"
    settings = request.app[SETTINGS]
    satellite, primary = settings.satellite_url, settings.primary_url
    if satellite and _host_of(satellite) == request.host:  # the same tool behind the satellite's gateway
        if primary:
            body += f'<p>Back to the <a id=primary href="{html.escape(primary)}">primary domain</a>.</p>'
    elif satellite:
        body += f'<p>Also open the <a id=satellite href="{html.escape(satellite)}">satellite domain</a>.</p>'
    body += await received_card(request.headers, request.app[READER])
    return page(request, "Dashboard", body)


def _host_of(url: str) -> str:
    return urlsplit(url).netloc


async def admin(request: web.Request) -> web.Response:
    who = identity(request)
    return page(request, "Admin", f"<p id=admin>Only organization admins see this page.</p>{describe(who)}")


async def api_me(request: web.Request) -> web.Response:
    return web.json_response({"identity": identity(request), "method": request.method})


async def files(request: web.Request) -> web.Response:
    body = (
        '<div class="card"><p><a id=download href="/download?mb=64">Download 64 MiB</a></p>'
        '<form method="post" action="/upload" enctype="application/octet-stream" id=upload-form>'
        '<input type="file" name="file"> <button>Upload</button></form></div>'
    )
    return page(request, "Files", body)


async def download(request: web.Request) -> web.StreamResponse:
    megabytes = max(0, min(int(request.query.get("mb", "1") or 1), 4096))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Content-Disposition": 'attachment; filename="sample.bin"'})
    response.content_length = megabytes * 1024 * 1024
    await response.prepare(request)
    block = bytes(range(256)) * (CHUNK // 256)
    for _ in range(megabytes * 4):
        await response.write(block)
    await response.write_eof()
    return response


async def upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"bytes": size, "sha256": digest.hexdigest(), "user_id": identity(request)["user_id"]})


async def sign_in(request: web.Request) -> web.Response:
    """A public page of the tool: where the satellite sends people to sign in on the primary domain."""
    target = request.app[SETTINGS].sign_in_url
    back = request.query.get("redirect_url", "/")
    if target:
        raise web.HTTPFound(f"{target}?{urlencode({'redirect_url': back})}")
    return page(request, "Sign in", "<p>Open the dashboard to sign in.</p>")


SDK_SCRIPT = """
const out = document.getElementById('sdk-status');
const signOut = document.getElementById('sdk-sign-out');
const show = (text) => { out.textContent = text; };
function describeClerk() {
  const user = Clerk.user;
  return user ? `Signed in with clerk-js as ${user.id} (session ${Clerk.session.id}).` : 'Signed out (clerk-js).';
}
window.sdkDemo = {
  ready: Clerk.load().then(() => {
    Clerk.addListener(() => { show(describeClerk()); signOut.hidden = !Clerk.user; });
    signOut.hidden = !Clerk.user;
    return Clerk.version;
  }),
  async signIn(identifier, password) {
    await window.sdkDemo.ready;
    const attempt = await Clerk.client.signIn.create({identifier, password});
    if (attempt.status === 'complete') await Clerk.setActive({session: attempt.createdSessionId});
    show(describeClerk());
    return {status: attempt.status, session: attempt.createdSessionId};
  },
  async signOut() { await Clerk.signOut(); show(describeClerk()); signOut.hidden = true; },
};
document.getElementById('sdk-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try { await window.sdkDemo.signIn(form.get('identifier'), form.get('password')); }
  catch (error) { show(`Sign-in failed: ${error.errors?.[0]?.longMessage || error}`); }
});
signOut.addEventListener('click', () => window.sdkDemo.signOut());
"""


async def sdk_page(request: web.Request) -> web.Response:
    """A page that signs in with Clerk's own browser SDK through the gateway's Frontend API proxy (public)."""
    key = request.app[SETTINGS].publishable_key
    if not request.app[SETTINGS].clerk_js or not key:
        missing = "run `make clerk-js` (npm ci in gateway/demo/clerk-js)" if key else "no publishable key"
        return page(request, "Clerk SDK", f"<p id=sdk-status>Clerk's browser SDK is not available: {missing}.</p>")
    body = (
        "<p id=sdk-status>Loading clerk-js…</p>"
        '<form id=sdk-form class=card><input name=identifier placeholder="alice@example.com"> '
        '<input name=password type=password placeholder=password> <button>Sign in with clerk-js</button></form>'
        '<p><button id=sdk-sign-out type=button hidden>Sign out with clerk-js</button></p>'
        f'<script src="{CLERK_JS_STATIC}/clerk.browser.js" data-clerk-publishable-key="{html.escape(key)}" '
        'data-clerk-proxy-url="/__clerk"></script>'
        f"<script>{SDK_SCRIPT}</script>"
    )
    return page(request, "Clerk SDK", body)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(name: str = "Acme internal tool", satellite_url: str = "", sign_in_url: str = "",
              publishable_key: str = "", clerk_js_dist: Path = CLERK_JS_DIST, primary_url: str = "",
              jwks_url: str = "", audience: str = "") -> web.Application:
    app = web.Application(client_max_size=0)
    app.router.add_get("/", dashboard)
    app.router.add_get("/admin", admin)
    app.router.add_route("*", "/api/me", api_me)
    app.router.add_get("/files", files)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/sign-in", sign_in)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/sdk", sdk_page)
    app[SETTINGS] = SampleSettings(name, satellite_url, sign_in_url, primary_url, publishable_key,
                                   clerk_js_dist.is_dir())
    app[READER] = AssertionReader(jwks_url, audience)
    if app[SETTINGS].clerk_js:
        app.router.add_static(CLERK_JS_STATIC, clerk_js_dist, append_version=False)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--name", default=os.environ.get("DEMO_APP_NAME", "Acme internal tool"))
    parser.add_argument("--satellite-url", default=os.environ.get("DEMO_SATELLITE_URL", ""))
    parser.add_argument("--sign-in-url", default=os.environ.get("DEMO_SIGN_IN_URL", ""))
    parser.add_argument("--primary-url", default=os.environ.get("DEMO_PRIMARY_URL", ""))
    parser.add_argument("--publishable-key", default=os.environ.get("DEMO_CLERK_PUBLISHABLE_KEY", ""),
                        help="for the clerk-js page (/sdk)")
    parser.add_argument("--jwks-url", default=os.environ.get("DEMO_GATEWAY_JWKS_URL", ""),
                        help="the gateway's /__gateway/jwks.json, to verify the identity assertion")
    parser.add_argument("--audience", default=os.environ.get("DEMO_ASSERTION_AUDIENCE", ""))
    args = parser.parse_args()
    app = build_app(args.name, args.satellite_url, args.sign_in_url, args.publishable_key,
                    primary_url=args.primary_url, jwks_url=args.jwks_url, audience=args.audience)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
