"""The demo's second app, a team wiki on its own host name: it reads only the `remote-user` preset's headers.

It knows nothing of Clerk: `Remote-User` says who you are, `Remote-Name` and `Remote-Groups` the rest, and
it shows every identity header it received, and the gateway's signed assertion verified with the gateway's
keys. Run: `python -m gateway.demo.wiki_app`.
"""

from __future__ import annotations

import argparse
import html
import os

from aiohttp import web

from gateway.demo.received import AssertionReader, received_card

READER = web.AppKey("reader", AssertionReader)
STYLE = """
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1f2a1f;background:#fbfbf6}
.card{border:1px solid #d9dccb;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0;background:#fff}
dt{font-weight:600} dd{margin:0 0 .5rem 0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}
pre{background:#f3f4ec;padding:.75rem;border-radius:6px;overflow-x:auto} h1{font-size:1.5rem} h2{font-size:1.1rem}
.muted{color:#6b705c}
"""
PAGES = {
    "home": "Welcome to the team wiki. Everyone signed in can read it.",
    "on-call": "Who is on call this week: see the rota pinned in the team channel.",
}


async def wiki_page(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "home")
    if name not in PAGES:
        raise web.HTTPNotFound(text=f"no wiki page {name!r}")
    user = request.headers.get("Remote-User", "")
    display = request.headers.get("Remote-Name") or user or "nobody"
    links = " · ".join(f'<a href="/wiki/{page}">{page}</a>' for page in PAGES)
    card = await received_card(request.headers, request.app[READER])
    text = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(name)} · Team wiki</title>"
        f"<style>{STYLE}</style></head><body><p class=muted>Team wiki · <span id=host>{html.escape(request.host)}"
        f"</span></p><nav>{links}</nav><h1>{html.escape(name)}</h1>"
        f"<p id=wiki-greeting>Hello, {html.escape(display)}</p><p id=wiki-user>{html.escape(user)}</p>"
        f"<p>{html.escape(PAGES[name])}</p>{card}"
        '<form method="post" action="/__gateway/sign-out"><input type="hidden" name="redirect_url" value="/">'
        "<button id=sign-out>Sign out</button></form></body></html>"
    )
    return web.Response(text=text, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(jwks_url: str = "", audience: str = "") -> web.Application:
    app = web.Application()
    app.router.add_get("/", wiki_page)
    app.router.add_get("/wiki/{name}", wiki_page)
    app.router.add_get("/healthz", healthz)
    app[READER] = AssertionReader(jwks_url, audience)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--jwks-url", default=os.environ.get("DEMO_GATEWAY_JWKS_URL", ""),
                        help="the gateway's /__gateway/jwks.json, to verify the assertion")
    parser.add_argument("--audience", default=os.environ.get("DEMO_ASSERTION_AUDIENCE", "wiki"))
    args = parser.parse_args()
    web.run_app(build_app(args.jwks_url, args.audience), host=args.host, port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
