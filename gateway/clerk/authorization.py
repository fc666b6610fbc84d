"""Clerk's authorization checks (`has()`), as pure functions of verified session claims.

Mirrors `@clerk/shared`'s `createCheckAuthorization` as `@clerk/backend` 3.25.0 bundles it:
* reverification: the `fva` claim holds the minutes since the first and the second factor were
  verified (`-1`: that factor group is not enabled); a requirement is met when the age is *below*
  `afterMinutes` at its level, with Clerk's presets `strict_mfa`, `strict`, `moderate`, `lax`;
* plans and features: the `pla` and `fea` claims list `scope:name` entries whose scope says who
  holds them (`u` the user, `o` the active organization, `uo`/`ou` both); a requirement may name the
  scope (`user:pro`, `org:pro`) or not (`pro`: either holds it);
* roles and permissions: of the active organization, `org:` prefixed (`prefixWithOrg`);
* the answer Clerk's `reverificationError` gives an API call that must reverify.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ReverificationLevel = Literal["first_factor", "second_factor", "multi_factor"]
REVERIFICATION_LEVELS: tuple[ReverificationLevel, ...] = ("first_factor", "second_factor", "multi_factor")


@dataclass(frozen=True, slots=True)
class Reverification:
    """A reverification requirement: a factor level verified less than `after_minutes` ago.

    `preset` is the preset's name when the requirement was given as one: Clerk's error answer
    repeats the requirement as it was written."""

    level: ReverificationLevel
    after_minutes: int | float
    preset: str | None = None

    def as_written(self) -> str | dict[str, Any]:
        if self.preset is not None:
            return self.preset
        return {"level": self.level, "afterMinutes": self.after_minutes}

    def describe(self) -> str:
        factor = {"first_factor": "first factor", "second_factor": "second factor", "multi_factor": "every factor"}
        minutes = f"{self.after_minutes:g} minute{'s' if self.after_minutes != 1 else ''}"
        return f"{factor[self.level]} verified in the last {minutes}"


REVERIFICATION_PRESETS: dict[str, Reverification] = {
    "strict_mfa": Reverification("multi_factor", 10, "strict_mfa"),
    "strict": Reverification("second_factor", 10, "strict"),
    "moderate": Reverification("second_factor", 60, "moderate"),
    "lax": Reverification("second_factor", 1440, "lax"),
}


def is_reverified(requirement: Reverification, factor_verification_age: tuple[int, int] | None) -> bool:
    """Clerk's `checkReverificationAuthorization`: no `fva` claim, an age that is neither -1 nor at
    least 0, or no factor enabled at all fails."""
    if factor_verification_age is None:
        return False
    first_age, second_age = factor_verification_age
    if not all(age == -1 or age >= 0 for age in factor_verification_age) or first_age == second_age == -1:
        return False
    after = requirement.after_minutes
    first_fresh = first_age != -1 and after > first_age
    second_fresh = second_age != -1 and after > second_age
    if requirement.level == "first_factor":
        return first_fresh
    if second_age == -1:  # no second factor enabled: the first one stands for it
        return first_fresh
    if requirement.level == "second_factor":
        return second_fresh  # (with the first factor disabled too: the second alone)
    return first_age != -1 and first_fresh and second_fresh


def reverification_error(requirement: Reverification) -> dict[str, Any]:
    """The body of Clerk's `reverificationError(missingConfig)` (answered with status 403)."""
    return {
        "clerk_error": {
            "type": "forbidden",
            "reason": "reverification-error",
            "metadata": {"reverification": requirement.as_written()},
        }
    }


_ORG_SCOPES = frozenset({"o", "org", "organization"})
_USER_SCOPES = frozenset({"u", "user"})


def has_billing_entry(claim: object, name: str) -> bool:
    """Clerk's `checkForFeatureOrPlan` against a `pla` or `fea` claim (`u:free,o:pro`): the entry's
    scope `o` grants it to the organization, `u` to the user, `ou`/`uo` to both. `name` may say whose
    (`org:pro`, `organization:pro`, `user:pro`, `u:pro`, `o:pro`) or not (`pro`). Anything Clerk's code
    throws on (an entry without `:`, an unknown scope in `name`) is a refusal, as there."""
    if not isinstance(claim, str) or not claim:
        return False
    organization: list[str] = []
    user: list[str] = []
    for entry in (item.strip() for item in claim.split(",")):
        scope, separator, value = entry.partition(":")
        if not separator:
            return False
        if scope in ("o", "ou", "uo"):
            organization.append(value)
        if scope in ("u", "ou", "uo"):
            user.append(value)
    pieces = name.split(":")
    if len(pieces) == 1:
        return name in organization or name in user
    scope, wanted = pieces[0], pieces[1]  # JavaScript's `const [scope, id] = name.split(":")`
    if scope in _ORG_SCOPES:
        return wanted in organization
    if scope in _USER_SCOPES:
        return wanted in user
    return False


def has_plan(claims: Mapping[str, Any], plan: str) -> bool:
    return has_billing_entry(claims.get("pla"), plan)


def has_feature(claims: Mapping[str, Any], feature: str) -> bool:
    return has_billing_entry(claims.get("fea"), feature)


def org_prefixed(name: str) -> str:
    """Clerk's `prefixWithOrg`: `admin` and `org:org:admin` are both `org:admin`."""
    return "org:" + re.sub(r"^(org:)*", "", name)
