"""The one canonical path of a request: what the route policy judges and what the app receives.

An app routes the path it decodes, not the bytes on the wire: `/%61dmin` is `/admin` to it, and
`/public/%2e%2e/secret` is `/secret`. So the gateway decides on the path an app will route, and forwards
exactly that path, in one canonical spelling (RFC 3986 §6.2.2, as the WHATWG URL parser does):

* percent-escapes of unreserved characters are decoded (`%61` → `a`, `%2E` → `.`), every other escape
  is kept with upper-case hex, raw non-ASCII bytes are percent-encoded;
* dot segments are resolved after that decoding, so the app never sees one;
* what different apps read differently is refused with 400 (`AmbiguousPath`): an escape of `/`, `\\`
  or a control character (`%2F`, `%5C`, `%00`…`%1F`, `%7F`), escapes that do not decode to UTF-8, a
  malformed escape, a raw `\\`, control character or `#`, and any request target not starting with `/`
  (`*`, absolute forms).

Some apps also route a path as another one: Tomcat and Spring drop `;parameters` from each segment,
Windows servers drop trailing dots and spaces, nginx merges `//`, some normalise Unicode (NFKC). Those
spellings are forwarded as they are, and the policy judges every such reading (`CanonicalPath.readings`):
a request passes only if each reading passes, so the app cannot route it to a path the policy refused.
Letter case is the policy's concern (`gateway.path_case`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache


class AmbiguousPath(ValueError):
    """A request path that apps can read in different ways; the gateway answers 400 with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class CanonicalPath:
    """`forwarded`: the path bytes the app receives; `judged`: that path decoded (what the policy matches);
    `readings`: `judged` first, then the other paths an app may route it as (each one distinct)."""

    forwarded: bytes
    judged: str
    readings: tuple[str, ...]


# Nothing to decode, resolve or read another way: the path is its own canonical form.
_PLAIN = re.compile(rb"/[A-Za-z0-9\-_~!$&'()*+,=:@/.]*")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Escapes apps disagree on: a separator in disguise, or a control character.
_REFUSED_ESCAPES = {0x2F: "an encoded '/'", 0x5C: "an encoded '\\'"}


def canonical_path(raw_path: bytes) -> CanonicalPath:
    """The canonical form of a raw request path (no query); raises `AmbiguousPath`."""
    return _canonical(bytes(raw_path))


@lru_cache(maxsize=4096)
def _canonical(raw: bytes) -> CanonicalPath:
    if (
        _PLAIN.fullmatch(raw) is not None
        and b"/." not in raw  # no dot segment
        and b"./" not in raw  # no segment ending in a dot (Windows drops it)
        and b"//" not in raw  # nothing to merge
        and not raw.endswith(b".")
    ):
        text = raw.decode("ascii")
        return CanonicalPath(raw, text, (text,))
    if not raw.startswith(b"/"):
        raise AmbiguousPath("bad_request_target", "The request target must be a path starting with '/'.")
    encoded = _normalize_escapes(raw)
    forwarded = remove_dot_segments(encoded)
    judged = _decode(forwarded)
    return CanonicalPath(forwarded.encode("ascii"), judged, _readings(judged))


def _normalize_escapes(raw: bytes) -> str:
    """Unreserved escapes decoded, the rest upper-cased, raw non-ASCII bytes escaped; refusals raised."""
    out: list[str] = []
    index, length = 0, len(raw)
    while index < length:
        byte = raw[index]
        if byte == 0x25:  # '%'
            if index + 2 >= length:
                raise AmbiguousPath("malformed_path", "The path has a malformed percent-escape.")
            high, low = raw[index + 1], raw[index + 2]
            if high not in _HEX or low not in _HEX:
                raise AmbiguousPath("malformed_path", "The path has a malformed percent-escape.")
            value = int(raw[index + 1 : index + 3], 16)
            if value in _REFUSED_ESCAPES:
                raise AmbiguousPath("ambiguous_path", f"The path holds {_REFUSED_ESCAPES[value]}.")
            if value < 0x20 or value == 0x7F:
                raise AmbiguousPath("ambiguous_path", "The path holds an encoded control character.")
            out.append(chr(value) if value in _UNRESERVED else f"%{value:02X}")
            index += 3
            continue
        if byte <= 0x20 or byte == 0x7F:
            raise AmbiguousPath("ambiguous_path", "The path holds a space or a control character.")
        if byte in (0x5C, 0x23):  # '\' and '#'
            raise AmbiguousPath("ambiguous_path", f"The path holds a raw {chr(byte)!r}.")
        out.append(f"%{byte:02X}" if byte >= 0x80 else chr(byte))
        index += 1
    return "".join(out)


def _decode(encoded: str) -> str:
    """Every escape decoded; the bytes must be UTF-8 (else apps would each guess another text)."""
    if "%" not in encoded:
        return encoded
    data = bytearray()
    index = 0
    while index < len(encoded):
        character = encoded[index]
        if character == "%":
            data.append(int(encoded[index + 1 : index + 3], 16))
            index += 3
        else:
            data.append(ord(character))
            index += 1
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AmbiguousPath("ambiguous_path", "The path's escapes do not decode to UTF-8.") from None


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path: `.` segments dropped, `..` removes the segment before it."""
    segments = path.split("/")[1:]
    output: list[str] = []
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def _readings(judged: str) -> tuple[str, ...]:
    """`judged`, then the other paths apps route it as; each reading's dot segments resolved again.

    Every reading is read again every other way, until nothing new comes (`_MAX_READINGS` at most):
    one app may apply two of them (IIS maps `．` to `.` and then drops the trailing dot, so
    `/admin%EF%BC%8E/x` is `/admin/x` to it)."""
    readings = [judged]

    def add(candidate: str) -> None:
        resolved = remove_dot_segments(candidate)
        if resolved not in readings and len(readings) < _MAX_READINGS:
            readings.append(resolved)

    index = 0
    while index < len(readings):
        base = readings[index]
        if ";" in base:
            add(_map_segments(base, _drop_parameters))
        add(_map_segments(base, _drop_trailing_dots_and_spaces))
        if "//" in base:
            add(re.sub("/{2,}", "/", base))
        if not base.isascii():
            add(unicodedata.normalize("NFKC", base))
        index += 1
    return tuple(readings)


_MAX_READINGS = 64


def _map_segments(path: str, change: Callable[[str], str]) -> str:
    return "/".join(change(segment) for segment in path.split("/"))


def _drop_parameters(segment: str) -> str:
    return segment.split(";", 1)[0]


def _drop_trailing_dots_and_spaces(segment: str) -> str:
    if segment in (".", ".."):
        return segment
    stripped = segment.rstrip(". ")
    return stripped if stripped else segment
