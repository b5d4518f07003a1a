"""Strict-or-skip handling shared by importers.

Importers are strict by default: the first bad item stops them with its file and line.
With `skip_invalid` they leave bad items out, list each one, and count them at the end.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


class ImportProblem(ValueError):
    """One bad raw item; the message names the file (and line) at fault."""


@dataclass
class ImportReport:
    skip_invalid: bool = False
    skipped: list[str] = field(default_factory=list)
    # The bad item that stopped a strict import: what skip_invalid would have left out (a
    # problem raised past `reject`, such as a missing source, stops either way).
    stopped_on: ImportProblem | None = None

    def reject(self, problem: ImportProblem) -> None:
        """Stop on `problem`, or (with skip_invalid) note it and carry on."""
        if not self.skip_invalid:
            self.stopped_on = problem
            raise problem
        self.skipped.append(str(problem))
        print(f"skipped: {problem}", file=sys.stderr)  # looked up now: tests swap it

    def summary(self) -> str:
        if not self.skipped:
            return "no invalid item"
        return f"{len(self.skipped)} invalid item(s) left out"
