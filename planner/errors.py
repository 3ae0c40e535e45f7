"""One error family. A user's mistake becomes a `PlannerError`; the CLI prints it and exits
with its `exit_code` without a traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PlannerError(Exception):
    """A problem with the user's input or request (not a bug)."""

    exit_code = 2


class ConfigError(PlannerError):
    """Invalid configuration: names the file, line, column and key path where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key}:" if self.key else ""
        text = f"{where}:{key} {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(PlannerError):
    """Invalid command-line usage (bad flag value, conflicting options)."""


class InfeasibleError(PlannerError):
    """Nothing in the search space is feasible; the message says why and what would help."""

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' suggestion for a typo, or None when nothing is close."""
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None
