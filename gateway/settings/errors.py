"""The two ways a configuration is rejected.

Why a module of its own: every other settings module raises one of these, and the commands that load
settings (`gateway check-config`, `gateway serve`) catch `SettingsError` without needing the rest.
"""

from __future__ import annotations

from collections.abc import Sequence


class InvalidValue(ValueError):
    """A parser's verdict on one setting; may hold several messages (e.g. two bad routes)."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class SettingsError(Exception):
    """The configuration cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))
