"""Route rules: which paths are public, denied or need a signed-in user, with what (an organization,
a role or permission, a plan or feature, a claim, a recent reverification), and whether a refusal is
a sign-in redirect (browsers) or a 401 JSON body (API calls). The language is the README's "Route
rules"; the rules are parsed and checked in `gateway.settings.routes`.

For each reading, the first rule whose `path` and `methods` match decides; its verdict, in order:
annotate mode allows; a CORS preflight allows where `cors_preflight = true`; `public` allows;
`deny` refuses (`deny`); no signed-in user, or a pending session treated as signed out, asks to sign
in; an unmet requirement is `forbidden`; a reverification older than the rule allows is `reverify`.

Secure by default: a path no rule names needs a signed-in user. The policy judges every reading of a
path an app may route (`gateway.edge.paths`): the request passes only if each reading passes. Letter
case (`gateway.path_case`): `strict` (the default) judges each reading case-sensitively and
case-insensitively, so a rule holds whether the app routes `/Admin` as `/admin` or not; `sensitive`
and `insensitive` judge one way only, for apps known to route that way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.clerk.authorization import Reverification, has_feature, has_plan, is_reverified, org_prefixed
from gateway.clerk.claims import SessionClaims
from gateway.clerk.machine import MachineIdentity
from gateway.edge.machine_rules import judge_token
from gateway.edge.navigation import is_navigation
from gateway.settings import GatewaySettings, RouteRule
from gateway.settings.values import AllOf, AnyOf, Check, Condition, Not

Verdict = Literal["allow", "sign-in", "forbidden", "reverify", "deny"]
_MEMO_SIZE = 4096


def compile_path_pattern(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """`*` matches anything (slashes included); `/admin/*` also covers `/admin` itself."""
    body = re.escape(pattern).replace(r"\*", ".*")
    if pattern.endswith("/*"):
        body = body[: -len("/.*")] + "(?:/.*)?"
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict and the rule that reached it; `because` says why, for `gateway explain`.
    `reverification`: what to reverify (verdict `reverify`); `pending_signed_in`: a pending session
    let in by a rule with `treat_pending_as_signed_out = false` (the app sees its identity)."""

    verdict: Verdict
    rule: RouteRule
    is_api: bool
    because: str = ""
    reverification: Reverification | None = None
    pending_signed_in: bool = False
    reason: str = ""  # why, when the rule (not Clerk's decision) refuses a token: e.g. `token-type-mismatch`


class _Matcher:
    """The rules compiled one way (case-sensitive or not): the first matching rule of a path and method."""

    def __init__(self, settings: GatewaySettings, *, ignore_case: bool) -> None:
        self._rules = tuple(
            (compile_path_pattern(rule.path, ignore_case=ignore_case), rule) for rule in settings.routes
        )
        self._public = tuple(compile_path_pattern(path, ignore_case=ignore_case) for path in settings.public_paths)
        self._api = tuple(compile_path_pattern(path, ignore_case=ignore_case) for path in settings.api_paths)

    def rule_for(self, path: str, method: str, public_rule: RouteRule, default: RouteRule) -> RouteRule:
        for pattern, rule in self._rules:
            if rule.applies_to(method) and pattern.match(path):
                return rule
        if any(pattern.match(path) for pattern in self._public):
            return public_rule
        return default

    def is_api_path(self, path: str) -> bool:
        return any(pattern.match(path) for pattern in self._api)


class Policy:
    """Compiled once from the settings; `decide` runs per request, memoised per path and method class."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.annotate_only = settings.mode == "annotate"
        case = settings.path_case
        self._matchers = tuple(
            _Matcher(settings, ignore_case=ignore_case)
            for ignore_case in {"strict": (False, True), "sensitive": (False,), "insensitive": (True,)}[case]
        )
        self._default = RouteRule(path="/*")
        self._public_rule = RouteRule(path="(public_paths)", access="public")
        self._pending_as_signed_out = settings.treat_pending_as_signed_out
        self._accepts = settings.accepts_token
        named = {method for rule in settings.routes for method in rule.methods}
        self._named_methods = frozenset(named | ({"HEAD"} if "GET" in named else set()))
        self._memo: dict[tuple[str | tuple[str, ...], str], tuple[tuple[RouteRule, ...], bool]] = {}

    def rules_for(self, readings: str | tuple[str, ...], method: str = "GET") -> tuple[tuple[RouteRule, ...], bool]:
        """(the distinct rules that apply to the path's readings, first reading's first; any an API path).

        `method` as the request sent it; rules compare it upper-cased. Methods no rule names share one
        memo entry, so varied method names cannot grow the memo."""
        method = method.upper()
        memo_key = (readings, method if method in self._named_methods else "")
        cached = self._memo.get(memo_key)
        if cached is not None:
            return cached
        rules: list[RouteRule] = []
        api_path = False
        for path in (readings,) if isinstance(readings, str) else readings:
            for matcher in self._matchers:
                rule = matcher.rule_for(path, method, self._public_rule, self._default)
                if rule not in rules:
                    rules.append(rule)
                api_path = api_path or matcher.is_api_path(path)
        result = (tuple(rules), api_path)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[memo_key] = result
        return result

    def rule_for(self, path: str, method: str = "GET") -> RouteRule:
        """The rule that decides `path` (first matching rule, else public paths, else signed-in)."""
        return self.rules_for(path, method)[0][0]

    def decide(
        self,
        readings: str | tuple[str, ...],
        headers: Mapping[str, str],
        claims: SessionClaims | None,
        method: str = "GET",
        machine: MachineIdentity | None = None,
    ) -> Decision:
        """The verdict on a path (or all its readings): the first rule that does not allow decides.

        Reads the request's live method and headers (navigation, CORS preflight) every time: a
        remembered session (`Admission._remembered`) is judged afresh for each request."""
        rules, api_path = self.rules_for(readings, method)
        preflight = is_cors_preflight(method, headers)
        first = None
        for rule in rules:
            decision = self._decide_rule(rule, api_path, headers, claims, preflight, machine)
            if decision.verdict != "allow":
                return decision
            first = first or decision
        assert first is not None
        return first

    def _decide_rule(
        self,
        rule: RouteRule,
        api_path: bool,
        headers: Mapping[str, str],
        claims: SessionClaims | None,
        preflight: bool,
        machine: MachineIdentity | None = None,
    ) -> Decision:
        is_api = rule.api or api_path or not is_navigation(headers)
        if self.annotate_only:
            return Decision("allow", rule, is_api, "annotate mode lets every request through")
        if preflight and rule.cors_preflight:
            return Decision("allow", rule, is_api, "a CORS preflight (cors_preflight = true)")
        if rule.access == "public":
            return Decision("allow", rule, is_api, "a public route")
        if rule.access == "deny":
            return Decision("deny", rule, is_api, "a deny route")
        if (token := judge_token(rule, self._accepts, claims, machine)) is not None:  # gateway.edge.machine_rules
            is_api = is_api or machine is not None
            if token.verdict == "allow" and (rule.requires is not None or rule.reverification is not None):
                # conditions and reverification read a session's claims, which a machine token has none of
                lacks = "machine-token-lacks-session-claims"
                return Decision("forbidden", rule, True, "a machine token has no session claims", reason=lacks)
            because = token.reason or "the token kind and scopes"
            return Decision(token.verdict, rule, is_api, because, reason=token.reason)
        if claims is None or claims.user_id is None:
            return Decision("sign-in", rule, is_api, "not signed in")
        pending = claims.is_pending
        as_signed_out = rule.treat_pending_as_signed_out
        if pending and (self._pending_as_signed_out if as_signed_out is None else as_signed_out):
            return Decision("sign-in", rule, is_api, "the session is pending (treat_pending_as_signed_out)")
        unmet = unmet_requirement(rule, claims)
        if unmet is not None:
            return Decision("forbidden", rule, is_api, f"not met: {unmet}")
        reverification = rule.reverification
        if reverification is not None and not is_reverified(reverification, claims.factor_verification_age):
            return Decision(
                "reverify", rule, is_api, f"reverification needed: {reverification.describe()}", reverification
            )
        return Decision("allow", rule, is_api, "signed in" + (" (pending session let in)" if pending else ""),
                        pending_signed_in=pending)  # fmt: skip


def is_cors_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A browser's CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`."""
    return method.upper() == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def unmet_requirement(rule: RouteRule, claims: SessionClaims) -> str | None:
    """The first requirement of `rule` the session does not meet, as the rule writes it; None: all met."""
    if (rule.require_org or rule.org_role or rule.org_permission) and claims.org_id is None:
        key = "require_org" if rule.require_org else "org_role" if rule.org_role else "org_permission"
        return f"{key} (no active organization)"
    if rule.org_role and (not claims.org_role or org_prefixed(claims.org_role) != org_prefixed(rule.org_role)):
        return f"org_role = {rule.org_role!r}"
    if rule.org_permission and org_prefixed(rule.org_permission) not in claims.org_permissions:
        return f"org_permission = {rule.org_permission!r}"
    if rule.requires is not None:
        return unmet_condition(rule.requires, claims)
    return None


def unmet_condition(condition: Condition, claims: SessionClaims) -> str | None:
    """The part of `condition` that fails, described; None when it holds."""
    if isinstance(condition, Check):
        return None if check_holds(condition, claims) else describe_condition(condition)
    if isinstance(condition, AllOf):
        for part in condition.conditions:
            unmet = unmet_condition(part, claims)
            if unmet is not None:
                return unmet
        return None
    if isinstance(condition, AnyOf):
        if any(unmet_condition(part, claims) is None for part in condition.conditions):
            return None
        return describe_condition(condition)
    return describe_condition(condition) if unmet_condition(condition.condition, claims) is None else None


def check_holds(check: Check, claims: SessionClaims) -> bool:
    """One condition, as Clerk's `has()` answers it (roles, permissions, plans, features) or on a claim."""
    kind = check.kind
    if kind == "org_role":
        role = claims.org_role
        return claims.org_id is not None and bool(role) and org_prefixed(role or "") == org_prefixed(check.name)
    if kind == "org_permission":
        return claims.org_id is not None and org_prefixed(check.name) in claims.org_permissions
    if kind == "require_org":
        return claims.org_id is not None
    if kind == "plan":
        return has_plan(claims.payload, check.name)
    if kind == "feature":
        return has_feature(claims.payload, check.name)
    return claim_matches(claims.payload, check)


_MISSING = object()


def claim_value(payload: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (`public_metadata.beta`), or `_MISSING`."""
    value: Any = payload
    for segment in path.split("."):
        if not isinstance(value, Mapping) or segment not in value:
            return _MISSING
        value = value[segment]
    return value


def claim_matches(payload: Mapping[str, Any], check: Check) -> bool:
    """Exact comparisons (case-sensitive, `true` is not `1`); a missing claim matches only `exists = false`."""
    value = claim_value(payload, check.name)
    if check.operator == "exists":
        return (value is not _MISSING) is check.operand
    if value is _MISSING:
        return False
    if check.operator == "equals":
        return _same(value, check.operand)
    if check.operator == "one_of":
        assert isinstance(check.operand, tuple)
        return any(_same(value, option) for option in check.operand)
    return isinstance(value, str) and isinstance(check.operand, str) and value.endswith(check.operand)


def _same(value: Any, expected: Any) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value is expected
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return value == expected
    return type(value) is type(expected) and bool(value == expected)


def describe_condition(condition: Condition) -> str:
    """A condition as the rule writes it, e.g. `claim 'email' suffix '@example.com'`, `any [...]`."""
    if isinstance(condition, Check):
        if condition.kind == "require_org":
            return "require_org = true"
        if condition.kind == "claim":
            operand = list(condition.operand) if isinstance(condition.operand, tuple) else condition.operand
            return f"claim {condition.name!r} {condition.operator} {json.dumps(operand)}"
        return f"{condition.kind} = {condition.name!r}"
    if isinstance(condition, Not):
        return f"not ({describe_condition(condition.condition)})"
    parts = ", ".join(describe_condition(part) for part in condition.conditions)
    return f"{'any' if isinstance(condition, AnyOf) else 'all'} [{parts}]"

