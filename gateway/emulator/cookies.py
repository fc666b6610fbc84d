"""Set-Cookie strings: the handshake/refresh directives for the app's domain and FAPI's own cookies.

Directives are what FAPI hands the application (PROTOCOL.md §4.3, §6.2): `__session`, `__client_uat`,
`__clerk_db_jwt` (development) and `__refresh_<suffix>`, in both the unsuffixed and the suffixed family
when the caller uses suffixed cookies. The refresh cookie is written for development instances too, so
edge refresh (PROTOCOL.md §6) can be exercised locally without a production key.
"""

from __future__ import annotations

from dataclasses import dataclass

TEN_YEARS = 315_360_000


@dataclass(frozen=True, slots=True)
class CookieSpec:
    name: str
    value: str
    max_age: int | None = None
    domain: str | None = None
    http_only: bool = False
    secure: bool = True
    same_site: str = "Lax"
    path: str = "/"

    def header(self) -> str:
        parts = [f"{self.name}={self.value}", f"Path={self.path}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.http_only:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        parts.append(f"SameSite={self.same_site}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class DirectiveInputs:
    """What the directives depend on; `session_token` None means signed out."""

    suffix: str
    suffixed: bool
    production: bool
    cookie_domain: str | None
    session_token: str | None
    client_uat: int
    refresh_token: str | None
    dev_browser: str | None


def _families(name: str, inputs: DirectiveInputs) -> list[str]:
    """Clerk writes both families when the app uses suffixed cookies, only the plain one otherwise."""
    return [name, f"{name}_{inputs.suffix}"] if inputs.suffixed else [name]


def session_directives(inputs: DirectiveInputs) -> list[str]:
    cookies: list[CookieSpec] = []
    if inputs.dev_browser:
        cookies += [
            CookieSpec(name, inputs.dev_browser, max_age=TEN_YEARS) for name in _families("__clerk_db_jwt", inputs)
        ]
    signed_in = inputs.session_token is not None
    uat = str(inputs.client_uat) if signed_in else "0"
    cookies += [
        CookieSpec(name, uat, max_age=TEN_YEARS, domain=inputs.cookie_domain)
        for name in _families("__client_uat", inputs)
    ]
    refresh_name = f"__refresh_{inputs.suffix}"
    if signed_in and inputs.refresh_token:
        cookies.append(CookieSpec(refresh_name, inputs.refresh_token, max_age=TEN_YEARS, http_only=True))
    else:
        cookies.append(CookieSpec(refresh_name, "", max_age=0, http_only=True))
    cookies += [
        CookieSpec(name, inputs.session_token or "", max_age=None if signed_in else 0)
        for name in _families("__session", inputs)
    ]
    return [cookie.header() for cookie in cookies]


def refreshed_session_cookies(token: str, suffix: str, suffixed: bool) -> list[str]:
    """Answer of BAPI refresh in cookie format: the new `__session` (PROTOCOL.md §6.2, §11 #24).

    With suffixed cookies both families are refreshed (suffixed first), so a stale unsuffixed
    `__session` cannot win the family choice of PROTOCOL.md §2.2 later; both carry the same token.
    """
    names = [f"__session_{suffix}", "__session"] if suffixed else ["__session"]
    return [CookieSpec(name, token).header() for name in names]
