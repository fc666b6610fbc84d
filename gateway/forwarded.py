"""Which client-supplied forwarding headers to believe, and what to tell the app about the client.

Anyone can send `X-Forwarded-For: 1.2.3.4`. Those headers only mean something when the immediate peer
(the socket address) is a proxy we operate, listed in `GATEWAY_TRUSTED_PROXIES` (PROTOCOL.md §2.4: "A
gateway MUST only honour `X-Forwarded-*` from trusted hops"). This module decides, from a raw ASGI
scope, who the client is (`ClientInfo`), removes the headers we do not believe before the Clerk core
sees them (`believed_headers`: the core applies Clerk's rules literally, so it must only be shown
believed values), and builds the `X-Forwarded-*` headers the app receives.

Pure functions of the scope: no I/O, cheap enough to run on every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Headers = list[tuple[bytes, bytes]]

# Client-supplied statements about the client or the public URL, dropped unless the peer is trusted.
FORWARDING_HEADER_PREFIX = b"x-forwarded-"
FORWARDING_HEADERS = frozenset({b"forwarded", b"x-real-ip", b"cf-connecting-ip", b"cloudfront-forwarded-proto"})

# What the app receives from us: replaced, never copied from the client.
UPSTREAM_FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})


def is_forwarding_twin(name: bytes) -> bool:
    """An underscore spelling of a forwarding header (`x_forwarded_host`, `x_real_ip`): servers that map
    headers to CGI-style variables (`HTTP_X_FORWARDED_HOST`) fold it into the real one, so an app could
    read a client's value in place of ours. Never believed, never forwarded, from any peer."""
    if b"_" not in name:
        return False
    dashed = name.lower().replace(b"_", b"-")
    return dashed.startswith(FORWARDING_HEADER_PREFIX) or dashed in FORWARDING_HEADERS


_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who the client is and which URL it used, as far as we can believe it.

    `client_ip` is an address string (empty when the server gives no peer, e.g. a Unix socket);
    `proto` is `http` or `https`; `host` is the public `host[:port]` (`None` without any `Host`);
    `trusted_hop` says the peer is a trusted proxy, so the forwarding headers were believed;
    `peer_ip` is the socket address (equal to `client_ip` when not `trusted_hop`);
    `forwarded_chain` is the believed part of `X-Forwarded-For`, from the client to the last proxy
    before the peer (empty when nothing was believed).
    """

    client_ip: str
    proto: str
    host: str | None
    trusted_hop: bool
    peer_ip: str = ""
    forwarded_chain: tuple[str, ...] = ()

    @property
    def origin(self) -> str | None:
        """`proto://host` as the client used it (the request origin of PROTOCOL.md §2.4)."""
        return f"{self.proto}://{self.host}" if self.host else None


_BELIEVED_KEY = "gateway.believed_headers"


class ForwardedPolicy:
    """Believe forwarding headers only from peers in `trusted_proxies` (IP networks)."""

    __slots__ = ("_is_trusted", "trusted_proxies")

    def __init__(self, trusted_proxies: Iterable[IPNetwork] = ()) -> None:
        self.trusted_proxies: tuple[IPNetwork, ...] = tuple(trusted_proxies)
        networks = self.trusted_proxies

        @lru_cache(maxsize=4096)
        def is_trusted(address: str) -> bool:
            ip = parse_ip(address)
            return ip is not None and any(ip in network for network in networks)

        self._is_trusted = is_trusted

    def is_trusted(self, address: str) -> bool:
        return bool(self.trusted_proxies) and self._is_trusted(address)

    def client_info(self, scope: dict[str, Any]) -> ClientInfo:
        """Read the scope: believe `X-Forwarded-For/-Proto/-Host` only when the peer is trusted."""
        client = scope.get("client")
        peer_ip = str(client[0]) if client else ""
        if not self.is_trusted(peer_ip):
            host = next((value for name, value in scope["headers"] if name == b"host"), None)
            return self.untrusted_client(scope, host)
        scheme = _SCHEMES.get(str(scope.get("scheme", "http")), "http")
        host_header: str | None = None
        forwarded_for: list[bytes] = []
        forwarded_proto: bytes | None = None
        forwarded_host: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                if host_header is None:
                    host_header = value.decode("latin-1")
            elif name.startswith(FORWARDING_HEADER_PREFIX):
                if name == b"x-forwarded-for":
                    forwarded_for.append(value)
                elif name == b"x-forwarded-proto" and forwarded_proto is None:
                    forwarded_proto = value
                elif name == b"x-forwarded-host" and forwarded_host is None:
                    forwarded_host = value
        if host_header is None:
            host_header = _server_host(scope)
        chain = _split(b",".join(forwarded_for))
        client_ip, believed = self._walk_chain(chain, peer_ip)
        proto = scheme
        if forwarded_proto is not None:
            first = _first_item(forwarded_proto).lower()
            proto = first if first in ("http", "https") else scheme
        host = host_header
        if forwarded_host is not None:
            first = _first_item(forwarded_host)
            host = first if _plausible_host(first) else host_header
        return ClientInfo(client_ip, proto, host, True, peer_ip, believed)

    def untrusted_client(self, scope: dict[str, Any], host_header: bytes | None) -> ClientInfo:
        """`client_info` for a peer that is not a trusted proxy, given its first `Host` value."""
        client = scope.get("client")
        peer_ip = str(client[0]) if client else ""
        scheme = _SCHEMES.get(str(scope.get("scheme", "http")), "http")
        host = host_header.decode("latin-1") if host_header is not None else _server_host(scope)
        return ClientInfo(peer_ip, scheme, host, False, peer_ip)

    def _walk_chain(self, chain: Sequence[str], peer_ip: str) -> tuple[str, tuple[str, ...]]:
        """Right to left, skip trusted proxies: the first untrusted address is the client.

        An entry that is not an IP address ends the walk: the nearest trusted hop is then the client
        (nothing left of a malformed entry can be believed). All entries trusted: the leftmost one.
        """
        client_ip = peer_ip
        for index in range(len(chain) - 1, -1, -1):
            address = _strip_port(chain[index])
            if parse_ip(address) is None:
                return client_ip, tuple(chain[index + 1 :])
            client_ip = address
            if not self._is_trusted(address):
                return client_ip, (address, *chain[index + 1 :])
        return client_ip, tuple(chain)

    def believed_headers(self, scope: dict[str, Any]) -> Headers:
        """The request headers minus the forwarding headers we do not believe (all of them if untrusted).

        Computed once per request (the gate and the proxy both need it) and kept on the scope: read it,
        do not change it.
        """
        headers: Headers = scope["headers"]
        cached = scope.get(_BELIEVED_KEY)
        if cached is not None and cached[0] is headers:
            return cached[1]  # type: ignore[no-any-return]
        client = scope.get("client")
        if client and self.is_trusted(str(client[0])):
            believed = headers
        else:
            believed = [
                (name, value)
                for name, value in headers
                if not (name.startswith(FORWARDING_HEADER_PREFIX) or name in FORWARDING_HEADERS)
            ]
        scope[_BELIEVED_KEY] = (headers, believed)
        return believed

    def frontend_api_client_ip(self, info: ClientInfo, believed: Sequence[tuple[bytes, bytes]]) -> str:
        """The client IP Clerk's Frontend API proxy sends (PROTOCOL.md §8): `cf-connecting-ip` ‖ `x-real-ip` ‖
        the client found in `X-Forwarded-For` ‖ the peer; only from believed headers.

        Deliberate difference from Clerk's proxy: the believed client of the right-to-left walk replaces
        "the first item of `X-Forwarded-For`", which a client behind a trusted proxy could choose itself.
        """
        if info.trusted_hop:
            for wanted in (b"cf-connecting-ip", b"x-real-ip"):
                for name, value in believed:
                    if name == wanted and value.strip():
                        return value.decode("latin-1").strip()
        return info.client_ip


def upstream_forwarding_headers(info: ClientInfo) -> Headers:
    """`X-Forwarded-For/-Proto/-Host` for the app.

    `X-Forwarded-For` is the believed chain (client first) followed by the peer, or the peer alone when
    the peer is not trusted: its first item is always the client as we believe it (the chain was parsed
    once, in `ForwardedPolicy.client_info`).
    """
    chain = [*info.forwarded_chain, info.peer_ip] if info.trusted_hop else [info.peer_ip]
    headers: Headers = []
    forwarded_for = ", ".join(item for item in chain if item)
    if forwarded_for:
        headers.append((b"x-forwarded-for", forwarded_for.encode("latin-1")))
    headers.append((b"x-forwarded-proto", info.proto.encode("latin-1")))
    if info.host:
        headers.append((b"x-forwarded-host", info.host.encode("latin-1")))
    return headers


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _strip_port(item: str) -> str:
    """`1.2.3.4:80` → `1.2.3.4`, `[::1]:80` → `::1`; a bare IPv6 address is left alone."""
    if item.startswith("["):
        end = item.find("]")
        return item[1:end] if end > 0 else item
    if item.count(":") == 1:
        return item.partition(":")[0]
    return item


def _split(value: bytes) -> list[str]:
    return [item for item in (part.strip() for part in value.decode("latin-1").split(",")) if item]


def _first_item(value: bytes) -> str:
    return value.decode("latin-1").split(",", 1)[0].strip()


def _plausible_host(host: str) -> bool:
    return bool(host) and not any(character in host for character in " /\\?#@\t")


def _server_host(scope: dict[str, Any]) -> str | None:
    server = scope.get("server")
    if not server or server[1] is None:
        return None
    host, port = str(server[0]), int(server[1])
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scope.get("scheme") in ("https", "wss") else 80
    return host if port == default else f"{host}:{port}"
