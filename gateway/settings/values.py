"""The typed values settings hold, beyond plain strings and numbers.

Why a module of its own: the edge and the policy import these types (`RouteRule`, `IdentityHeaders`,
`Secret`) without needing the parsers or the loader.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Generic, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from gateway.clerk.authorization import Reverification
from gateway.clerk.token_types import AcceptsToken

KeyT = TypeVar("KeyT")

Mode = Literal["protect", "annotate"]
PathCase = Literal["strict", "sensitive", "insensitive"]
Access = Literal["public", "signed-in", "deny"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MODES: tuple[Mode, ...] = ("protect", "annotate")
PATH_CASES: tuple[PathCase, ...] = ("strict", "sensitive", "insensitive")
ACCESS_LEVELS: tuple[Access, ...] = ("public", "signed-in", "deny")


@dataclass(frozen=True, slots=True, repr=False)
class Secret:
    """A secret string whose `repr` and `str` never show it (`sk_test_…abcd`)."""

    value: str

    @property
    def masked(self) -> str:
        return mask_secret(self.value)

    def __repr__(self) -> str:
        return f"Secret({self.masked!r})"

    def __str__(self) -> str:
        return self.masked


@dataclass(frozen=True, slots=True, repr=False)
class RedisUrl:
    """Where the shared state lives (`redis://`, `rediss://`, `unix://`); shown with its password masked."""

    url: str

    @property
    def masked(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:" if parts.username else ":"
        return urlunsplit((parts.scheme, f"{user}***@{netloc}", parts.path, parts.query, parts.fragment))

    def __repr__(self) -> str:
        return f"RedisUrl({self.masked!r})"

    def __str__(self) -> str:
        return self.masked


@dataclass(frozen=True, slots=True)
class PemKey(Generic[KeyT]):
    """A key loaded at start, with where it came from (an environment variable name or a file path)."""

    source: str
    key: KeyT = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


CheckKind = Literal["org_role", "org_permission", "require_org", "plan", "feature", "claim"]
ClaimOperator = Literal["equals", "one_of", "suffix", "exists"]
ClaimScalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Check:
    """One condition on the session, written as one key of a rule (`plan = "pro"`).

    `name`: the role, permission, plan or feature, or for `claim` the dotted claim path
    (`public_metadata.beta`) compared by `operator` with `operand` (a scalar, a tuple of scalars for
    `one_of`, a bool for `exists`)."""

    kind: CheckKind
    name: str = ""
    operator: ClaimOperator | None = None
    operand: ClaimScalar | tuple[ClaimScalar, ...] | None = None


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    condition: Condition


Condition = Check | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class RouteRule:
    """Access rule for the paths matching `path` (a glob-ish pattern such as `/admin/*`).

    The policy language is documented in the README ("Route rules"): `methods` narrows the rule to
    some methods; `access` is `public`, `signed-in` or `deny`; a signed-in rule may require an
    organization, role or permission (the original keys), and `requires` (every other condition key:
    `plan`, `feature`, `claim`, `any`, `all`, `not`) and `reverification` on top."""

    path: str
    access: Access = "signed-in"
    org_role: str | None = None
    org_permission: str | None = None
    require_org: bool = False
    api: bool = False  # answer 401 JSON instead of redirecting to sign-in
    accepts: AcceptsToken | None = None  # the tokens this route takes; None: `gateway.accepts_token`
    scopes: tuple[str, ...] = ()  # a machine token must carry every one (`gateway.edge.machine_rules`)
    methods: tuple[str, ...] = ()  # empty: every method
    requires: Condition | None = None
    reverification: Reverification | None = None
    treat_pending_as_signed_out: bool | None = None  # None: `gateway.treat_pending_as_signed_out`
    cors_preflight: bool = False  # a CORS preflight to these paths goes to the app unauthenticated
    number: int = field(default=0, compare=False)  # its place in `gateway.routes` (1-based; 0: built in)

    def applies_to(self, method: str) -> bool:
        """`method` upper-cased (apps such as Werkzeug's route `delete` as `DELETE`); a rule naming GET
        also holds for HEAD, which apps answer with their GET handler."""
        methods = self.methods
        return not methods or method in methods or (method == "HEAD" and "GET" in methods)

    @property
    def label(self) -> str:
        """How `gateway explain` and `check-config` name the rule: `route 2 (/admin/*)`."""
        return f"route {self.number} ({self.path})" if self.number else self.path


@dataclass(frozen=True, slots=True)
class IdentityHeaders:
    """Names of the headers that carry the identity to the app (ARCHITECTURE.md, "To the app")."""

    status: str = "X-Clerk-Auth-Status"
    reason: str = "X-Clerk-Auth-Reason"
    user_id: str = "X-Clerk-User-Id"
    session_id: str = "X-Clerk-Session-Id"
    org_id: str = "X-Clerk-Org-Id"
    org_role: str = "X-Clerk-Org-Role"
    org_slug: str = "X-Clerk-Org-Slug"
    org_permissions: str = "X-Clerk-Org-Permissions"
    # what a machine token says (sent only for machine tokens; user_id / org_id above carry their owner)
    token_type: str = "X-Clerk-Token-Type"
    token_id: str = "X-Clerk-Token-Id"
    machine_id: str = "X-Clerk-Machine-Id"
    scopes: str = "X-Clerk-Scopes"
    api_key_name: str = "X-Clerk-Api-Key-Name"
    api_key_claims: str = "X-Clerk-Api-Key-Claims"
    oauth_client_id: str = "X-Clerk-OAuth-Client-Id"

    def names(self) -> tuple[str, ...]:
        """Every header name, e.g. to strip client-sent spoofs before proxying."""
        return tuple(getattr(self, item.name) for item in fields(self))


def mask_secret(secret: str) -> str:
    """Keep the prefix that tells the instance type and the last 4 characters, when long enough."""
    prefix = next((p for p in ("sk_test_", "sk_live_", "test_", "live_") if secret.startswith(p)), "")
    rest = secret[len(prefix) :]
    tail = rest[-4:] if len(rest) >= 16 else ""
    return f"{prefix}…{tail}"
