"""Fast array form of a problem and the classic dispatching rules built on it."""

from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import RULES, dispatch, dispatch_arrays, makespan_of

__all__ = [
    "RULES",
    "CompiledProblem",
    "compile_problem",
    "dispatch",
    "dispatch_arrays",
    "makespan_of",
]
