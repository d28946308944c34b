"""Classic job shops whose structure differs from Taillard's, for training and for held-out checks.

Taillard's generator draws every job's machine order uniformly and durations in 1-99. Plants
and the other published sets are not like that, and a policy trained on Taillard's shops alone
lost to the best dispatching rule on some of them (docs/benchmark.md, "Shop families"):

- ``two_set``: Demirkol, Mehta and Uzsoy's DMU41-80 (1998): every job visits the first half of
  the machines, in a random order, before the second half; durations 1-200.
- ``flow``: a near flow shop, one machine order shared by all jobs with two random swaps per
  job, as on a line where a few products skip ahead; durations 1-99.
- ``narrow``: uniform machine orders and durations 40-60, so that no job is short enough for a
  shortest-processing-time choice to be obviously right.
- ``partial``: each job visits a random subset of half to all machines, in a random order;
  durations 1-99.
- ``line``: a pure flow shop, every job visiting the machines in one shared order (Taillard's
  flow-shop sets run as job shops); durations 1-99.
- ``job_correlated`` and ``machine_correlated``: uniform machine orders, and each job (each
  machine) has a base duration in 1-99 that its operations vary around by at most 10, as in
  the correlated sets of Watson et al. (2002): some jobs (machines) are slow throughout.
- ``bottleneck``: uniform machine orders and durations 1-99, but one machine, drawn at random,
  takes three times as long as the rest: the plant with one machine everything waits for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances.classic import classic_shop
from jobshop_scheduler.instances.taillard import LCG_MAX, taillard

Routing = Callable[[np.random.Generator, int, int], tuple[list[list[int]], list[list[int]]]]


def _two_set(rng: np.random.Generator, n: int, m: int) -> tuple[list[list[int]], list[list[int]]]:
    half = m // 2
    orders = [[*rng.permutation(half), *(half + rng.permutation(m - half))] for _ in range(n)]
    return orders, rng.integers(1, 201, size=(n, m)).tolist()


def _flow(rng: np.random.Generator, n: int, m: int) -> tuple[list[list[int]], list[list[int]]]:
    line = rng.permutation(m)
    orders = []
    for _ in range(n):
        order = line.copy()
        for a, b in rng.integers(0, m, size=(2, 2)):
            order[a], order[b] = order[b], order[a]
        orders.append(order.tolist())
    return orders, rng.integers(1, 100, size=(n, m)).tolist()


def _narrow(rng: np.random.Generator, n: int, m: int) -> tuple[list[list[int]], list[list[int]]]:
    orders = [rng.permutation(m).tolist() for _ in range(n)]
    return orders, rng.integers(40, 61, size=(n, m)).tolist()


def _partial(rng: np.random.Generator, n: int, m: int) -> tuple[list[list[int]], list[list[int]]]:
    orders = [rng.permutation(m)[: rng.integers((m + 1) // 2, m + 1)].tolist() for _ in range(n)]
    return orders, [rng.integers(1, 100, size=len(order)).tolist() for order in orders]


def _line(rng: np.random.Generator, n: int, m: int) -> tuple[list[list[int]], list[list[int]]]:
    line = rng.permutation(m).tolist()
    return [line] * n, rng.integers(1, 100, size=(n, m)).tolist()


def _correlated(by_machine: bool) -> Routing:
    def routing(
        rng: np.random.Generator, n: int, m: int
    ) -> tuple[list[list[int]], list[list[int]]]:
        orders = np.array([rng.permutation(m) for _ in range(n)])
        base = rng.integers(1, 100, size=m if by_machine else n)
        centre = base[orders] if by_machine else np.repeat(base[:, None], m, axis=1)
        durations = np.clip(centre + rng.integers(-10, 11, size=(n, m)), 1, 99)
        return orders.tolist(), durations.tolist()

    return routing


def _bottleneck(
    rng: np.random.Generator, n: int, m: int
) -> tuple[list[list[int]], list[list[int]]]:
    orders = np.array([rng.permutation(m) for _ in range(n)])
    slow = rng.integers(0, m)
    durations = rng.integers(1, 100, size=(n, m)) * np.where(orders == slow, 3, 1)
    return orders.tolist(), durations.tolist()


_ROUTINGS: dict[str, Routing] = {
    "two_set": _two_set,
    "flow": _flow,
    "narrow": _narrow,
    "partial": _partial,
    "line": _line,
    "job_correlated": _correlated(by_machine=False),
    "machine_correlated": _correlated(by_machine=True),
    "bottleneck": _bottleneck,
}
FAMILIES = ("taillard", *_ROUTINGS)


def family_shop(family: str, n_jobs: int, n_machines: int, rng: np.random.Generator) -> Problem:
    """A shop of ``family`` (`FAMILIES`) drawn from ``rng``; "taillard" uses Taillard's own
    generator with seeds drawn from ``rng``."""
    if family == "taillard":
        seeds = rng.integers(1, LCG_MAX, size=2)
        return taillard(
            n_jobs, n_machines, int(seeds[0]), int(seeds[1]), f"rand{n_jobs}x{n_machines}"
        )
    try:
        routing = _ROUTINGS[family]
    except KeyError:
        raise ValueError(f"unknown shop family {family!r}; known: {', '.join(FAMILIES)}") from None
    orders, durations = routing(rng, n_jobs, n_machines)
    return classic_shop(orders, durations, n_machines, f"{family}{n_jobs}x{n_machines}")


class Shape(NamedTuple):
    """A classic shop's size and family, written "JOBSxMACHINES" or "JOBSxMACHINES:FAMILY"."""

    jobs: int
    machines: int
    family: str = "taillard"

    def __str__(self) -> str:
        size = f"{self.jobs}x{self.machines}"
        return size if self.family == "taillard" else f"{size}:{self.family}"


def parse_shape(text: str) -> Shape:
    """``"50x20"`` or ``"50x20:two_set"``; ValueError says what is wrong."""
    size, colon, family = text.lower().partition(":")
    try:
        jobs, machines = (int(x) for x in size.split("x"))
    except ValueError:
        raise ValueError(f"a shape is JOBSxMACHINES[:FAMILY], got {text!r}") from None
    if jobs < 1 or machines < 1:
        raise ValueError(f"a shape needs at least 1x1, got {text!r}")
    if colon and family not in FAMILIES:
        raise ValueError(
            f"unknown shop family {family!r} in {text!r}; known: {', '.join(FAMILIES)}"
        )
    return Shape(jobs, machines, family or "taillard")
