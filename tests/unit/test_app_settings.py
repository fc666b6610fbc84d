"""`[[gateway.apps]]` as check-config reads it: each problem one line naming the app (`apps[2] (prom): ...`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import cli
from gateway.clerk.keys import make_publishable_key
from gateway.settings import SettingsError, load_settings
from gateway.settings.apps import DEFAULT_APP, AppSettings

ENVIRONMENT = {
    "CLERK_PUBLISHABLE_KEY": make_publishable_key("happy-hen-42.clerk.accounts.dev"),
    "CLERK_SECRET_KEY": "sk_test_0123456789abcdefghijWXYZ",
}
TOP = '[gateway]\nupstream = "http://127.0.0.1:3000"\n'
PROM = '[[gateway.apps]]\nname = "prom"\npath_prefix = "/prom"\nupstream = "http://127.0.0.1:9090"\n'


def problems_of(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {**ENVIRONMENT, **(environ or {})}, require_upstream=True)
    return list(caught.value.problems)


def apps_of(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> tuple[AppSettings, ...]:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    return load_settings(path, {**ENVIRONMENT, **(environ or {})}, require_upstream=True).gateway.served_apps()


@pytest.mark.parametrize(
    ("name", "app", "expected"),
    [
        ("unknown key, with the closest one", 'name = "prom"\nupstrem = "http://a"\nupstream = "http://a"',
         "GATEWAY_APPS: apps[1] (prom): unknown key 'upstrem' in the app (did you mean 'upstream'?)"),
        ("missing upstream", 'name = "prom"', "GATEWAY_APPS: apps[1] (prom): upstream is missing"),
        ("missing name", 'upstream = "http://a"', "GATEWAY_APPS: apps[1]: name is missing"),
        ("a name with capitals", 'name = "Prom"\nupstream = "http://a"',
         "GATEWAY_APPS: apps[1] (Prom): name: expected a name of a-z, 0-9 and -, got 'Prom'"),
        ("an upstream that is no URL", 'name = "prom"\nupstream = "prom:9090"',
         "GATEWAY_APPS: apps[1] (prom): upstream: expected an absolute http(s) URL, got 'prom:9090'"),
        ("a prefix with a trailing slash", 'name = "p"\nupstream = "http://a"\npath_prefix = "/prom/"',
         "GATEWAY_APPS: apps[1] (p): path_prefix: expected / or a clean absolute path such as /prom (letters, "
         "digits, . _ ~ -, no trailing /, no . or .. segment), got '/prom/'"),
        ("a relative prefix", 'name = "p"\nupstream = "http://a"\npath_prefix = "prom"',
         "GATEWAY_APPS: apps[1] (p): path_prefix: expected / or a clean absolute path such as /prom (letters, "
         "digits, . _ ~ -, no trailing /, no . or .. segment), got 'prom'"),
        ("a dot segment in the prefix", 'name = "p"\nupstream = "http://a"\npath_prefix = "/a/../b"',
         "GATEWAY_APPS: apps[1] (p): path_prefix: expected / or a clean absolute path such as /prom (letters, "
         "digits, . _ ~ -, no trailing /, no . or .. segment), got '/a/../b'"),
        ("an escape in the prefix", 'name = "p"\nupstream = "http://a"\npath_prefix = "/pr%6Fm"',
         "GATEWAY_APPS: apps[1] (p): path_prefix: expected / or a clean absolute path such as /prom (letters, "
         "digits, . _ ~ -, no trailing /, no . or .. segment), got '/pr%6Fm'"),
        ("a host that is a URL", 'name = "p"\nupstream = "http://a"\nhosts = ["https://tools.example.com"]',
         "GATEWAY_APPS: apps[1] (p): hosts: expected a host such as tools.example.com or *.example.com:8080, "
         "got 'https://tools.example.com'"),
        ("a host with a path", 'name = "p"\nupstream = "http://a"\nhosts = ["tools.example.com/x"]',
         "GATEWAY_APPS: apps[1] (p): hosts: expected a host such as tools.example.com or *.example.com:8080, "
         "got 'tools.example.com/x'"),
        ("a host with a trailing dot", 'name = "p"\nupstream = "http://a"\nhosts = ["tools.example.com."]',
         "GATEWAY_APPS: apps[1] (p): hosts: expected a host without a trailing dot (it is matched either way), "
         "got 'tools.example.com.'"),
        ("strip_prefix without a prefix", 'name = "p"\nupstream = "http://a"\nstrip_prefix = true',
         "GATEWAY_APPS: apps[1] (p): strip_prefix: needs a path_prefix other than /"),
        ("a route rule's problem, with the app and the route", 'name = "p"\nupstream = "http://a"\n'
         'routes = [{path = "/admin/*", access = "everyone"}]',
         "GATEWAY_APPS: apps[1] (p): routes: route 1 (/admin/*): access: expected one of public, signed-in, deny, "
         "got 'everyone'"),
        ("a timeout of 0", 'name = "p"\nupstream = "http://a"\nread_timeout = 0',
         "GATEWAY_APPS: apps[1] (p): read_timeout: must be more than 0, got 0"),
        ("a bad identity mapping, by its key", 'name = "p"\nupstream = "http://a"\nidentity = {presets = ["basic"]}',
         "GATEWAY_APPS: apps[1] (p): identity: presets: unknown preset 'basic' (expected one of clerk, oauth2-proxy, "
         "remote-user, grafana)"),
        ("an own Clerk instance without its publishable key", 'name = "p"\nupstream = "http://a"\n'
         'clerk = {secret_key = "sk_test_other"}',
         "GATEWAY_APPS: apps[1] (p): clerk: publishable_key is missing (an app's own instance names its own keys)"),
        ("an own Clerk instance's unknown key", 'name = "p"\nupstream = "http://a"\n'
         f'clerk = {{publishable_key = "{ENVIRONMENT["CLERK_PUBLISHABLE_KEY"]}", secret_key = "sk_test_x", '
         'secrte_key = "x"}',
         "GATEWAY_APPS: apps[1] (p): clerk: unknown key 'secrte_key' in the app's clerk table (did you mean "
         "'secret_key'?)"),
        ("an own Clerk instance with no key to verify with", 'name = "p"\nupstream = "http://a"\n'
         'hosts = ["p.example.com"]\n'
         f'clerk = {{publishable_key = "{ENVIRONMENT["CLERK_PUBLISHABLE_KEY"]}"}}',
         "GATEWAY_APPS: apps[1] (p): clerk: CLERK_SECRET_KEY: Missing Clerk Secret Key. Go to "
         "https://dashboard.clerk.com and get your key for your instance. (Or set CLERK_JWT_KEY to verify tokens "
         "without the network.)"),
        ("an own Clerk instance on a shared host", 'name = "p"\nupstream = "http://a"\npath_prefix = "/p"\n'
         f'clerk = {{publishable_key = "{ENVIRONMENT["CLERK_PUBLISHABLE_KEY"]}", secret_key = "sk_test_x"}}',
         "GATEWAY_APPS: apps[1] (p): clerk: an app of its own Clerk instance needs hosts of its own; on a shared "
         "host, /__clerk would proxy [clerk]'s Frontend API to its browsers (or set GATEWAY_FRONTEND_API_PATH to "
         "empty)"),
    ],
)
def test_check_config_names_the_app_and_what_is_wrong(tmp_path: Path, name: str, app: str, expected: str) -> None:
    assert problems_of(tmp_path, f"{TOP}{PROM}[[gateway.apps]]\n{app}\n") == [expected.replace("apps[1]", "apps[2]")]


def test_two_apps_with_one_name_or_one_place_are_refused(tmp_path: Path) -> None:
    toml = (
        '[[gateway.apps]]\nname = "a"\nupstream = "http://a"\nhosts = ["x.example.com"]\n'
        '[[gateway.apps]]\nname = "a"\nupstream = "http://b"\npath_prefix = "/b"\n'
        '[[gateway.apps]]\nname = "c"\nupstream = "http://c"\nhosts = ["X.example.com", "y.example.com"]\n'
        '[[gateway.apps]]\nname = "d"\nupstream = "http://d"\npath_prefix = "/b"\n'
    )
    assert problems_of(tmp_path, toml) == [
        "GATEWAY_APPS: apps[2] (a): name: another app is already named 'a'",
        "GATEWAY_APPS: apps[3] (c): host 'x.example.com' with path_prefix '/' is already 'a''s",
        "GATEWAY_APPS: apps[4] (d): any host with path_prefix '/b' is already 'a''s",
    ]


def test_two_apps_on_one_host_spelled_with_and_without_its_default_port_are_refused(tmp_path: Path) -> None:
    """`:443` and `:80` are matched as no port (and `:0443` as `:443`): the second app could never be chosen."""
    toml = (
        '[[gateway.apps]]\nname = "a"\nupstream = "http://a"\nhosts = ["x.example.com"]\n'
        '[[gateway.apps]]\nname = "b"\nupstream = "http://b"\nhosts = ["x.example.com:443"]\n'
        '[[gateway.apps]]\nname = "c"\nupstream = "http://c"\nhosts = ["y.example.com:8080"]\n'
        '[[gateway.apps]]\nname = "d"\nupstream = "http://d"\nhosts = ["y.example.com:08080"]\n'
    )
    assert problems_of(tmp_path, toml) == [
        "GATEWAY_APPS: apps[2] (b): host 'x.example.com:443' with path_prefix '/' is already 'a''s",
        "GATEWAY_APPS: apps[4] (d): host 'y.example.com:08080' with path_prefix '/' is already 'c''s",
    ]


def test_the_top_level_upstream_cannot_shadow_an_app_of_any_host_at_the_root(tmp_path: Path) -> None:
    toml = f'{TOP}[[gateway.apps]]\nname = "all"\nupstream = "http://a"\n'
    assert problems_of(tmp_path, toml) == [
        "GATEWAY_UPSTREAM: the top-level upstream is the app 'default' (any host, path_prefix '/'), any host "
        "with path_prefix '/' is already 'all''s"
    ]


@pytest.mark.parametrize(
    ("name", "toml", "environ", "expected"),
    [
        ("an app without its own audience shares the top-level one", f"{TOP}{PROM}",
         {"GATEWAY_ASSERTION_AUDIENCE": "tools"},
         ["GATEWAY_APPS: apps[1] (prom): assertion_audience: the same as app 'default''s ('tools'); give each app "
          "its own, or an assertion one app receives is accepted by the other"]),
        ("neither app has an audience", f"{TOP}{PROM}", {},
         ["GATEWAY_APPS: apps[1] (prom): assertion_audience: none, as app 'default' has none; give each app its "
          "own, or an assertion one app receives is accepted by the other"]),
        ("two apps name the same one", f'{PROM}assertion_audience = "x"\n'
         '[[gateway.apps]]\nname = "wiki"\nhosts = ["wiki.example.com"]\nupstream = "http://b"\n'
         'assertion_audience = "x"\n', {},
         ["GATEWAY_APPS: apps[1] (prom): assertion_audience: the same as app 'wiki''s ('x'); give each app its own, "
          "or an assertion one app receives is accepted by the other",
          "GATEWAY_APPS: apps[2] (wiki): assertion_audience: the same as app 'prom''s ('x'); give each app its own, "
          "or an assertion one app receives is accepted by the other"]),
    ],
)  # fmt: skip
def test_with_an_assertion_key_each_app_needs_an_audience_of_its_own(
    tmp_path: Path, name: str, toml: str, environ: dict[str, str], expected: list[str]
) -> None:
    key = tmp_path / "assertion.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    environ = {**environ, "GATEWAY_ASSERTION_KEY": str(key)}
    assert problems_of(tmp_path, toml, environ) == expected, name
    own = f'{TOP}{PROM}assertion_audience = "prom"\n'
    assert [app.name for app in apps_of(tmp_path, own, {**environ, "GATEWAY_ASSERTION_AUDIENCE": "tools"})] == [
        "prom",
        DEFAULT_APP,
    ], "each app of its own audience is fine"


def test_every_bad_app_is_reported_at_once(tmp_path: Path) -> None:
    toml = '[[gateway.apps]]\nname = "a"\n[[gateway.apps]]\nname = "b"\nupstream = "ftp://b"\nwebsockets = "yes"\n'
    assert problems_of(tmp_path, toml) == [
        "GATEWAY_APPS: apps[1] (a): upstream is missing",
        "GATEWAY_APPS: apps[2] (b): upstream: expected an absolute http(s) URL, got 'ftp://b'",
        "GATEWAY_APPS: apps[2] (b): websockets: expected true or false (or 1/0), got 'yes'",
    ]


def test_without_apps_the_top_level_settings_are_the_one_app(tmp_path: Path) -> None:
    toml = f'{TOP}public_paths = ["/health"]\n[[gateway.routes]]\npath = "/admin/*"\naccess = "deny"\n'
    (app,) = apps_of(tmp_path, toml)
    assert (app.name, app.upstream, app.hosts, app.path_prefix, app.implicit) == (
        DEFAULT_APP, "http://127.0.0.1:3000", (), "/", True
    )
    assert app.public_paths == ("/health",) and [rule.path for rule in app.routes] == ["/admin/*"]


def test_apps_replace_the_upstream_requirement_and_the_top_level_one_comes_last(tmp_path: Path) -> None:
    (prom,) = apps_of(tmp_path, PROM)
    assert prom.name == "prom" and prom.preserve_host is None and prom.read_timeout is None
    names = [app.name for app in apps_of(tmp_path, TOP + PROM)]
    assert names == ["prom", DEFAULT_APP]


def test_apps_travel_through_the_environment_as_json(tmp_path: Path) -> None:
    apps = [{"name": "grafana", "hosts": ["grafana.localhost:8080"], "upstream": "http://127.0.0.1:3001",
             "routes": [{"path": "/admin/*", "org_role": "admin"}], "strip_prefix": False}]  # fmt: skip
    settings = load_settings(None, {**ENVIRONMENT, "GATEWAY_APPS": json.dumps(apps)}, require_upstream=True)
    (app,) = settings.gateway.served_apps()
    assert app.hosts == ("grafana.localhost:8080",) and app.routes[0].org_role == "admin"


def test_check_config_lists_the_apps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "gateway.toml"
    path.write_text(TOP + PROM + '[[gateway.apps]]\nname = "grafana"\nhosts = ["grafana.localhost"]\nupstream = "http://g"\n')
    assert cli.main(["check-config", "--config", str(path), "--serve"]) == 0
    out = capsys.readouterr().out
    assert "  apps:         prom (*/prom → http://127.0.0.1:9090), grafana (grafana.localhost → http://g), " \
        "default (* → http://127.0.0.1:3000)" in out.splitlines()
