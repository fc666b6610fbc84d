"""Real apps behind the gateway, not imitations: a Django project signing users in from the `remote-user`
preset, and Debian's Prometheus behind a path prefix of the same gateway as the sample tool.

Each app is a real server on loopback (uvicorn for Django with SQLite in a temporary directory, the
`prometheus` binary with its storage there too), started for the test and ready before it is used.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from aiohttp import web

from gateway.demo.sample_app import build_app
from gateway.emulator.server import EmulatorServer
from gateway.settings import Settings, load_settings
from tests.integration.conftest import RunningGateway
from tests.integration.test_gateway_flows import ALICE, BOB, sign_in
from tests.support.browser import FETCH, Browser
from tests.support.django_site import django_users, migrated_database, running_django
from tests.support.prometheus import running_prometheus

HOST = "app.test:8000"


def settings_from(clerk: EmulatorServer, tmp_path: Path, toml: str) -> Settings:
    """A gateway's settings: `toml` as its file, the emulator's keys and URLs from the environment."""
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    environ = {
        "CLERK_PUBLISHABLE_KEY": clerk.publishable_key,
        "CLERK_SECRET_KEY": clerk.secret_key,
        "CLERK_API_URL": clerk.api_url,
        "CLERK_FAPI_URL": clerk.fapi_url,
        "CLERK_SIGN_IN_URL": clerk.sign_in_url,
    }
    return load_settings(path, environ, require_upstream=True)


# ------------------------------------------------------------------------------------------ Django


@pytest.fixture(scope="module")
def django_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("django-migrated"))


@pytest.fixture
def django_site(tmp_path: Path, django_database: Path) -> Iterator[tuple[str, Path]]:
    """The project on a fresh copy of the migrated database: (base URL, data directory)."""
    data = tmp_path / "django"
    data.mkdir()
    with running_django(data, django_database) as url:
        yield url, data


@pytest.fixture
async def django_gateway(
    dev_clerk: EmulatorServer, django_site: tuple[str, Path], run_gateway: Callable[..., Any], tmp_path: Path
) -> RunningGateway:
    url, _ = django_site
    settings = settings_from(dev_clerk, tmp_path, f"""
[gateway]
upstream = "{url}"
mode = "protect"
public_paths = ["/whoami", "/healthz"]

[gateway.identity]
presets = ["remote-user"]
user = "email"
""")
    gateway: RunningGateway = await run_gateway(settings, HOST)
    return gateway


async def whoami(browser: Browser, gateway: RunningGateway, headers: dict[str, str] | None = None) -> Any:
    response = await browser.fetch("GET", f"{gateway.origin}/whoami", headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


async def test_signing_in_through_clerk_makes_a_django_user_keyed_by_the_email(
    django_gateway: RunningGateway, django_site: tuple[str, Path], new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(django_gateway)
    await sign_in(browser, django_gateway, ALICE, path="/admin/")
    assert await whoami(browser, django_gateway) == {
        "authenticated": True, "username": "alice@example.com", "email": "alice@example.com", "is_staff": True,
    }  # fmt: skip
    assert browser.cookie(HOST, "sessionid"), "Django keeps its own session beside Clerk's"
    assert django_users(django_site[1]) == [
        {"username": "alice@example.com", "email": "alice@example.com", "is_staff": True, "is_superuser": True},
    ]


@pytest.mark.parametrize(("who", "staff", "landed_path", "text"), [
    (ALICE, True, "/admin/", "Site administration"),
    (BOB, False, "/admin/login/", "You are authenticated as bob@example.com, but are not authorized to access"),
], ids=["org-admin", "org-member"])  # fmt: skip
async def test_an_org_admin_reaches_djangos_admin_as_staff_and_a_member_does_not(
    django_gateway: RunningGateway, new_browser: Callable[..., Browser],
    who: tuple[str, str], staff: bool, landed_path: str, text: str,
) -> None:
    browser = new_browser(django_gateway)
    landed = await sign_in(browser, django_gateway, who, path="/admin/")
    assert landed.status_code == 200
    assert urlsplit(str(landed.request.url)).path == landed_path
    assert text in html.unescape(landed.text)
    assert (await whoami(browser, django_gateway))["is_staff"] is staff


SPOOFS = {
    "dash": {"Remote-User": "alice@example.com", "Remote-Groups": "acme,org:admin"},
    "underscore": {"Remote_User": "alice@example.com", "Remote_Groups": "acme,org:admin"},
    "lower-case": {"remote-user": "alice@example.com", "remote-groups": "acme,org:admin"},
}
"""Django (5.2, under ASGI) also drops headers spelled with `_`; the gateway strips both spellings anyway."""


@pytest.mark.parametrize("spoof", SPOOFS.values(), ids=SPOOFS.keys())
async def test_a_signed_out_client_sending_its_own_remote_user_is_nobody_to_django(
    django_gateway: RunningGateway, django_site: tuple[str, Path], new_browser: Callable[..., Browser],
    spoof: dict[str, str],
) -> None:
    browser = new_browser(django_gateway)
    assert (await whoami(browser, django_gateway, spoof))["authenticated"] is False
    admin = await browser.navigate(f"{django_gateway.origin}/admin/", headers=spoof, follow=False)
    assert admin.status_code == 307 and "x-clerk-auth-status" in admin.headers  # to Clerk, not into Django
    assert django_users(django_site[1]) == []


@pytest.mark.parametrize("spoof", SPOOFS.values(), ids=SPOOFS.keys())
async def test_a_signed_in_member_sending_an_admins_remote_user_stays_themselves(
    django_gateway: RunningGateway, new_browser: Callable[..., Browser], spoof: dict[str, str]
) -> None:
    browser = new_browser(django_gateway)
    await sign_in(browser, django_gateway, BOB, path="/admin/")
    assert await whoami(browser, django_gateway, spoof) == {
        "authenticated": True, "username": "bob@example.com", "email": "bob@example.com", "is_staff": False,
    }  # fmt: skip
    admin = await browser.navigate(f"{django_gateway.origin}/admin/", headers=spoof)
    assert urlsplit(str(admin.request.url)).path == "/admin/login/"


async def test_django_alone_would_believe_the_header_which_is_why_the_gateway_strips_it(
    django_site: tuple[str, Path],
) -> None:
    """The control for the spoofing tests: the header is what Django trusts, so only the gateway may send it."""
    url, data = django_site
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/whoami", headers={"Remote-User": "mallory@example.com"})
    assert answer.json()["username"] == "mallory@example.com"
    assert [user["username"] for user in django_users(data)] == ["mallory@example.com"]


# ------------------------------------------------------------------------------------------ Prometheus


@contextlib.asynccontextmanager
async def serving_aiohttp(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prometheus for the module, under its route prefix `/prom` (so its links and redirects carry it)."""
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), "/prom", f"http://{HOST}/prom") as url:
        yield url


@pytest.fixture
async def tools_and_prometheus(
    dev_clerk: EmulatorServer, run_gateway: Callable[..., Any], tmp_path: Path, prometheus: str
) -> AsyncIterator[RunningGateway]:
    """One gateway: the sample tool at `/`, Prometheus under `/prom`."""
    async with serving_aiohttp(build_app()) as tool:
        settings = settings_from(dev_clerk, tmp_path, f"""
[gateway]
mode = "protect"
public_paths = ["/healthz"]
api_paths = ["/api/*"]

[[gateway.apps]]
name = "tools"
upstream = "{tool}"

[[gateway.apps]]
name = "prometheus"
path_prefix = "/prom"
upstream = "{prometheus}"
""")
        yield await run_gateway(settings, HOST)


def assets_of(page: str, base: str) -> list[str]:
    """The page's scripts, style sheets and icons, as absolute URLs."""
    found = re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"', page)
    return [urljoin(base, html.unescape(link)) for link in found]


async def test_prometheus_ui_assets_and_api_work_behind_the_prefix_for_a_signed_in_user(
    tools_and_prometheus: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    gateway = tools_and_prometheus
    browser = new_browser(gateway)
    page = await sign_in(browser, gateway, ALICE, path="/prom/graph")
    assert page.status_code == 200 and "<title>Prometheus Time Series" in page.text
    assert urlsplit(str(page.request.url)).path.startswith("/prom/"), "Prometheus' redirects stay under the prefix"
    assets = assets_of(page.text, f"{gateway.origin}{urlsplit(str(page.request.url)).path}")
    assert len(assets) >= 10 and all(urlsplit(asset).path.startswith("/prom/") for asset in assets), assets
    for asset in assets:
        answer = await browser.request("GET", asset, headers={"sec-fetch-dest": "script", "accept": "*/*"})
        assert answer.status_code == 200, asset
        assert answer.headers["content-type"].split(";")[0] in {"text/javascript", "text/css", "image/x-icon",
                                                                "image/vnd.microsoft.icon"}, asset
    query = await browser.fetch("GET", f"{gateway.origin}/prom/api/v1/query?query=up")
    assert query.status_code == 200 and query.json()["status"] == "success"
    assert query.json()["data"]["resultType"] == "vector"
    tool = await browser.navigate(f"{gateway.origin}/")
    assert tool.status_code == 200 and "Signed in as <b>user_alice</b>" in tool.text  # the sample tool at /


PROGRAMS = {
    "api": ("/prom/api/v1/query?query=up", FETCH),
    "api-plain": ("/prom/api/v1/query?query=up", {"accept": "*/*"}),
    "script": ("/prom/classic/static/js/graph/index.js", {"sec-fetch-dest": "script", "accept": "*/*"}),
    "style": ("/prom/classic/static/css/prometheus.css", {"sec-fetch-dest": "style", "accept": "text/css,*/*"}),
}


@pytest.mark.parametrize(("path", "headers"), PROGRAMS.values(), ids=PROGRAMS.keys())
async def test_prometheus_gives_a_program_without_a_session_401(
    tools_and_prometheus: RunningGateway, new_browser: Callable[..., Browser], path: str, headers: dict[str, str]
) -> None:
    browser = new_browser(tools_and_prometheus)
    answer = await browser.request("GET", f"{tools_and_prometheus.origin}{path}", headers=headers, follow=False)
    assert answer.status_code == 401
    assert answer.headers["x-clerk-auth-status"] == "signed-out"
    assert "Prometheus" not in answer.text


@pytest.mark.parametrize("path", ["/prom/graph", "/prom/classic/graph", "/prom/"])
async def test_prometheus_sends_a_navigation_without_a_session_to_sign_in(
    tools_and_prometheus: RunningGateway, dev_clerk: EmulatorServer, new_browser: Callable[..., Browser], path: str
) -> None:
    browser = new_browser(tools_and_prometheus)
    landed = await browser.navigate(f"{tools_and_prometheus.origin}{path}")
    assert str(landed.request.url).startswith(dev_clerk.sign_in_url)
    assert landed.status_code == 200 and "<form" in landed.text
    assert all("Prometheus" not in hop.text for hop in browser.history)


async def test_a_prefix_is_matched_at_a_segment_boundary_not_as_text(
    tools_and_prometheus: RunningGateway, new_browser: Callable[..., Browser]
) -> None:
    browser = new_browser(tools_and_prometheus)
    await sign_in(browser, tools_and_prometheus, ALICE, path="/")
    beside = await browser.fetch("GET", f"{tools_and_prometheus.origin}/prometheus-like")
    assert beside.status_code == 404 and "Prometheus" not in beside.text  # the sample tool's 404, not /prom's


async def test_django_follows_the_org_role_on_every_request_not_only_at_login(django_site: tuple[str, Path]) -> None:
    """A demoted admin loses the admin while Django's own session goes on (the middleware syncs staff)."""
    url, data = django_site
    alice = {"Remote-User": "alice@example.com"}
    async with httpx.AsyncClient(base_url=url) as client:  # keeps Django's session cookie
        admin = await client.get("/admin/", headers={**alice, "Remote-Groups": "acme,org:admin"})
        assert admin.status_code == 200 and client.cookies.get("sessionid")
        demoted = await client.get("/admin/", headers={**alice, "Remote-Groups": "acme,org:member"})
        assert demoted.status_code == 302 and demoted.headers["location"] == "/admin/login/?next=/admin/"
    assert django_users(data) == [
        {"username": "alice@example.com", "email": "alice@example.com", "is_staff": False, "is_superuser": False},
    ]


async def test_django_reads_a_percent_encoded_e_mail_as_the_gateway_encodes_it(django_site: tuple[str, Path]) -> None:
    """The gateway percent-encodes values that are not plain ASCII (`é` as `%C3%A9`, `%` as `%25`)."""
    url, _ = django_site
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/whoami", headers={"Remote-User": "%C3%A9lise%2525@example.com"})
    assert answer.json()["username"] == "élise%25@example.com"
