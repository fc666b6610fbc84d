"""ForwardedPolicy: forwarding headers are believed only from trusted peers (PROTOCOL.md §2.4)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from gateway.forwarded import ClientInfo, ForwardedPolicy, upstream_forwarding_headers

PROXIES = ForwardedPolicy((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))
NOBODY = ForwardedPolicy(())


def a_scope(
    *headers: tuple[str, str], peer: str | None = "10.0.0.2", scheme: str = "http", host: str | None = "app.example"
) -> dict[str, Any]:
    raw = [(b"host", host.encode())] if host is not None else []
    raw += [(name.lower().encode(), value.encode()) for name, value in headers]
    return {
        "type": "http",
        "scheme": scheme,
        "client": (peer, 50000) if peer is not None else None,
        "server": ("127.0.0.1", 8080),
        "headers": raw,
    }


@pytest.mark.parametrize(
    ("policy", "scope", "expected"),
    [
        pytest.param(
            NOBODY,
            a_scope(("x-forwarded-for", "1.1.1.1"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "evil")),
            ClientInfo("10.0.0.2", "http", "app.example", False, "10.0.0.2"),
            id="untrusted-peer-headers-ignored",
        ),
        pytest.param(
            PROXIES,
            a_scope(
                ("x-forwarded-for", "1.1.1.1"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "pub.example")
            ),
            ClientInfo("1.1.1.1", "https", "pub.example", True, "10.0.0.2", ("1.1.1.1",)),
            id="trusted-peer-believed",
        ),
        pytest.param(
            PROXIES,
            a_scope(("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.0.0.9"), ("x-forwarded-for", "10.1.1.1")),
            ClientInfo("1.1.1.1", "http", "app.example", True, "10.0.0.2", ("1.1.1.1", "10.0.0.9", "10.1.1.1")),
            id="walk-right-to-left-skipping-trusted-hops-across-repeated-headers",
        ),
        pytest.param(
            PROXIES,
            a_scope(("x-forwarded-for", "10.0.0.7, 10.0.0.8")),
            ClientInfo("10.0.0.7", "http", "app.example", True, "10.0.0.2", ("10.0.0.7", "10.0.0.8")),
            id="all-trusted-leftmost-is-client",
        ),
        pytest.param(
            PROXIES,
            a_scope(("x-forwarded-for", "1.1.1.1, garbage, 10.0.0.8")),
            ClientInfo("10.0.0.8", "http", "app.example", True, "10.0.0.2", ("10.0.0.8",)),
            id="malformed-entry-stops-the-walk",
        ),
        pytest.param(
            PROXIES,
            a_scope(("x-forwarded-for", "1.1.1.1:4711, [2001:db8::1]:80")),
            ClientInfo("2001:db8::1", "http", "app.example", True, "10.0.0.2", ("2001:db8::1",)),
            id="ports-and-brackets-stripped",
        ),
        pytest.param(
            PROXIES,
            a_scope(("x-forwarded-proto", "HTTPS, http"), ("x-forwarded-host", " pub.example:8443 , other")),
            ClientInfo("10.0.0.2", "https", "pub.example:8443", True, "10.0.0.2", ()),
            id="first-items-trimmed",
        ),
        pytest.param(
            PROXIES,
            a_scope(("x-forwarded-proto", "gopher"), ("x-forwarded-host", "evil.example/path"), scheme="https"),
            ClientInfo("10.0.0.2", "https", "app.example", True, "10.0.0.2", ()),
            id="implausible-values-fall-back",
        ),
        pytest.param(
            PROXIES,
            a_scope(peer="fd00::5", scheme="wss"),
            ClientInfo("fd00::5", "https", "app.example", True, "fd00::5", ()),
            id="ipv6-peer-and-websocket-scheme",
        ),
        pytest.param(
            PROXIES,
            a_scope(("x-forwarded-for", "1.1.1.1"), peer=None, host=None),
            ClientInfo("", "http", "127.0.0.1:8080", False, ""),
            id="no-peer-no-host",
        ),
    ],
)
def test_client_info(policy: ForwardedPolicy, scope: dict[str, Any], expected: ClientInfo) -> None:
    assert policy.client_info(scope) == expected


SPOOFS = (
    ("x-forwarded-for", "1.1.1.1"),
    ("X-Forwarded-Port", "443"),
    ("forwarded", "for=1.1.1.1"),
    ("x-real-ip", "1.1.1.1"),
    ("cf-connecting-ip", "1.1.1.1"),
    ("cookie", "a=b"),
)


def test_untrusted_forwarding_headers_are_hidden_from_the_core() -> None:
    assert NOBODY.believed_headers(a_scope(*SPOOFS)) == [(b"host", b"app.example"), (b"cookie", b"a=b")]


def test_trusted_forwarding_headers_are_kept() -> None:
    scope = a_scope(*SPOOFS)
    assert PROXIES.believed_headers(scope) == scope["headers"]


def test_upstream_headers_for_an_untrusted_peer_name_the_peer_alone() -> None:
    info = NOBODY.client_info(a_scope(("x-forwarded-for", "1.1.1.1")))
    assert upstream_forwarding_headers(info) == [
        (b"x-forwarded-for", b"10.0.0.2"),
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", b"app.example"),
    ]


def test_upstream_headers_extend_the_believed_chain_with_the_peer() -> None:
    info = PROXIES.client_info(
        a_scope(("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.0.0.9"), ("x-forwarded-proto", "https"))
    )
    assert upstream_forwarding_headers(info)[:2] == [
        (b"x-forwarded-for", b"1.1.1.1, 10.0.0.9, 10.0.0.2"),
        (b"x-forwarded-proto", b"https"),
    ]


@pytest.mark.parametrize(
    ("policy", "headers", "expected"),
    [
        (
            PROXIES,
            (("cf-connecting-ip", "2.2.2.2"), ("x-real-ip", "3.3.3.3"), ("x-forwarded-for", "4.4.4.4")),
            "2.2.2.2",
        ),
        (PROXIES, (("x-real-ip", "3.3.3.3"), ("x-forwarded-for", "4.4.4.4")), "3.3.3.3"),
        (PROXIES, (("x-forwarded-for", "6.6.6.6, 4.4.4.4"),), "4.4.4.4"),
        (NOBODY, (("cf-connecting-ip", "2.2.2.2"), ("x-real-ip", "3.3.3.3")), "10.0.0.2"),
    ],
)
def test_frontend_api_client_ip_uses_only_believed_values(
    policy: ForwardedPolicy, headers: tuple[tuple[str, str], ...], expected: str
) -> None:
    scope = a_scope(*headers)
    assert policy.frontend_api_client_ip(policy.client_info(scope), policy.believed_headers(scope)) == expected
