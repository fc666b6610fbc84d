"""`redirect_location`: client-chosen redirect targets are read as a browser reads them (WHATWG URL
parsing against the request's origin) before the origin check, and the parsed URL is what is sent.

The expected values were checked by hand against the WHATWG URL standard; where Node is installed
the same cases and generated ones are also put to Node's `new URL()` (a browser-grade parser).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clerk.redirects import is_allowed_redirect, is_allowed_source, redirect_location
from gateway.clerk.urls import InvalidUrl, origin_of, parse_web_url, web_origin
from tests.support.whatwg import WhatwgOracle

ORIGIN = "http://app.test:8000"
ALLOWED = ("https://partner.example",)
OURS = {ORIGIN, *ALLOWED}


@pytest.fixture(scope="module")
def oracle() -> Iterator[WhatwgOracle]:
    try:
        node = WhatwgOracle()
    except FileNotFoundError:
        pytest.skip("node is not installed")
    yield node
    node.close()


# (name, target, Location sent or None for "refused": the browser would leave our origins)
CASES = [
    ("root", "/", f"{ORIGIN}/"),
    ("path_query_fragment", "/bye?x=1#top", f"{ORIGIN}/bye?x=1#top"),
    ("path_relative", "bye", f"{ORIGIN}/bye"),
    ("query_only", "?x=1", f"{ORIGIN}/?x=1"),
    ("dot_segments", "/a/../b/./c", f"{ORIGIN}/b/c"),
    ("dot_then_double_slash_stays_a_path", "/.//evil.example/x", f"{ORIGIN}//evil.example/x"),
    ("encoded_tab_is_a_path", "/%09/evil.example/x", f"{ORIGIN}/%09/evil.example/x"),
    ("encoded_slashes_are_a_path", "/%2F%2Fevil.example", f"{ORIGIN}/%2F%2Fevil.example"),
    ("own_origin_absolute", "http://app.test:8000/back", f"{ORIGIN}/back"),
    ("own_origin_port_with_zeros", "http://app.test:08000/back", f"{ORIGIN}/back"),
    ("own_scheme_without_slashes_is_relative", "http:evil.example", f"{ORIGIN}/evil.example"),
    ("own_scheme_one_slash_is_relative", "http:/evil.example", f"{ORIGIN}/evil.example"),
    ("allowed_origin", "https://partner.example/bye", "https://partner.example/bye"),
    ("allowed_origin_upper_case", "HTTPS://PARTNER.EXAMPLE/bye", "https://partner.example/bye"),
    ("allowed_origin_default_port", "https://partner.example:443/", "https://partner.example/"),
    ("allowed_origin_encoded_host", "https://partner%2Eexample/", "https://partner.example/"),
    ("allowed_other_scheme_without_slashes", "https:partner.example/x", "https://partner.example/x"),
    ("non_ascii_path_encoded", "/caf\u00e9", f"{ORIGIN}/caf%C3%A9"),
    ("space_in_fragment_encoded", "/#a b", f"{ORIGIN}/#a%20b"),
    ("surrounding_space_and_controls", " \x00\x1f/ok \x01", f"{ORIGIN}/ok"),
    ("tab_between_slashes", "/\t/evil.example/x", None),
    ("newline_between_slashes", "/\n/evil.example/x", None),
    ("carriage_return_between_slashes", "/\r/evil.example/x", None),
    ("scheme_relative", "//evil.example/x", None),
    ("scheme_relative_many_slashes", "////evil.example", None),
    ("slash_backslash", "/\\evil.example", None),
    ("backslash_slash", "\\/evil.example", None),
    ("two_backslashes", "\\\\evil.example", None),
    ("leading_space_scheme_relative", "  //evil.example", None),
    ("leading_control_scheme_relative", "\x00//evil.example", None),
    ("other_scheme_without_slashes", "https:evil.example", None),
    ("other_scheme_backslashes", "https:\\\\evil.example", None),
    ("own_scheme_two_backslashes", "http:\\\\evil.example", None),
    ("own_scheme_slash_backslash", "http:/\\evil.example", None),
    ("upper_case_scheme", "HTTPS://EVIL.EXAMPLE/", None),
    ("userinfo_naming_us", "http://app.test:8000@evil.example/", None),
    ("userinfo_allowed_name", "https://partner.example@evil.example/", None),
    ("encoded_at_in_host", "https://partner.example%40evil.example/", None),
    ("suffix_of_allowed", "https://partner.example.evil.example/", None),
    ("allowed_host_other_scheme", "http://partner.example/", None),
    ("own_host_other_port", "http://app.test:80/", None),
    ("own_host_trailing_dot", "http://app.test.:8000/", None),
    ("ipv4_decimal", "http://2130706433/", None),
    ("ipv4_hex_parts", "http://0x7f.1/", None),
    ("ipv6", "http://[::1]:8000/", None),
    ("javascript", "javascript:alert(1)", None),
    ("javascript_upper_case_tabbed", "JavaScr\tipt:alert(1)", None),
    ("javascript_leading_space", " javascript:alert(1)", None),
    ("data", "data:text/html,<script>alert(1)</script>", None),
    ("vbscript", "vbscript:msgbox", None),
    ("ftp", "ftp://app.test:8000/", None),
    ("non_ascii_host", "https://p\u0430rtner.example/", None),
    ("fullwidth_host", "https://\uff50artner.example/", None),
]


@pytest.mark.parametrize(("target", "expected"), [pytest.param(t, e, id=n) for n, t, e in CASES])
def test_redirect_location(target: str, expected: str | None) -> None:
    assert redirect_location(target, ORIGIN, ALLOWED) == expected
    assert is_allowed_redirect(target, ORIGIN, ALLOWED) is (expected is not None)


# Refused on purpose although a browser would stay with us: non-ASCII hosts need IDNA, which we skip.
REFUSED_THOUGH_OURS = {"fullwidth_host"}


@pytest.mark.parametrize(("name", "target", "expected"), CASES, ids=[name for name, _, _ in CASES])
def test_what_we_send_is_where_a_browser_goes(
    name: str, target: str, expected: str | None, oracle: WhatwgOracle
) -> None:
    """Node's WHATWG parser, given the raw target, lands where our Location says (or off our origins)."""
    browser = oracle.parse(target, ORIGIN)
    if expected is not None:
        assert browser.get("href") == expected
    elif name in REFUSED_THOUGH_OURS:
        assert browser.get("origin") in OURS
    else:
        assert browser.get("origin") not in OURS or browser.get("protocol") not in ("http:", "https:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("http://0300.0250.0.1/", "http://192.168.0.1/", id="ipv4_octal"),
        pytest.param("http://0xc0.0xa8.1/", "http://192.168.0.1/", id="ipv4_three_parts_hex"),
        pytest.param("http://3232235521/", "http://192.168.0.1/", id="ipv4_one_number"),
        pytest.param("http://192.168.0.1./", "http://192.168.0.1/", id="ipv4_trailing_dot"),
        pytest.param("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/", id="ipv6_compressed"),
        pytest.param("http://[1:0:0:2:0:0:0:3]/", "http://[1:0:0:2::3]/", id="ipv6_longest_run"),
        pytest.param("http://[::ffff:1.2.3.4]/", "http://[::ffff:102:304]/", id="ipv6_mapped_ipv4"),
        pytest.param("http://EXAMPLE.com:80/a?b c#d", "http://example.com/a?b%20c#d", id="case_port_space"),
    ],
)
def test_hosts_are_read_as_browsers_read_them(text: str, expected: str, oracle: WhatwgOracle) -> None:
    assert parse_web_url(text) == expected
    assert oracle.parse(text)["href"] == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("http://1.2.3.4.5/", id="ipv4_five_parts"),
        pytest.param("http://256.0.0.1/", id="ipv4_part_too_big"),
        pytest.param("http://0x100000000/", id="ipv4_number_too_big"),
        pytest.param("http://1.2.3.09/", id="ipv4_bad_octal"),
        pytest.param("http://[::1/", id="ipv6_unclosed"),
        pytest.param("http://[fe80::1%25eth0]/", id="ipv6_zone"),
        pytest.param("http://host:99999/", id="port_too_big"),
        pytest.param("http://host:8o/", id="port_not_digits"),
        pytest.param("https://", id="no_host"),
        pytest.param("http://ho st/", id="space_in_host"),
    ],
)
def test_unusable_urls_are_refused(text: str, oracle: WhatwgOracle) -> None:
    with pytest.raises(InvalidUrl):
        parse_web_url(text)
    assert "error" in oracle.parse(text)  # the browser refuses them too


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        pytest.param("http://app.test:8000", True, id="own_origin"),
        pytest.param("http://app.test:8000/page?x", True, id="own_referer"),
        pytest.param("https://partner.example", True, id="allowed_origin"),
        pytest.param("null", False, id="null_origin"),
        pytest.param("", False, id="empty"),
        pytest.param("/page", False, id="relative_is_not_a_source"),
        pytest.param("https://evil.example", False, id="foreign"),
        pytest.param("http://app.test:8000.evil.example", False, id="suffix"),
    ],
)
def test_origin_and_referer_sources(source: str, allowed: bool) -> None:
    assert is_allowed_source(source, ORIGIN, ALLOWED) is allowed


# ---------------------------------------------------------------------------------------------- #
# Property: whatever we allow, the Location we send stays on an allowed origin

FRAGMENTS = [
    "/", "\\", "%09", "%2f", "%2e", "%40", "\t", "\n", "\r", "//", "evil.example", "partner.example",
    "app.test", ":8000", "@", ":", ".", "..", " ", "\x00", "\x1f", "\x7f", "http", "https", "HTTPS",
    "javascript", "?", "#", "0x7f", "[", "]", "\u00e9", "\uff0e", "https://partner.example", "http://app.test:8000",
]  # fmt: skip
targets = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10).map("".join)


@settings(max_examples=2000, deadline=None)
@given(target=targets)
def test_allowed_targets_never_leave_the_allowed_origins(target: str) -> None:
    location = redirect_location(target, ORIGIN, ALLOWED)
    if location is not None:  # our own normalizer reads what we send back on an allowed origin, unchanged
        assert origin_of(location) in OURS and web_origin(location) in OURS
        assert parse_web_url(location) == location and parse_web_url(location, "https://elsewhere.example") == location


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=targets)
def test_allowed_targets_never_leave_the_allowed_origins_for_a_browser(target: str, oracle: WhatwgOracle) -> None:
    """The same property judged by Node: for what we send, and for the raw target we were given."""
    location = redirect_location(target, ORIGIN, ALLOWED)
    if location is None:
        return
    sent = oracle.parse(location)
    assert sent.get("origin") in OURS and sent.get("href") == location
    assert oracle.parse(target, ORIGIN).get("origin") == web_origin(location)


def test_the_property_sees_the_reported_bypass() -> None:
    """The spelling reported as an open redirect: a form field `/%09/evil.example/x` is `/<TAB>/…`."""
    assert redirect_location("/\t/evil.example/x", ORIGIN, ALLOWED) is None
    assert parse_web_url("/\t/evil.example/x", ORIGIN) == "http://evil.example/x"
