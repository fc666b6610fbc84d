"""Which app a screened request is for, and the path that app routes: pure, over the apps' settings.

An app is chosen by host first (an exact `host[:port]`, then the longest `*.suffix`, then an app
without hosts), then by the longest `path_prefix` matching at a segment boundary of the canonical path
(`/prom` takes `/prom` and `/prom/x`, never `/prometheus`; letter case counts). The host is compared
lower-cased, without a trailing dot, its port as a number (`:080` is `:80`) and without the scheme's
default port, so `Tools.Example.com.` and `tools.example.com:443` (over https) are the same app, and
another port is another host.

The app's path is the canonical path's bytes with the prefix removed when `strip_prefix`, read again
as a canonical path (so its readings are the stripped path's): the policy judges exactly the path the
app receives. The prefix is a clean path (`settings.apps.parse_path_prefix`), so it reads the same on
the forwarded bytes as on the decoded path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.edge.paths import CanonicalPath, canonical_path
from gateway.settings.apps import AppSettings, matched_host

T = TypeVar("T")

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def normalized_host(host: str, scheme: str) -> str:
    """`host[:port]` as apps are matched: lower case, no trailing dot, no default port of `scheme`."""
    host = host.lower()
    name, colon, port = host.rpartition(":") if not host.endswith("]") and ":" in host else (host, "", "")
    name = name.rstrip(".") if name != "." else name
    port = str(int(port)) if port.isdigit() and port.isascii() else port  # `:080` is port 80, as servers read it
    text = f"{name}{colon}{port}"
    default = _DEFAULT_PORTS.get(scheme)
    return text[: -len(default)] if default and text.endswith(default) else text


@dataclass(frozen=True, slots=True)
class Chosen(Generic[T]):
    """The app (`app`, as given to `AppChooser`) and the path it receives."""

    app: T
    path: CanonicalPath


class _Place(Generic[T]):
    __slots__ = ("app", "exact", "prefix", "prefix_bytes", "strip", "suffixes")

    def __init__(self, settings: AppSettings, app: T) -> None:
        self.app = app
        hosts = [matched_host(host) for host in settings.hosts]
        self.exact = frozenset(host for host in hosts if not host.startswith("*."))
        self.suffixes = tuple(host[1:] for host in hosts if host.startswith("*."))  # ".example.com[:port]"
        self.prefix = "" if settings.path_prefix == "/" else settings.path_prefix
        self.prefix_bytes = self.prefix.encode("ascii")
        self.strip = settings.strip_prefix and bool(self.prefix)

    def host_rank(self, host: str) -> int:
        """0: not this app's host; 1: an app of any host; 2 + suffix length: a `*.` match; huge: exact."""
        if not self.exact and not self.suffixes:
            return 1
        if host in self.exact:
            return 1 << 20
        name, _, port = host.rpartition(":") if ":" in host and not host.endswith("]") else (host, "", "")
        best = 0
        for suffix in self.suffixes:
            suffix_name, _, suffix_port = suffix.rpartition(":") if ":" in suffix else (suffix, "", "")
            if port == suffix_port and name.endswith(suffix_name) and len(name) > len(suffix_name):
                best = max(best, 2 + len(suffix_name))
        return best

    def takes(self, forwarded: bytes) -> bool:
        prefix = self.prefix_bytes
        return not prefix or forwarded == prefix or forwarded.startswith(prefix + b"/")


class AppChooser(Generic[T]):
    """The apps in configuration order, each with what the edge built for it."""

    def __init__(self, apps: Sequence[tuple[AppSettings, T]]) -> None:
        self._places = tuple(_Place(settings, app) for settings, app in apps)
        only = self._places[0] if len(self._places) == 1 else None
        self._takes_all = only is not None and not only.exact and not only.suffixes and not only.prefix
        """A single-app configuration: its one app takes every request as it is, nothing to compare."""
        self._only = only

    def choose(self, host: str, scheme: str, path: CanonicalPath) -> Chosen[T] | None:
        """The app for a request to `host` (as screened) and `path`; None when no app takes it."""
        if self._takes_all:
            assert self._only is not None
            return Chosen(self._only.app, path)
        host = normalized_host(host, scheme)
        forwarded = path.forwarded
        best: _Place[T] | None = None
        best_rank = (0, 0)
        for place in self._places:
            host_rank = place.host_rank(host)
            if host_rank == 0 or not place.takes(forwarded):
                continue
            rank = (host_rank, len(place.prefix_bytes))
            if rank > best_rank:
                best, best_rank = place, rank
        if best is None:
            return None
        if not best.strip:
            return Chosen(best.app, path)
        return Chosen(best.app, canonical_path(forwarded[len(best.prefix_bytes) :] or b"/"))

    @property
    def apps(self) -> tuple[T, ...]:
        return tuple(place.app for place in self._places)
