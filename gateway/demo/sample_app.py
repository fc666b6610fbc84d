"""A legacy-style internal tool: it knows nothing of Clerk and only reads the gateway's identity headers.

Pages: a dashboard (who you are, your organization), an admin page (the gateway's policy restricts it to
`org:admin`), a JSON API, a large download and an upload form. Run: `python -m gateway.demo.sample_app`.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
from urllib.parse import urlencode

from aiohttp import web

CHUNK = 256 * 1024
STYLE = """
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
nav a{margin-right:1rem} .card{border:1px solid #d6dae3;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}
dt{font-weight:600} dd{margin:0 0 .5rem 0;font-family:ui-monospace,monospace} .muted{color:#687086}
button{padding:.4rem .9rem} h1{font-size:1.5rem}
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
    }


def page(request: web.Request, title: str, body: str) -> web.Response:
    app_name = request.app["name"]
    nav = (
        '<nav><a href="/">Dashboard</a><a href="/admin">Admin</a><a href="/api/me">API</a>'
        '<a href="/files">Files</a></nav>'
    )
    sign_out = (
        '<form method="post" action="/__gateway/sign-out" style="margin-top:2rem">'
        '<input type="hidden" name="redirect_url" value="/"><button id="sign-out">Sign out</button></form>'
    )
    text = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)} · {app_name}</title>"
        f"<style>{STYLE}</style></head><body><p class=muted>{app_name}</p>{nav}<h1>{html.escape(title)}</h1>"
        f"{body}{sign_out}</body></html>"
    )
    return web.Response(text=text, content_type="text/html")


def describe(who: dict[str, str | None]) -> str:
    rows = "".join(
        f"<dt>{html.escape(label)}</dt><dd id={key}>{html.escape(who[key] or '—')}</dd>"
        for key, label in (("user_id", "User"), ("session_id", "Session"), ("org_slug", "Organization"),
                           ("org_role", "Role"), ("org_permissions", "Permissions"))
    )
    return f'<div class="card"><dl>{rows}</dl></div>'


async def dashboard(request: web.Request) -> web.Response:
    who = identity(request)
    body = f"<p id=greeting>Signed in as <b>{html.escape(who['user_id'] or 'nobody')}</b>.</p>{describe(who)}"
    satellite = request.app["satellite_url"]
    if satellite:
        body += f'<p>Also open the <a id=satellite href="{html.escape(satellite)}">satellite domain</a>.</p>'
    return page(request, "Dashboard", body)


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
    target = request.app["sign_in_url"]
    back = request.query.get("redirect_url", "/")
    if target:
        raise web.HTTPFound(f"{target}?{urlencode({'redirect_url': back})}")
    return page(request, "Sign in", "<p>Open the dashboard to sign in.</p>")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(name: str = "Acme internal tool", satellite_url: str = "", sign_in_url: str = "") -> web.Application:
    app = web.Application(client_max_size=0)
    app["name"] = name
    app["satellite_url"] = satellite_url
    app["sign_in_url"] = sign_in_url
    app.router.add_get("/", dashboard)
    app.router.add_get("/admin", admin)
    app.router.add_route("*", "/api/me", api_me)
    app.router.add_get("/files", files)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/sign-in", sign_in)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--name", default=os.environ.get("DEMO_APP_NAME", "Acme internal tool"))
    parser.add_argument("--satellite-url", default=os.environ.get("DEMO_SATELLITE_URL", ""))
    parser.add_argument("--sign-in-url", default=os.environ.get("DEMO_SIGN_IN_URL", ""))
    args = parser.parse_args()
    web.run_app(build_app(args.name, args.satellite_url, args.sign_in_url), host=args.host, port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
