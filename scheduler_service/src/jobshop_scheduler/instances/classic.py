"""A classic job shop (one machine per operation) from machine orders and durations: the one
place the generators (`taillard`, `families`) turn their arrays into a `Problem`."""

from __future__ import annotations

from collections.abc import Sequence

from jobshop_scheduler.domain.model import Alternative, Job, Operation, Problem


def classic_shop(
    orders: Sequence[Sequence[int]],
    durations: Sequence[Sequence[int]],
    n_machines: int,
    name: str = "",
) -> Problem:
    """Machines M1..Mm, jobs J1..Jn, operations Jj-1..Jj-k; ``orders`` (0-based machines) and
    ``durations`` are indexed [job][operation position]."""
    machines = tuple(f"M{k + 1}" for k in range(n_machines))
    jobs = tuple(
        Job(
            id=f"J{j + 1}",
            operations=tuple(
                Operation(
                    id=f"J{j + 1}-{pos + 1}", alternatives=(Alternative(machines[k], int(p)),)
                )
                for pos, (k, p) in enumerate(zip(order, durations[j], strict=True))
            ),
        )
        for j, order in enumerate(orders)
    )
    return Problem(machines=machines, jobs=jobs, request_id=name)
