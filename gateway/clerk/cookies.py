"""Reading Clerk's cookies exactly as the SDK does, and writing the cookies the core itself sets.

PROTOCOL.md §2.1 (parsing, numbers) and §2.2 (which cookie family, suffixed or not, to trust).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_MALFORMED_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_JS_INT_PREFIX = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)")
_JS_NUMBER = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Infinity)")
_JS_WHITESPACE = " \t\n\r\v\f\u00a0\ufeff\u2028\u2029"


def parse_cookie_header(header: str) -> dict[str, str]:
    """RFC 6265-style parse: first occurrence wins, values percent-decoded when that decodes cleanly."""
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for segment in header.split(";"):
        name, separator, value = segment.partition("=")
        if not separator:
            continue
        name = name.strip(" \t")
        if not name or name in cookies:
            continue
        cookies[name] = _decode_value(value.strip(" \t"))
    return cookies


def _decode_value(value: str) -> str:
    if "%" not in value or _MALFORMED_PERCENT.search(value):
        return value
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        return value


def js_parse_int(value: str | None) -> int:
    """`Number.parseInt(value) || 0`: leading digits count, anything unparsable is 0."""
    if value is None:
        return 0
    match = _JS_INT_PREFIX.match(value.lstrip(_JS_WHITESPACE))
    if match is None:
        return 0
    text = match.group(0)
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    return sign * (int(digits, 16) if digits[:2].lower() == "0x" else int(digits))


def js_number(value: str | None) -> float:
    """`Number(value)` with NaN, absent and empty folded to 0 (the redirect counter's reading)."""
    number = js_string_to_number(value) if value is not None else 0.0
    return 0.0 if number is None else number


def js_string_to_number(value: str) -> float | None:
    """`Number(string)`: a trimmed numeric literal, 0 for blank, None for NaN."""
    text = value.strip(_JS_WHITESPACE)
    if not text:
        return 0.0
    lowered = text.lower()
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if lowered.startswith(prefix):
            try:
                return float(int(text[2:], base))
            except ValueError:
                return None
    if _JS_NUMBER.fullmatch(text) is None:
        return None
    return float(text.replace("Infinity", "inf"))


def js_number_text(number: float) -> str:
    """How JavaScript prints a number (enough for counters: integers without `.0`)."""
    if number == int(number) and abs(number) < 1e21:
        return str(int(number))
    return repr(number)


def redirect_count_cookie(count: float) -> str:
    return f"__clerk_redirect_count={js_number_text(count)}; SameSite=Lax; HttpOnly; Max-Age=2"


def set_cookie_name(directive: str) -> str:
    return directive.split("=", 1)[0].strip()


def set_cookie_value(directive: str) -> str:
    """The value of a Set-Cookie string as Clerk's SDK reads it: after the first `=`, up to `;` or `=`."""
    _, _, rest = directive.partition("=")
    return re.split(r"[;=]", rest, maxsplit=1)[0]


def signed_out_cookies(suffix: str, secure: bool) -> list[str]:
    """Clerk's cookies as a signed-out browser has them: no session, `__client_uat=0` (both families)."""
    attributes = "Path=/; SameSite=Lax" + ("; Secure" if secure else "")
    cookies = []
    for name in ("__session", f"__session_{suffix}", f"__refresh_{suffix}"):
        cookies.append(f"{name}=; Max-Age=0; {attributes}")
    for name in ("__client_uat", f"__client_uat_{suffix}"):
        cookies.append(f"{name}=0; Max-Age=315360000; {attributes}")
    return cookies
