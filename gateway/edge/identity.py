"""Identity for the app: the headers it reads, the claims of its signed assertion, and spoof removal.

One encoding of identity values for every entrance (proxy, forward-auth, WebSocket) and every header
(the `clerk` preset's, the other presets', custom templates): a value of printable ASCII without `%`
or an outer space travels as it is (Clerk ids, roles, permissions, most slugs and e-mails); any other
value travels percent-encoded as UTF-8 (`%` as `%25`, space as `%20`, control characters,
non-ASCII), so a header is always one valid line and the app recovers the text with one URL-decoding.
The signed assertion (`gateway.edge.assertion`) carries the values as they are (JSON).

Every header name the gateway could set (every preset's, the custom headers, the assertion), in its
dash and its underscore spelling (some servers fold both into one CGI variable), is removed from the
client's request before ours are added, whatever this app's mapping, so the app can trust them.

The writer is per app: built from an app's `IdentitySettings`, the gateway's asserter, the app's
audience and the shared lookups. Building the headers is a pure function of the decision's state and
the looked-up profiles (`headers_for`); `headers` does the (cached) lookups first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gateway.clerk.claims import SessionClaims
from gateway.clerk.decide import AuthState
from gateway.clerk.machine import MachineIdentity
from gateway.clerk_api.identity_lookups import IdentityLookups, LookupFailed, OrganizationProfile, UserProfile
from gateway.edge.assertion import (
    ASSERTION_LIFETIME,
    IdentityAsserter,
    session_assertion_claims,
)
from gateway.settings import IdentityHeaders, IdentitySettings
from gateway.settings.identity import (
    ASSERTION_HEADER,
    CLAIMS_PREFIX,
    DEFAULT_IDENTITY,
    ORGANIZATION_FIELDS,
    PUBLIC_METADATA_PREFIX,
    USER_FIELDS,
    every_mapped_header_name,
)

__all__ = [
    "ASSERTION_HEADER",
    "IdentityHeaderWriter",
    "encode_identity_value",
    "every_identity_header_name",
    "spoofable_names",
]

_MEMO_SIZE = 10_000


_DEFAULT_NAMES = IdentityHeaders()


def every_identity_header_name(
    identities: Iterable[IdentitySettings] = (), names: IdentityHeaders = _DEFAULT_NAMES
) -> tuple[str, ...]:
    """Every header the gateway can set: the `clerk` preset's (as named, and as by default), every other
    preset's, the custom headers of every mapping given, and the assertion."""
    custom = (header.name for identity in identities for header in identity.headers)
    return tuple(
        dict.fromkeys(
            (*names.names(), *_DEFAULT_NAMES.names(), *every_mapped_header_name(), *custom, ASSERTION_HEADER)
        )
    )


def spoofable_names(headers: IdentityHeaders, extra: Iterable[str] = ()) -> frozenset[bytes]:
    """Lower-case names to strip from client requests, dash and underscore spellings both."""
    names: set[bytes] = set()
    for name in (*every_identity_header_name((), headers), *extra):
        lowered = name.lower()
        names.add(lowered.encode("latin-1"))
        names.add(lowered.replace("-", "_").encode("latin-1"))
    return frozenset(names)


# ------------------------------------------------------------------------------------- identity fields


def field_value(
    name: str,
    claims: SessionClaims,
    user: UserProfile | None,
    organization: OrganizationProfile | None,
    identity: IdentitySettings,
) -> str | None:
    """One identity field's text (schema: "Identity fields"); None when it has no value.

    A user or organization field is taken from a session claim of the same name when the token carries
    one (a customized session token), else from the looked-up profile."""
    if name == "org_permissions":
        return ",".join(claims.org_permissions) or None
    if name in _TOKEN_ATTRIBUTES:
        value: str | None = getattr(claims, name)
        return value
    if name == "user":
        return field_value(identity.user, claims, user, organization, identity)
    if name == "groups":
        parts: list[str] = []
        for part in identity.groups:
            if part == "org_permissions":
                parts.extend(claims.org_permissions)
            else:
                item = getattr(claims, part)
                if item:
                    parts.append(item)
        return ",".join(parts) or None
    if name.startswith(CLAIMS_PREFIX):
        return _as_text(claims.payload.get(name.removeprefix(CLAIMS_PREFIX)))
    if name.startswith(PUBLIC_METADATA_PREFIX):
        metadata = user.public_metadata if user is not None else {}
        return _as_text(metadata.get(name.removeprefix(PUBLIC_METADATA_PREFIX)))
    from_token = claims.payload.get(name)
    if isinstance(from_token, str) and from_token:
        return from_token
    if name == "full_name":
        first = field_value("first_name", claims, user, organization, identity)
        last = field_value("last_name", claims, user, organization, identity)
        return " ".join(item for item in (first, last) if item) or None
    if name == "org_name":
        return organization.name if organization is not None else None
    value = getattr(user, name) if user is not None else None
    return value


_TOKEN_ATTRIBUTES = frozenset({"user_id", "session_id", "org_id", "org_role", "org_slug"})


def _as_text(value: object) -> str | None:
    """A claim or metadata value as header text: strings as they are, lists comma-joined, numbers and
    booleans as JSON writes them, objects as compact JSON."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(text for text in map(_as_text, value) if text) or None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------------------------------ the writer


@dataclass(slots=True)
class _Memo:
    headers: list[tuple[bytes, bytes]]
    user: UserProfile | None
    organization: OrganizationProfile | None
    valid_until: float


class IdentityHeaderWriter:
    """Turns a decision into the request headers one app receives (its mapping, the assertion)."""

    def __init__(
        self,
        names: IdentityHeaders,
        asserter: IdentityAsserter | None = None,
        *,
        identity: IdentitySettings = DEFAULT_IDENTITY,
        audience: str | None = None,
        lookups: IdentityLookups | None = None,
        also_strip: Iterable[str] = (),
    ) -> None:
        """`also_strip`: header names other apps' mappings set (their custom headers), stripped here too."""
        self._names = {
            field: getattr(names, field).lower().encode("latin-1")
            for field in (
                "status",
                "reason",
                "user_id",
                "session_id",
                "org_id",
                "org_role",
                "org_slug",
                "org_permissions",
                "token_type",
                "token_id",
                "machine_id",
                "scopes",
                "api_key_name",
                "api_key_claims",
                "oauth_client_id",
            )
        }
        self._asserter = asserter
        self._audience = audience
        self._identity = identity
        self._clerk = identity.sends_clerk_headers
        self._mapped = tuple(
            (header.name.lower().encode("latin-1"), header.template.parts) for header in identity.mapped_headers()
        )
        used = identity.fields_used()
        self._user_fields = tuple(sorted(used & set(USER_FIELDS)))
        self._needs_metadata = any(name.startswith(PUBLIC_METADATA_PREFIX) for name in used)
        self._needs_organization = bool(used & set(ORGANIZATION_FIELDS))
        self._asserted_fields = tuple(
            sorted(used & {*USER_FIELDS, *ORGANIZATION_FIELDS, "user"}) + (["groups"] if "groups" in used else [])
        )
        self._asserted_metadata = tuple(
            sorted(name[len(PUBLIC_METADATA_PREFIX) :] for name in used if name.startswith(PUBLIC_METADATA_PREFIX))
        )
        self._lookups = lookups if self.needs_lookups else None
        self.strip = spoofable_names(names, (*(header.name for header in identity.headers), *also_strip))
        self._by_token: dict[str, _Memo] = {}

    @property
    def needs_lookups(self) -> bool:
        """Whether some header of this mapping may need the Backend API (a field the token lacks)."""
        return bool(self._user_fields or self._needs_metadata or self._needs_organization)

    async def headers(self, state: AuthState, *, pending_signed_in: bool = False) -> list[tuple[bytes, bytes]]:
        """`headers_for` after the lookups the mapping needs; a cached lookup never waits on the network.
        When the Backend API fails, the app gets what the token alone gives (the gap is counted)."""
        claims = state.claims
        lookups = self._lookups
        if lookups is None or claims is None or not claims.user_id or state.machine is not None:
            return self.headers_for(state, pending_signed_in=pending_signed_in)
        user = None
        if self._needs_user(claims):
            user = await _looked_up(lookups, "user", claims.user_id)
        organization = None
        if self._needs_organization and claims.org_id and not isinstance(claims.payload.get("org_name"), str):
            organization = await _looked_up(lookups, "organization", claims.org_id)
        return self.headers_for(state, pending_signed_in=pending_signed_in, user=user, organization=organization)

    def _needs_user(self, claims: SessionClaims) -> bool:
        payload = claims.payload
        return self._needs_metadata or any(not isinstance(payload.get(name), str) for name in self._user_fields)

    def headers_for(
        self,
        state: AuthState,
        *,
        pending_signed_in: bool = False,
        user: UserProfile | None = None,
        organization: OrganizationProfile | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """The app's identity headers; a signed-in token's are built once and reused while the profiles
        are the same (and, with an assertion, for half its lifetime).
        `pending_signed_in`: a route let a pending session in, so the app gets its identity, with the
        reason `session-pending`."""
        token = state.token
        if pending_signed_in:
            return self._build(state, user, organization, pending_signed_in=True)
        if token is None or state.status != "signed-in":
            return self._build(state, user, organization)
        memo = self._by_token.get(token)
        if (
            memo is not None
            and memo.user is user
            and memo.organization is organization
            and (self._asserter is None or self._asserter.now() < memo.valid_until)
        ):
            return list(memo.headers)
        built = self._build(state, user, organization)
        valid_until = self._asserter.now() + ASSERTION_LIFETIME // 2 if self._asserter is not None else math.inf
        if len(self._by_token) >= _MEMO_SIZE:
            self._by_token.clear()
        self._by_token[token] = _Memo(built, user, organization, valid_until)
        return list(built)

    def _build(
        self,
        state: AuthState,
        user: UserProfile | None,
        organization: OrganizationProfile | None,
        *,
        pending_signed_in: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        names = self._names
        if state.machine is not None and state.is_signed_in:
            return self._build_machine(state.machine, state.token)
        claims = state.claims if state.is_signed_in else None
        let_in = claims is not None and (not claims.is_pending or pending_signed_in)
        status = "signed-in" if claims is not None and claims.user_id and let_in else "signed-out"
        result: list[tuple[bytes, bytes]] = []
        if self._clerk:
            result.append((names["status"], status.encode()))
            reason = state.reason or ("session-pending" if claims is not None and claims.is_pending else "")
            if reason:
                result.append((names["reason"], encode_identity_value(reason)))
        if claims is None or status != "signed-in":
            return result
        if self._clerk:
            result += self._present(
                ("user_id", claims.user_id),
                ("session_id", claims.session_id),
                ("org_id", claims.org_id),
                ("org_role", claims.org_role),
                ("org_slug", claims.org_slug),
                ("org_permissions", ",".join(claims.org_permissions)),
            )
        identity = self._identity
        for name, parts in self._mapped:
            rendered = "".join(
                literal + ((field_value(field, claims, user, organization, identity) or "") if field else "")
                for literal, field in parts
            ).strip()
            if rendered:  # a header that renders empty is not sent
                result.append((name, encode_identity_value(rendered)))
        if self._asserter is not None:
            assertion = self._asserter.sign(self._assertion_claims(claims, user, organization), self._audience)
            result.append((ASSERTION_HEADER.lower().encode(), assertion.encode()))
        return result

    def _assertion_claims(
        self, claims: SessionClaims, user: UserProfile | None, organization: OrganizationProfile | None
    ) -> dict[str, Any]:
        """Today's token claims, and every field the mapping uses (`groups` as a list)."""
        payload = session_assertion_claims(claims)
        identity = self._identity
        for name in self._asserted_fields:
            value = field_value(name, claims, user, organization, identity)
            if value is not None:
                payload[name] = value.split(",") if name == "groups" else value
        if self._asserted_metadata and user is not None:
            payload["public_metadata"] = {
                key: user.public_metadata[key] for key in self._asserted_metadata if key in user.public_metadata
            }
        return payload

    def _present(self, *fields: tuple[str, str | None]) -> list[tuple[bytes, bytes]]:
        """The headers of the fields that have a value (an absent identity stays absent), encoded."""
        return [(self._names[field], encode_identity_value(value)) for field, value in fields if value]

    def _build_machine(self, machine: MachineIdentity, token: str | None) -> list[tuple[bytes, bytes]]:
        """A machine token's identity: the `clerk` preset's headers (the other presets describe users)."""
        names = self._names
        result: list[tuple[bytes, bytes]] = []
        if self._clerk:
            result += [(names["status"], b"signed-in"), (names["token_type"], machine.token_type.encode())]
            result += self._present(
                ("token_id", machine.id),
                ("user_id", machine.user_id),
                ("org_id", machine.org_id),
                ("machine_id", machine.machine_id),
                ("api_key_name", machine.name),
                ("oauth_client_id", machine.client_id),
                ("scopes", ",".join(machine.scopes)),
            )
            if machine.token_type == "api_key" and machine.claims is not None:
                claims = json.dumps(machine.claims, separators=(",", ":"), ensure_ascii=False)
                result.append((names["api_key_claims"], encode_identity_value(claims)))
        if self._asserter is not None and token is not None:
            assertion = self._asserter.machine_assertion(token, machine, self._audience)
            result.append((ASSERTION_HEADER.lower().encode(), assertion.encode()))
        return result


async def _looked_up(lookups: IdentityLookups, kind: str, key: str) -> Any:
    """A cached profile at once, else the lookup; a failure is a gap (counted), never an error page."""
    cache = lookups.users if kind == "user" else lookups.organizations
    entry = cache.peek(key)
    if entry is not None:
        return entry.value
    try:
        return await cache.get(key)
    except LookupFailed as error:
        lookups.note_gap(kind, key, error)
        return None


def encode_identity_value(value: str) -> bytes:
    """See the module docstring: as it is when printable ASCII without `%`, else percent-encoded UTF-8."""
    if value.isascii() and value.isprintable() and "%" not in value and value.strip(" ") == value:
        return value.encode("ascii")
    return quote(value, safe=_SAFE_IN_IDENTITY, errors="surrogatepass").encode("ascii")  # JSON allows lone surrogates


# Printable ASCII but `%` and space: what `encode_identity_value` leaves as it is inside an encoded value.
_SAFE_IN_IDENTITY = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) != "%")
