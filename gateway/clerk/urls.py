"""URL helpers that behave like the WHATWG `URL` / `URLSearchParams` Clerk's SDK uses.

Clerk's URLs are compared byte for byte by the Frontend API and by tests, so serialisation follows
`application/x-www-form-urlencoded` exactly: space → `+`, everything but ASCII alphanumerics and
`*-._` percent-encoded.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_FORM_SAFE = "*-._"


_FORM_PLAIN = re.compile(r"[A-Za-z0-9*\-._]*")


@lru_cache(maxsize=4096)
def form_encode(value: str) -> str:
    """Encode one name or value as `URLSearchParams` does (tokens and reasons need nothing: kept as they are).

    Memoised: the same names, reasons and return URLs are encoded for request after request."""
    if _FORM_PLAIN.fullmatch(value):
        return value
    return quote(value, safe=_FORM_SAFE + " ").replace(" ", "+").replace("~", "%7E")


def form_decode(value: str) -> str:
    return unquote_to_bytes(value.replace("+", " ")).decode("utf-8", errors="replace")


def parse_query(query: str) -> list[tuple[str, str]]:
    """Parse a query string (without `?`) into ordered pairs, as `URLSearchParams` does."""
    pairs: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((form_decode(name), form_decode(value)))
    return pairs


def serialize_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{form_encode(name)}={form_encode(value)}" for name, value in pairs)


def first_param(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in pairs:
        if key == name:
            return value
    return None


def has_param(pairs: Iterable[tuple[str, str]], name: str) -> bool:
    return any(key == name for key, _ in pairs)


class InvalidUrl(ValueError):
    """Raised by `parse_absolute_url` for text that `new URL(text)` would reject."""


def parse_absolute_url(text: str) -> tuple[str, str, str, str, str]:
    """Split and normalise an absolute http(s)-like URL: (scheme, netloc, path, query, fragment).

    Scheme and host are lower-cased and a default port dropped, as the WHATWG parser does.
    """
    stripped = text.strip()
    try:
        parts = urlsplit(stripped)
        port = parts.port
    except ValueError as error:
        raise InvalidUrl(str(error)) from error
    if not parts.scheme or not parts.netloc or not parts.hostname:
        raise InvalidUrl(f"not an absolute URL: {text!r}")
    if any(ch in parts.netloc for ch in " <>\\^`{|}"):
        raise InvalidUrl(f"invalid host in URL: {text!r}")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host
    if port is not None and str(port) != DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        userinfo = parts.username or ""
        if parts.password is not None:
            userinfo += ":" + parts.password
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or ("/" if scheme in DEFAULT_PORTS else "")
    if scheme in DEFAULT_PORTS:
        path = _remove_dot_segments(path.replace("\\", "/"))
    return scheme, netloc, _percent_encode(path, _PATH_SAFE), _percent_encode(parts.query, _QUERY_SAFE), parts.fragment


# Characters the WHATWG URL parser leaves as they are in a path / a special URL's query (`%` too:
# existing escapes are kept verbatim); everything else is UTF-8 percent-encoded.
_PATH_SAFE = "!$%&'()*+,-./:;=@[]_|~"
_QUERY_SAFE = "!$%&()*+,-./:;=?@[\\]^_`{|}~"


def _percent_encode(text: str, safe: str) -> str:
    if text.isascii() and all(ch.isalnum() or ch in safe for ch in text):
        return text
    return quote(text, safe=safe)


def _remove_dot_segments(path: str) -> str:
    """`.` and `..` segments (also as `%2e`) resolved as the WHATWG parser does."""
    if "." not in path and "%2" not in path.lower():
        return path
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in (".", "%2e"):
            if last:
                output.append("")
            continue
        if lowered in ("..", ".%2e", "%2e.", "%2e%2e"):
            if output:
                output.pop()
            if last:
                output.append("")
            continue
        output.append(segment)
    return "/" + "/".join(output)


def normalize_url(text: str) -> str:
    scheme, netloc, path, query, fragment = parse_absolute_url(text)
    return urlunsplit((scheme, netloc, path, query, fragment))


def origin_of(text: str) -> str | None:
    """`new URL(text).origin`, or None when the text is not an absolute URL."""
    try:
        scheme, netloc, _, _, _ = parse_absolute_url(text)
    except InvalidUrl:
        return None
    return f"{scheme}://{netloc.rpartition('@')[2]}"


def hostname_of(text: str) -> str | None:
    try:
        _, netloc, _, _, _ = parse_absolute_url(text)
    except InvalidUrl:
        return None
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def edit_query(url: str, edit: Iterable[tuple[str, str | None]] = (), remove: Iterable[str] = ()) -> str:
    """Re-serialise a URL's query after removing names and setting (`name`, value) pairs.

    A set replaces the first existing occurrence in place and drops any others, else appends, like
    `URLSearchParams.set`. Re-serialisation happens even when nothing changed (as in Clerk's SDK).
    """
    scheme, netloc, path, query, fragment = parse_absolute_url(url)
    removed = set(remove)
    pairs = [(k, v) for k, v in parse_query(query) if k not in removed]
    for name, value in edit:
        if value is None:
            continue
        pairs = _set_param(pairs, name, value)
    return urlunsplit((scheme, netloc, path, serialize_query(pairs), fragment))


def append_param(url: str, name: str, value: str) -> str:
    scheme, netloc, path, query, fragment = parse_absolute_url(url)
    pairs = [*parse_query(query), (name, value)]
    return urlunsplit((scheme, netloc, path, serialize_query(pairs), fragment))


def _set_param(pairs: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    placed = False
    for key, existing in pairs:
        if key == name:
            if not placed:
                result.append((name, value))
                placed = True
            continue
        result.append((key, existing))
    if not placed:
        result.append((name, value))
    return result


# ---------------------------------------------------------------------------------------------- #
# Browser-faithful parsing of http(s) URLs that come from clients (redirect targets, `Origin`)

_C0_CONTROL_OR_SPACE = "".join(chr(code) for code in range(0x21))
_TAB_OR_NEWLINE = str.maketrans("", "", "\t\n\r")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOST_LABELS = re.compile(r"[a-z0-9_.\-]+")
_SLASHES = "/\\"
_FRAGMENT_SAFE = "!#$%&'()*+,-./:;=?@[\\]^_{|}~"


def parse_web_url(text: str, base: str | None = None) -> str:
    """The http(s) URL a browser derives from `text` (resolved against `base`), serialised.

    Follows the WHATWG URL parser for special schemes: leading/trailing C0 control or space
    stripped, TAB/LF/CR removed anywhere, `\\` read as `/`, any number of slashes after a scheme or
    before a scheme-relative host, `https:host` without slashes, percent-encoded and upper-case
    hosts, IPv4 numbers in any radix or count of parts (`0x7f.1`, `2130706433`), IPv6 literals.

    Deliberately narrower than a browser (InvalidUrl instead of a guess): only `http` and `https`,
    no userinfo (`https://good@evil`), no non-ASCII host (no IDNA), no control character left over.
    The result is an absolute URL whose authority is plain `scheme://host[:port]`, so a browser
    reading it back lands exactly where this function says.
    """
    cleaned = text.strip(_C0_CONTROL_OR_SPACE).translate(_TAB_OR_NEWLINE)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in cleaned):
        raise InvalidUrl(f"control character in URL: {text!r}")
    base_parts = _split_web_base(base) if base is not None else None
    scheme_match = _SCHEME.match(cleaned)
    rest = cleaned
    scheme: str | None = None
    if scheme_match and cleaned[scheme_match.end() : scheme_match.end() + 1] == ":":
        scheme = scheme_match.group().lower()
        rest = cleaned[scheme_match.end() + 1 :]
        if scheme not in ("http", "https"):
            raise InvalidUrl(f"not an http(s) URL: {text!r}")
    if scheme is not None and (base_parts is None or scheme != base_parts[0] or rest[:2] in _TWO_SLASHES):
        # "special authority ignore slashes": `https:evil`, `https:/\evil`, `http:////evil`
        return _with_authority(scheme, rest.lstrip(_SLASHES), text)
    if base_parts is None:
        raise InvalidUrl(f"not an absolute URL: {text!r}")
    base_scheme, base_authority = base_parts
    if rest[:2] in _TWO_SLASHES:  # scheme-relative: `//evil`, `\\evil`, `/\evil`, `\/evil`
        return _with_authority(base_scheme, rest.lstrip(_SLASHES), text)
    if not rest or rest[0] in "?#":
        rest = "/" + rest
    elif rest[0] not in _SLASHES:
        rest = "/" + rest  # path-relative against the base's path `/`
    return _serialize_web_url(base_scheme, base_authority, rest)


_TWO_SLASHES = frozenset(a + b for a in _SLASHES for b in _SLASHES)


@lru_cache(maxsize=256)
def _split_web_base(base: str) -> tuple[str, str]:
    scheme, _, authority = parse_web_url(base).partition("://")
    return scheme, authority.partition("/")[0]


def web_origin(url: str) -> str:
    """`scheme://host[:port]` of a URL returned by `parse_web_url`."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.partition('/')[0]}"


def _with_authority(scheme: str, rest: str, text: str) -> str:
    end = len(rest)
    for index, ch in enumerate(rest):
        if ch in "/\\?#":
            end = index
            break
    authority, remainder = rest[:end], rest[end:]
    if "@" in authority:
        raise InvalidUrl(f"userinfo in URL: {text!r}")
    return _serialize_web_url(scheme, _host_and_port(scheme, authority, text), remainder)


def _host_and_port(scheme: str, authority: str, text: str) -> str:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise InvalidUrl(f"unclosed IPv6 address in URL: {text!r}")
        host = _ipv6_host(authority[1:close], text)
        port_part = authority[close + 1 :]
        if port_part and not port_part.startswith(":"):
            raise InvalidUrl(f"invalid host in URL: {text!r}")
        port = port_part[1:] if port_part else None
    else:
        raw_host, colon, port_text = authority.partition(":")
        host = _domain_or_ipv4(raw_host, text)
        port = port_text if colon else None
    if port:
        if not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise InvalidUrl(f"invalid port in URL: {text!r}")
        if str(int(port)) != DEFAULT_PORTS[scheme]:
            return f"{host}:{int(port)}"
    return host


def _domain_or_ipv4(raw_host: str, text: str) -> str:
    try:
        host = unquote_to_bytes(raw_host).decode("ascii").lower()
    except UnicodeDecodeError:
        raise InvalidUrl(f"non-ASCII host in URL (not followed): {text!r}") from None
    if not host or not _HOST_LABELS.fullmatch(host):
        raise InvalidUrl(f"invalid host in URL: {text!r}")
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isdigit() or (last[:2] == "0x" and all(ch in "0123456789abcdef" for ch in last[2:])):
        return _ipv4(labels, text)
    return host


def _ipv4(parts: list[str], text: str) -> str:
    """The WHATWG IPv4 parser: 1 to 4 parts, each decimal, octal (`0…`) or hex (`0x…`)."""
    if len(parts) > 4:
        raise InvalidUrl(f"invalid IPv4 address in URL: {text!r}")
    numbers: list[int] = []
    for part in parts:
        try:
            if part[:2] == "0x":
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part[0] == "0":
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            raise InvalidUrl(f"invalid IPv4 address in URL: {text!r}") from None
    if any(number > 255 for number in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise InvalidUrl(f"invalid IPv4 address in URL: {text!r}")
    address = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        address += number * 256 ** (3 - index)
    return ".".join(str((address >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def _ipv6_host(inside: str, text: str) -> str:
    try:
        packed = ipaddress.IPv6Address(inside).packed if "%" not in inside else b""
    except ValueError:
        packed = b""
    if len(packed) != 16:
        raise InvalidUrl(f"invalid IPv6 address in URL: {text!r}")
    pieces = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    start, length = -1, 1  # the first longest run of two or more zero pieces is compressed
    index = 0
    while index < 8:
        if pieces[index] == 0:
            run = index
            while run < 8 and pieces[run] == 0:
                run += 1
            if run - index > length:
                start, length = index, run - index
            index = run
        else:
            index += 1
    if start < 0:
        return "[" + ":".join(f"{piece:x}" for piece in pieces) + "]"
    head = ":".join(f"{piece:x}" for piece in pieces[:start])
    tail = ":".join(f"{piece:x}" for piece in pieces[start + length :])
    return f"[{head}::{tail}]"


def _serialize_web_url(scheme: str, authority: str, remainder: str) -> str:
    """`remainder` is path, query and fragment as typed (may be empty); `\\` is `/` in the path."""
    before_fragment, hashmark, fragment = remainder.partition("#")
    path, question, query = before_fragment.partition("?")
    path = quote(path.replace("\\", "/") or "/", safe=_PATH_SAFE)
    query = quote(query, safe=_QUERY_SAFE)
    fragment = quote(fragment, safe=_FRAGMENT_SAFE)
    serialized = normalize_url(f"{scheme}://{authority}{path}{question}{query}{hashmark}{fragment}")
    if web_origin(serialized) != f"{scheme}://{authority}":
        raise InvalidUrl(f"URL does not read back the same: {remainder!r}")
    return serialized
