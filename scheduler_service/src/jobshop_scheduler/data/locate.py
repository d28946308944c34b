"""Say *which* job, operation and machine a rule violation is about, by id rather than index.

``problem_rules`` names fields by JSON path (``jobs[3].operations[1].alternatives[0].duration``),
right for a client that sent a request; someone fixing a database wants ``job 'J004', operation
'J004-02', machine 'M03'``. Indices that do not resolve are left as they are.
"""

from __future__ import annotations

import re

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.problem_rules import ProblemError

_PATH = re.compile(
    r"^(?:problem\.)?(?:machines\[(?P<m>\d+)\]|jobs\[(?P<j>\d+)\]"
    r"(?:\.operations\[(?P<o>\d+)\](?:\.alternatives\[(?P<a>\d+)\])?)?)(?:\.(?P<rest>.*))?$"
)


def _names(problem: Problem, m: str | None, j: str | None, o: str | None, a: str | None) -> str:
    try:
        if m is not None:
            return f"machine #{int(m) + 1} {problem.machines[int(m)]!r}"
        assert j is not None
        job = problem.jobs[int(j)]
        parts = [f"job {job.id!r}"]
        if o is not None:
            op = job.operations[int(o)]
            parts.append(f"operation {op.id!r}")
            if a is not None:
                parts.append(f"machine {op.alternatives[int(a)].machine_id!r}")
        return ", ".join(parts)
    except IndexError:
        return ""


def describe(problem: Problem, error: ProblemError) -> str:
    """``error`` with its index path replaced by the ids it points at."""
    match = _PATH.match(error.field)
    if match is None:
        return str(error)
    names = _names(problem, match["m"], match["j"], match["o"], match["a"])
    if not names:
        return str(error)
    rest = match["rest"]
    return f"{names}: {rest} {error.message}" if rest else f"{names}: {error.message}"
