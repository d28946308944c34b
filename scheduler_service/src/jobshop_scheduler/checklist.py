"""Named checks with a verdict, shown as one table or one JSON document, summed up as an exit code.

``verify-data``, ``verify-model`` and ``preflight`` all answer the same question for an operator
("can this go to production?"), so they share one result type and one renderer: checks measure,
this module only presents. A check that could not run because an earlier one failed is SKIP, not
PASS, so a table never looks greener than what was actually verified.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobshop_scheduler import table

# Exit codes of the data and deployment commands (documented in their --help).
EXIT_OK = 0  # every check passed (warnings allowed)
EXIT_FAILED = 1  # at least one check failed, or the data is invalid
EXIT_USAGE = 2  # bad flag, setting or missing input file
EXIT_DATABASE = 3  # the database refused, was unreachable or went away

EXIT_CODES_HELP = (
    f"exit codes: {EXIT_OK} ok (warnings allowed), {EXIT_FAILED} a check failed or the data is "
    f"invalid, {EXIT_USAGE} bad flags, settings or a missing input file, {EXIT_DATABASE} database "
    "unreachable, access denied or connection lost"
)


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "message": self.message}


def passed(name: str, message: str) -> Check:
    return Check(name, Status.PASS, message)


def warned(name: str, message: str) -> Check:
    return Check(name, Status.WARN, message)


def failed(name: str, message: str) -> Check:
    return Check(name, Status.FAIL, message)


def skipped(name: str, message: str) -> Check:
    return Check(name, Status.SKIP, message)


def ok(checks: Sequence[Check]) -> bool:
    return all(c.status is not Status.FAIL for c in checks)


def exit_code(checks: Sequence[Check]) -> int:
    return EXIT_OK if ok(checks) else EXIT_FAILED


def summary(title: str, checks: Sequence[Check]) -> str:
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    verdict = "PASS" if ok(checks) else "FAIL"
    parts = ", ".join(f"{n} {s.value.lower()}" for s, n in counts.items() if n)
    return f"{title}: {verdict} ({parts})"


def render_table(title: str, checks: Sequence[Check]) -> str:
    """Aligned columns CHECK / STATUS / MESSAGE, then the one-line verdict."""
    rows = [(c.name, c.status.value, c.message) for c in checks]
    return table.render(("CHECK", "STATUS", "MESSAGE"), rows) + "\n" + summary(title, checks)


def render_json(checks: Sequence[Check], **extra: Any) -> str:
    return json.dumps(
        {"ok": ok(checks), **extra, "checks": [c.as_dict() for c in checks]}, indent=2
    )
