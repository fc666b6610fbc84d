"""The canonical path: what the policy judges is what the app routes, whatever the spelling.

Table tests for the canonical form, the refusals and the other readings, then properties: for paths
generated from the fragments attackers use, (1) the app receives a path whose decoding is the judged
path, and (2) a route the policy refuses under the path an app would route is never allowed, for apps
that decode and resolve dot segments (RFC 3986, WHATWG, nginx), that drop `;parameters` (Tomcat,
Spring), that drop trailing dots and spaces (Windows servers), that merge slashes (nginx), that fold
Unicode (NFKC), or that ignore letter case.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.clerk.claims import SessionClaims
from gateway.edge.paths import AmbiguousPath, canonical_path, remove_dot_segments
from gateway.edge.policy import Policy
from gateway.settings import GatewaySettings, RouteRule


@pytest.mark.parametrize(
    ("raw", "forwarded", "judged"),
    [
        (b"/", b"/", "/"),
        (b"/plain/path.html", b"/plain/path.html", "/plain/path.html"),
        (b"/%61dmin", b"/admin", "/admin"),  # unreserved escapes are decoded
        (b"/%7Euser/%2D%5f%2E", b"/~user/-_.", "/~user/-_."),
        (b"/public/%2e%2e/secret", b"/secret", "/secret"),  # dot segments resolved after decoding
        (b"/public/.%2E/secret", b"/secret", "/secret"),
        (b"/x/./y/../z", b"/x/z", "/x/z"),
        (b"/..", b"/", "/"),
        (b"/a/..", b"/", "/"),
        (b"/a/.", b"/a/", "/a/"),
        (b"/a%20b", b"/a%20b", "/a b"),  # reserved and other escapes stay, judged decoded
        (b"/a%3fb%3Bc", b"/a%3Fb%3Bc", "/a?b;c"),
        (b"/caf%c3%a9", b"/caf%C3%A9", "/café"),
        (b"/caf\xc3\xa9", b"/caf%C3%A9", "/café"),  # raw UTF-8 is sent percent-encoded
        (b"/100%25", b"/100%25", "/100%"),
    ],
)
def test_the_canonical_form_is_what_the_app_receives_and_the_policy_judges(
    raw: bytes, forwarded: bytes, judged: str
) -> None:
    path = canonical_path(raw)
    assert (path.forwarded, path.judged, path.readings[0]) == (forwarded, judged, judged)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"*", "bad_request_target"),  # OPTIONS * / GET *
        (b"http://evil.example/admin", "bad_request_target"),
        (b"", "bad_request_target"),
        (b"/public/..%2fsecret", "ambiguous_path"),  # an encoded '/': a separator to some apps, data to others
        (b"/public%2F..%2Fsecret", "ambiguous_path"),
        (b"/public/..%5csecret", "ambiguous_path"),  # an encoded '\'
        (b"/public/..\\secret", "ambiguous_path"),  # a raw '\' (WHATWG reads '/')
        (b"/admin%00.html", "ambiguous_path"),  # NUL ends the path in C-based apps
        (b"/admin%0a", "ambiguous_path"),
        (b"/admin%7f", "ambiguous_path"),
        (b"/admin%1F", "ambiguous_path"),
        (b"/a\tb", "ambiguous_path"),
        (b"/a b", "ambiguous_path"),
        (b"/a#b", "ambiguous_path"),
        (b"/caf%c3", "ambiguous_path"),  # escapes that are not UTF-8
        (b"/%ff%fe", "ambiguous_path"),
        (b"/caf\xc3", "ambiguous_path"),
        (b"/%", "malformed_path"),
        (b"/%4", "malformed_path"),
        (b"/%zz", "malformed_path"),
        (b"/%%32%65", "malformed_path"),
    ],
)
def test_paths_that_apps_read_differently_are_refused(raw: bytes, code: str) -> None:
    with pytest.raises(AmbiguousPath) as refused:
        canonical_path(raw)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("raw", "also_read_as"),
    [
        (b"/admin;jsessionid=1", "/admin"),  # Tomcat, Spring
        (b"/public/..;/admin", "/admin"),  # ..; is a dot segment once the parameter is gone
        (b"/admin./x", "/admin/x"),  # Windows drops trailing dots and spaces
        (b"/admin%20", "/admin"),
        (b"/admin..", "/admin"),
        (b"//admin", "/admin"),  # nginx merges slashes
        (b"/a//b/..//admin", "/a/admin"),
        (b"/%EF%BD%81dmin", "/admin"),  # NFKC folds the full-width letter
        # two readings in one app: NFKC, then a Windows, Tomcat or nginx rule on what it folded to
        (b"/admin%EF%BC%8E/x", "/admin/x"),  # `．` → `.`, then the trailing dot dropped (IIS)
        (b"/admin%E2%80%A4/x", "/admin/x"),  # one-dot leader `․` → `.`
        (b"/admin%C2%A0/x", "/admin/x"),  # no-break space → space, then dropped
        (b"/admin%EF%BC%9Bx/x", "/admin/x"),  # `；` → `;`, then the parameter dropped
        (b"/admin%EF%BC%8F%EF%BC%8F/x", "/admin/x"),  # `／／` → `//`, then merged
    ],
)
def test_other_readings_an_app_may_route_are_judged_too(raw: bytes, also_read_as: str) -> None:
    assert also_read_as in canonical_path(raw).readings


def test_a_plain_path_has_one_reading_and_is_its_own_canonical_form() -> None:
    path = canonical_path(b"/app/items/42")
    assert path.forwarded == b"/app/items/42" and path.readings == ("/app/items/42",)


# ------------------------------------------------------------------------------------------------ properties

FRAGMENTS = [
    "/", "/", "/", "admin", "Admin", "ADMIN", "public", "secret", "x", ".", "..", "%2e", "%2E", "%2e%2e",
    ".%2e", "%61", "%41", "dmin", ";", ";x=1", "%3b", "%20", " ", "%2f", "%5c", "\\", "%00", "%25", "%c3%a9",
    "é", "%ef%bd%81", "~", "%7e", "-", "_", "//", "./", "../", "%", "%zz", "a",
]  # fmt: skip

paths = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10).map(lambda parts: "/" + "".join(parts))

MEMBER = SessionClaims("user_1", "sess_1", "active", "org_1", "org:member", "acme", (), None, None, None)
ROUTES = GatewaySettings(
    public_paths=("/public/*",),
    routes=(RouteRule("/admin/*", org_role="org:admin"), RouteRule("/secret", org_role="org:admin")),
)
STRICT = Policy(ROUTES)
HEADERS = {"sec-fetch-dest": "document"}


def decoding_app(forwarded: bytes) -> str:
    """An app that decodes every escape, then resolves dot segments (nginx, WHATWG, most frameworks)."""
    return remove_dot_segments(unquote_to_bytes(forwarded).decode("utf-8"))


def tomcat_app(forwarded: bytes) -> str:
    without_parameters = "/".join(segment.split(";", 1)[0] for segment in forwarded.decode("ascii").split("/"))
    return decoding_app(without_parameters.encode("ascii"))


def windows_app(forwarded: bytes) -> str:
    decoded = decoding_app(forwarded)
    return remove_dot_segments("/".join(s if s in (".", "..") else s.rstrip(". ") or s for s in decoded.split("/")))


def merging_app(forwarded: bytes) -> str:
    return remove_dot_segments(re.sub("/{2,}", "/", decoding_app(forwarded)))


def folding_app(forwarded: bytes) -> str:
    return remove_dot_segments(unicodedata.normalize("NFKC", decoding_app(forwarded)))


APPS = {
    "decoding": decoding_app,
    "tomcat": tomcat_app,
    "windows": windows_app,
    "merging": merging_app,
    "nfkc": folding_app,
    "case-insensitive": lambda forwarded: decoding_app(forwarded).lower(),
}


@settings(max_examples=600, deadline=None)
@given(paths)
def test_the_app_decodes_the_forwarded_path_to_the_judged_one(raw: str) -> None:
    try:
        path = canonical_path(raw.encode("utf-8"))
    except AmbiguousPath:
        return
    assert decoding_app(path.forwarded) == path.judged
    assert path.forwarded.isascii() and b"/./" not in path.forwarded and b"/../" not in path.forwarded


@settings(max_examples=1500, deadline=None)
@given(paths)
@example("/admin./x")
@example("/admin;x")
@example("/public/..;/admin")
@example("//admin")
@example("/ADMIN")
@example("/%ef%bd%81dmin")
@example("/admin%20/x")
@example("/admin%EF%BC%8E/x")
@example("/admin%EF%BC%9Bx/x")
def test_no_app_routes_an_allowed_request_to_a_path_the_policy_refuses(raw: str) -> None:
    try:
        path = canonical_path(raw.encode("utf-8"))
    except AmbiguousPath:
        return  # refused with 400: no app sees it
    verdict = STRICT.decide(path.readings, HEADERS, MEMBER).verdict
    if verdict != "allow":
        return
    for name, app in APPS.items():
        routed = app(path.forwarded)
        assert STRICT.decide(routed, HEADERS, MEMBER).verdict == "allow", (name, raw, routed)
