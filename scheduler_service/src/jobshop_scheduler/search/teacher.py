"""The expert that self-labelling's "expert" objective imitates: the tabu search's plan.

Training lives below the search in the layers (the search uses the policy), so the training
command passes this in; it is a picklable object, for the worker processes that label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem
from jobshop_scheduler.search.bounds import lower_bound
from jobshop_scheduler.search.tabu import TabuSearch

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class TabuTeacher:
    """A fixed number of tabu iterations per operation from the given plan (reproducible on
    any machine, unlike a time budget)."""

    iterations_per_op: int = 10
    min_iterations: int = 500

    def __call__(
        self, cp: CompiledProblem, start: tuple[IntArray, IntArray], seed: int
    ) -> tuple[IntArray, IntArray]:
        """(machine, start) per operation of the best plan found."""
        search = TabuSearch(cp, *start, seed=seed)
        iterations = max(self.min_iterations, self.iterations_per_op * cp.n_ops)
        found = search.run(iterations=iterations, lower_bound=lower_bound(cp))
        return found.op_machine, found.op_start
