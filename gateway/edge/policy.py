"""Route rules: which paths are public, which need a signed-in user, an organization, a role or a
permission, and whether a refusal is a sign-in redirect (browsers) or a 401 JSON body (API calls).

Secure by default: a path no rule names needs a signed-in user. The policy judges every reading of a
path an app may route (`gateway.edge.paths`): the request passes only if each reading passes. Letter
case (`gateway.path_case`): `strict` (the default) judges each reading case-sensitively and
case-insensitively, so a rule holds whether the app routes `/Admin` as `/admin` or not; `sensitive`
and `insensitive` judge one way only, for apps known to route that way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.clerk.claims import SessionClaims
from gateway.clerk.machine import MachineIdentity
from gateway.edge.machine_rules import judge_token
from gateway.edge.navigation import is_navigation
from gateway.settings import GatewaySettings, RouteRule

Verdict = Literal["allow", "sign-in", "forbidden"]
_MEMO_SIZE = 4096


def compile_path_pattern(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """`*` matches anything (slashes included); `/admin/*` also covers `/admin` itself."""
    body = re.escape(pattern).replace(r"\*", ".*")
    if pattern.endswith("/*"):
        body = body[: -len("/.*")] + "(?:/.*)?"
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    rule: RouteRule
    is_api: bool
    reason: str = ""  # why, when the rule (not Clerk's decision) refuses: e.g. `token-type-mismatch`


class _Matcher:
    """The rules compiled one way (case-sensitive or not): the first matching rule of a path."""

    def __init__(self, settings: GatewaySettings, *, ignore_case: bool) -> None:
        self._rules = tuple(
            (compile_path_pattern(rule.path, ignore_case=ignore_case), rule) for rule in settings.routes
        )
        self._public = tuple(compile_path_pattern(path, ignore_case=ignore_case) for path in settings.public_paths)
        self._api = tuple(compile_path_pattern(path, ignore_case=ignore_case) for path in settings.api_paths)

    def rule_for(self, path: str, public_rule: RouteRule, default: RouteRule) -> RouteRule:
        for pattern, rule in self._rules:
            if pattern.match(path):
                return rule
        if any(pattern.match(path) for pattern in self._public):
            return public_rule
        return default

    def is_api_path(self, path: str) -> bool:
        return any(pattern.match(path) for pattern in self._api)


class Policy:
    """Compiled once from the settings; `decide` runs per request, memoised per path (paths repeat)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.annotate_only = settings.mode == "annotate"
        case = settings.path_case
        self._matchers = tuple(
            _Matcher(settings, ignore_case=ignore_case)
            for ignore_case in {"strict": (False, True), "sensitive": (False,), "insensitive": (True,)}[case]
        )
        self._default = RouteRule(path="/*")
        self._public_rule = RouteRule(path="(public_paths)", access="public")
        self._accepts = settings.accepts_token
        self._memo: dict[str | tuple[str, ...], tuple[tuple[RouteRule, ...], bool]] = {}

    def rules_for(self, readings: str | tuple[str, ...]) -> tuple[tuple[RouteRule, ...], bool]:
        """(the distinct rules that apply to the path's readings, first reading's first; any an API path)."""
        cached = self._memo.get(readings)
        if cached is not None:
            return cached
        rules: list[RouteRule] = []
        api_path = False
        for path in (readings,) if isinstance(readings, str) else readings:
            for matcher in self._matchers:
                rule = matcher.rule_for(path, self._public_rule, self._default)
                if rule not in rules:
                    rules.append(rule)
                api_path = api_path or matcher.is_api_path(path)
        result = (tuple(rules), api_path)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[readings] = result
        return result

    def rule_for(self, path: str) -> RouteRule:
        """The rule that decides `path` (first matching rule, else public paths, else signed-in)."""
        return self.rules_for(path)[0][0]

    def decide(
        self,
        readings: str | tuple[str, ...],
        headers: Mapping[str, str],
        claims: SessionClaims | None,
        machine: MachineIdentity | None = None,
    ) -> Decision:
        """The verdict on a path (or all its readings): the first rule that does not allow decides."""
        rules, api_path = self.rules_for(readings)
        first = None
        for rule in rules:
            decision = self._decide_rule(rule, api_path, headers, claims, machine)
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
        machine: MachineIdentity | None = None,
    ) -> Decision:
        is_api = rule.api or api_path or not is_navigation(headers)
        if self.annotate_only or rule.access == "public":
            return Decision("allow", rule, is_api)
        if (token := judge_token(rule, self._accepts, claims, machine)) is not None:  # gateway.edge.machine_rules
            return Decision(token.verdict, rule, machine is not None or is_api, token.reason)
        if claims is None or claims.user_id is None or claims.is_pending:
            return Decision("sign-in", rule, is_api)
        return Decision("allow" if is_authorized(rule, claims) else "forbidden", rule, is_api)


def is_authorized(rule: RouteRule, claims: SessionClaims) -> bool:
    if (rule.require_org or rule.org_role or rule.org_permission) and claims.org_id is None:
        return False
    if rule.org_role and claims.org_role != _org_prefixed(rule.org_role):
        return False
    return not (rule.org_permission and _org_prefixed(rule.org_permission) not in claims.org_permissions)


def _org_prefixed(name: str) -> str:
    return name if name.startswith("org:") else f"org:{name}"
