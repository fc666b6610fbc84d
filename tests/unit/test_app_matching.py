"""Which app a request is for, and the path it receives: by host first, then the longest prefix at a
segment boundary of the canonical path; what the gateway matched is what the app gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.edge.app_choice import AppChooser, normalized_host
from gateway.edge.paths import AmbiguousPath, canonical_path
from gateway.settings.apps import AppSettings

APPS = (
    AppSettings(name="prom", upstream="http://p", path_prefix="/prom", strip_prefix=True),
    AppSettings(name="prom-api", upstream="http://pa", path_prefix="/prom/api"),
    AppSettings(name="tools", upstream="http://t", hosts=("tools.example.com:8080",)),
    AppSettings(name="tools-prom", upstream="http://tp", hosts=("tools.example.com:8080",), path_prefix="/prom"),
    AppSettings(name="wild", upstream="http://w", hosts=("*.example.com",)),
    AppSettings(name="deep-wild", upstream="http://dw", hosts=("*.eu.example.com",)),
    AppSettings(name="default", upstream="http://d", implicit=True),
)
CHOOSER = AppChooser([(app, app.name) for app in APPS])


def chosen(host: str, raw_path: str, scheme: str = "http") -> tuple[str, str] | None:
    choice = CHOOSER.choose(host, scheme, canonical_path(raw_path.encode()))
    return None if choice is None else (choice.app, choice.path.forwarded.decode())


@pytest.mark.parametrize(
    ("case", "host", "path", "expected"),
    [
        ("the prefix itself, stripped to /", "gw.localhost", "/prom", ("prom", "/")),
        ("under the prefix, stripped", "gw.localhost", "/prom/api/v1/query", ("prom-api", "/prom/api/v1/query")),
        ("the longest prefix wins", "gw.localhost", "/prom/api", ("prom-api", "/prom/api")),
        ("a sibling of the longer prefix", "gw.localhost", "/prom/apis", ("prom", "/apis")),
        ("a longer segment is another path", "gw.localhost", "/prometheus", ("default", "/prometheus")),
        ("letter case counts", "gw.localhost", "/PROM/graph", ("default", "/PROM/graph")),
        ("an escaped letter is the letter", "gw.localhost", "/pro%6D/graph", ("prom", "/graph")),
        ("dot segments are resolved first", "gw.localhost", "/prom/../admin", ("default", "/admin")),
        ("an escaped dot segment too", "gw.localhost", "/prom/%2e%2e/admin", ("default", "/admin")),
        ("a dot segment that stays inside", "gw.localhost", "/prom/x/../graph", ("prom", "/graph")),
        ("parameters make another segment", "gw.localhost", "/prom;x/graph", ("default", "/prom;x/graph")),
        ("a query never reaches the path", "gw.localhost", "/prom", ("prom", "/")),
        ("an exact host", "tools.example.com:8080", "/x", ("tools", "/x")),
        ("an exact host and its prefix", "tools.example.com:8080", "/prom/x", ("tools-prom", "/prom/x")),
        ("host first: the host's app though another has the prefix", "tools.example.com:8080", "/prom/api",
         ("tools-prom", "/prom/api")),
        ("a host is matched in any case and without its trailing dot", "TOOLS.example.com.:8080", "/x",
         ("tools", "/x")),
        ("another port is another host", "tools.example.com:8081", "/x", ("default", "/x")),
        ("a port is its number, leading zeros or not", "tools.example.com:08080", "/x", ("tools", "/x")),
        ("the default port with a leading zero is no port", "a.example.com:080", "/x", ("wild", "/x")),
        ("no port is another host", "tools.example.com", "/x", ("wild", "/x")),
        ("the scheme's default port is no port", "a.example.com:80", "/x", ("wild", "/x")),
        ("the default port of another scheme is a port", "a.example.com:443", "/x", ("default", "/x")),
        ("a wildcard needs a sub-domain", "example.com", "/x", ("default", "/x")),
        ("the longest wildcard wins", "a.eu.example.com", "/x", ("deep-wild", "/x")),
        ("a suffix that is no label boundary is no match", "badexample.com", "/x", ("default", "/x")),
    ],
)
def test_the_app_and_the_path_it_receives(case: str, host: str, path: str, expected: tuple[str, str]) -> None:
    assert chosen(host, path) == expected, case


def test_the_default_port_of_https() -> None:
    assert chosen("a.example.com:443", "/x", scheme="https") == ("wild", "/x")


@pytest.mark.parametrize("path", ["/prom%2F..", "/prom%2f../admin", "/prom%5Cadmin", "prom/x"])
def test_paths_apps_read_differently_are_refused_before_any_app_is_chosen(path: str) -> None:
    with pytest.raises(AmbiguousPath):
        canonical_path(path.encode())


def test_no_app_takes_a_request_when_none_matches() -> None:
    only = AppChooser([(AppSettings(name="p", upstream="http://p", path_prefix="/p"), "p")])
    assert only.choose("gw", "http", canonical_path(b"/q")) is None
    assert only.choose("gw", "http", canonical_path(b"/p/q")) is not None


def test_a_stripped_path_keeps_the_readings_the_app_may_route() -> None:
    choice = CHOOSER.choose("gw", "http", canonical_path(b"/prom/a;x/b"))
    assert choice is not None and choice.path.readings[0] == "/a;x/b" and "/a/b" in choice.path.readings


@pytest.mark.parametrize(("host", "expected"), [("A.B.", "a.b"), ("a.b:80", "a.b"), ("[::1]:80", "[::1]"),
                                                ("[::1]", "[::1]"), ("a.b:8080", "a.b:8080")])  # fmt: skip
def test_hosts_are_compared_normalized(host: str, expected: str) -> None:
    assert normalized_host(host, "http") == expected


SEGMENTS = st.sampled_from(
    ["prom", "PROM", "prometheus", "api", "apis", "..", ".", "%2e%2e", "%2E", "pro%6D", "a;b", "", "x", "%41", "~"]
)
HOSTS = st.sampled_from(
    ["gw.localhost", "tools.example.com:8080", "TOOLS.EXAMPLE.COM.:8080", "tools.example.com:8081",
     "a.example.com", "a.eu.example.com", "example.com", "a.example.com:80"]
)  # fmt: skip


def _oracle(host: str, judged: str) -> str:
    """Written again from the rule: the apps of the host's best kind, then the longest prefix of the path."""
    name, _, port = host.lower().rpartition(":") if ":" in host else (host.lower(), "", "")
    name = name.rstrip(".")
    port = "" if port == "80" else port
    full = f"{name}:{port}" if port else name

    def host_rank(app: AppSettings) -> int:
        if not app.hosts:
            return 1
        ranks = [0]
        for pattern in app.hosts:
            if pattern == full:
                ranks.append(1000)
            elif pattern.startswith("*.") and ":" not in pattern and not port and name.endswith(pattern[1:]):
                ranks.append(2 + len(pattern))
        return max(ranks)

    def takes(app: AppSettings) -> bool:
        prefix = app.path_prefix
        return prefix == "/" or judged == prefix or judged.startswith(prefix + "/")

    candidates = [app for app in APPS if host_rank(app) and takes(app)]
    best = max(candidates, key=lambda app: (host_rank(app), len(app.path_prefix.rstrip("/"))))
    return best.name


@given(host=HOSTS, segments=st.lists(SEGMENTS, min_size=1, max_size=6))
def test_the_chosen_app_and_the_forwarded_path_agree(host: str, segments: list[str]) -> None:
    path = canonical_path(("/" + "/".join(segments)).encode())
    choice = CHOOSER.choose(host, "http", path)
    assert choice is not None
    assert choice.app == _oracle(host, path.judged)
    app = next(app for app in APPS if app.name == choice.app)
    if app.strip_prefix:
        # The app receives the rest of the path, already canonical: what it routes is what was judged.
        rest = choice.path.forwarded.decode()
        assert (app.path_prefix + rest).rstrip("/") == path.forwarded.decode().rstrip("/")
        assert canonical_path(choice.path.forwarded) == choice.path
    else:
        assert choice.path == path
    # Sent again, the path the app receives (under its prefix) comes back to the same app.
    again = path.forwarded if not app.strip_prefix else app.path_prefix.encode() + choice.path.forwarded
    rechosen = CHOOSER.choose(host, "http", canonical_path(again.rstrip(b"/") or b"/"))
    assert rechosen is not None and rechosen.app == choice.app
