"""Route rules: which paths are public, which need a signed-in user, an organization, a role or a
permission, and whether a refusal is a sign-in redirect (browsers) or a 401 JSON body (API calls).

Secure by default: a path no rule names needs a signed-in user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.clerk.claims import SessionClaims
from gateway.settings import GatewaySettings, RouteRule

Verdict = Literal["allow", "sign-in", "forbidden"]
_MEMO_SIZE = 4096


def compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """`*` matches anything (slashes included); `/admin/*` also covers `/admin` itself."""
    body = re.escape(pattern).replace(r"\*", ".*")
    if pattern.endswith("/*"):
        body = body[: -len("/.*")] + "(?:/.*)?"
    return re.compile(f"^{body}$")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    pattern: re.Pattern[str]
    rule: RouteRule


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    rule: RouteRule
    is_api: bool


class Policy:
    """Compiled once from the settings; `decide` runs per request with no allocation beyond the result."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.annotate_only = settings.mode == "annotate"
        self._rules = tuple(CompiledRule(compile_path_pattern(rule.path), rule) for rule in settings.routes)
        self._public = tuple(compile_path_pattern(path) for path in settings.public_paths)
        self._api = tuple(compile_path_pattern(path) for path in settings.api_paths)
        self._default = RouteRule(path="/*")
        self._public_rule = RouteRule(path="(public_paths)", access="public")
        self._memo: dict[str, tuple[RouteRule, bool]] = {}

    def rule_for(self, path: str) -> RouteRule:
        """The first matching rule (memoised per path: paths repeat, patterns are re-run otherwise)."""
        cached = self._memo.get(path)
        if cached is not None:
            return cached[0]
        rule = self._match_rule(path)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[path] = (rule, any(pattern.match(path) for pattern in self._api))
        return rule

    def _match_rule(self, path: str) -> RouteRule:
        for compiled in self._rules:
            if compiled.pattern.match(path):
                return compiled.rule
        if any(pattern.match(path) for pattern in self._public):
            return self._public_rule
        return self._default

    def is_api_request(self, path: str, rule: RouteRule, headers: Mapping[str, str]) -> bool:
        """API calls get 401 JSON; navigations get the sign-in redirect."""
        cached = self._memo.get(path)
        api_path = cached[1] if cached is not None else any(pattern.match(path) for pattern in self._api)
        if rule.api or api_path:
            return True
        if headers.get("sec-fetch-dest", "") in ("document", "iframe"):
            return False
        return "text/html" not in headers.get("accept", "")

    def decide(self, path: str, headers: Mapping[str, str], claims: SessionClaims | None) -> Decision:
        rule = self.rule_for(path)
        is_api = self.is_api_request(path, rule, headers)
        if self.annotate_only or rule.access == "public":
            return Decision("allow", rule, is_api)
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
