"""Route rules about the kind of token: which kinds a route takes (`accepts`) and the scopes a machine
token must carry (`scopes`). The policy asks `judge_token` first for every rule; `route_accepts` gives
the decision the kinds of the route it runs for.

The decision already refuses a kind it was not asked to take (`token-type-mismatch`, PROTOCOL.md §10),
but a path has several readings and each may fall under another rule, and a remembered session outcome
skips the decision: so every rule checks the kind again here.

Session tokens are judged by the organization rules (`org_role`, `org_permission`, `require_org`);
`scopes` apply to machine tokens only. A machine token passes `require_org` when its subject is an
organization (an organization's API key) and never passes `org_role`/`org_permission` (it has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.clerk.claims import SessionClaims
from gateway.clerk.machine import MachineIdentity
from gateway.clerk.token_types import AcceptsToken, is_accepted
from gateway.settings import RouteRule


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    verdict: Literal["allow", "sign-in", "forbidden"]
    reason: str = ""


_WRONG_KIND = TokenVerdict("sign-in", "token-type-mismatch")


def route_accepts(rules: tuple[RouteRule, ...]) -> AcceptsToken | None:
    """The kinds the decision takes for a path: its first rule's `accepts`, else None (the setting)."""
    return rules[0].accepts if rules else None


def judge_token(
    rule: RouteRule, default: AcceptsToken, claims: SessionClaims | None, machine: MachineIdentity | None
) -> TokenVerdict | None:
    """A machine token's verdict under `rule`, a session token's when the rule does not take sessions;
    None when the session rules decide (a session the rule takes, or no identity at all)."""
    accepts = rule.accepts if rule.accepts is not None else default
    if machine is None:
        if claims is not None and not is_accepted("session_token", accepts):
            return _WRONG_KIND
        return None
    if not is_accepted(machine.token_type, accepts):
        return _WRONG_KIND
    if rule.scopes and not set(rule.scopes) <= set(machine.scopes):
        return TokenVerdict("forbidden", "missing-scopes")
    if rule.org_role or rule.org_permission or (rule.require_org and machine.org_id is None):
        return TokenVerdict("forbidden", "machine-token-lacks-organization-role")
    return TokenVerdict("allow")
