"""The README's recipes for apps behind the gateway (Grafana, Django, oauth2-proxy, Prometheus) load, parse and agree
with the presets they name; the Django one is the test project's code, verbatim."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest

from gateway.clerk.keys import make_publishable_key
from gateway.settings import load_settings
from gateway.settings.identity import PRESET_HEADERS

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
DJANGO_SITE = REPO / "tests" / "apps" / "django_site"
KEYS = {
    "CLERK_PUBLISHABLE_KEY": make_publishable_key("clerk.example.com", "production"),
    "CLERK_SECRET_KEY": "sk_live_recipe_check",
}


def recipe(name: str) -> str:
    """The fenced block that follows `<!-- recipe: NAME -->` in the README."""
    found = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```[a-z]*\n(.*?)```", README, re.DOTALL)
    assert found, f"README has no recipe {name}"
    return found.group(1)


@pytest.mark.parametrize(("name", "preset", "user"), [
    ("grafana.toml", "grafana", "email"),
    ("django.toml", "remote-user", "email"),
    ("oauth2-proxy.toml", "oauth2-proxy", "user_id"),
])  # fmt: skip
def test_each_gateway_recipe_loads_with_the_preset_it_names(name: str, preset: str, user: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(recipe(name))
    settings = load_settings(path, KEYS, require_upstream=True)
    assert settings.gateway.identity.presets == (preset,)
    assert settings.gateway.identity.user == user


def test_the_prometheus_recipe_puts_it_under_its_prefix_beside_the_default_app(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.toml"
    path.write_text(recipe("prometheus.toml"))
    settings = load_settings(path, KEYS, require_upstream=True)
    (prometheus,) = settings.gateway.apps
    assert (prometheus.name, prometheus.path_prefix, prometheus.strip_prefix) == ("prometheus", "/prom", False)
    assert "--web.route-prefix=/prom" in README


def test_grafanas_auth_proxy_reads_the_headers_the_grafana_preset_sends() -> None:
    ini = configparser.ConfigParser()
    ini.read_string(recipe("grafana.ini"))
    proxy = ini["auth.proxy"]
    sent = {name: field for name, field in PRESET_HEADERS["grafana"]}
    assert proxy.getboolean("enabled") and proxy.getboolean("auto_sign_up")
    assert sent[proxy["header_name"]] == "user"
    assert proxy["header_property"] == tomllib.loads(recipe("grafana.toml"))["gateway"]["identity"]["user"]
    mapped = dict(pair.split(":") for pair in proxy["headers"].split())
    assert mapped == {"Email": "X-WEBAUTH-EMAIL", "Name": "X-WEBAUTH-NAME"}
    assert {sent[header] for header in mapped.values()} == {"email", "full_name"}
    assert proxy["whitelist"]


def test_the_django_recipe_is_the_test_projects_code_verbatim() -> None:
    settings = (DJANGO_SITE / "settings.py").read_text()
    block = settings[settings.index("# --- behind session-gateway") : settings.index("# --- end ---")]
    assert recipe("django-settings.py") == block.replace("tests.apps.django_site.", "mysite.")
    assert recipe("django-gateway_auth.py") == (DJANGO_SITE / "gateway_auth.py").read_text()
    compile(recipe("django-settings.py"), "settings.py", "exec")


def test_the_django_middleware_reads_the_header_the_remote_user_preset_sends() -> None:
    sent = {name.upper().replace("-", "_"): field for name, field in PRESET_HEADERS["remote-user"]}
    code = recipe("django-gateway_auth.py")
    assert 'header = "HTTP_REMOTE_USER"' in code and sent["REMOTE_USER"] == "user"
    assert '"HTTP_REMOTE_GROUPS"' in code and sent["REMOTE_GROUPS"] == "groups"


def test_the_oauth2_proxy_recipe_names_every_header_the_preset_sends() -> None:
    section = README[README.index("**An oauth2-proxy app.**") : README.index("<!-- recipe: oauth2-proxy.toml -->")]
    named = set(re.findall(r"`(X-[A-Za-z-]+)`", section))
    assert named == {name for name, _ in PRESET_HEADERS["oauth2-proxy"]}
