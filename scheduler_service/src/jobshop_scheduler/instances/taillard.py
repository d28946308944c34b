"""Taillard's (1993) job-shop benchmarks, regenerated from their seeds.

E. Taillard, "Benchmarks for basic scheduling problems", EJOR 64 (1993) 278-285. Generating the
instances from the published algorithm keeps the repository free of data files and lets anyone
check an instance against the paper: the generator is the Park-Miller "minimal standard" LCG
(a = 16807, m = 2^31 - 1) computed with Schrage's method so it never overflows 32 bits.

Order of draws (as in the paper): first every duration, job by job and within a job operation by
operation, from the time seed; then every machine order, job by job, from the machine seed, by
starting from the identity permutation and swapping position j with position unif(j, m - 1).
"""

from __future__ import annotations

from typing import NamedTuple

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances.classic import classic_shop

_A = 16807
_B = 127773  # m // a
_C = 2836  # m % a
_M = 2**31 - 1
LCG_MAX = _M - 1  # the largest seed the generator takes


class TaillardSpec(NamedTuple):
    """Everything needed to regenerate one instance, plus its best known makespan."""

    n_jobs: int
    n_machines: int
    time_seed: int
    machine_seed: int
    best_known: int


# Best known (for these, proven optimal) makespans as listed in the benchmark literature.
TAILLARD: dict[str, TaillardSpec] = {
    "ta01": TaillardSpec(15, 15, 840612802, 398197754, 1231),
    "ta02": TaillardSpec(15, 15, 1314640371, 386720536, 1244),
    "ta03": TaillardSpec(15, 15, 1227221349, 316176388, 1218),
    "ta04": TaillardSpec(15, 15, 342269428, 1806358582, 1175),
    "ta05": TaillardSpec(15, 15, 1603221416, 1501949241, 1224),
    "ta06": TaillardSpec(15, 15, 1357584978, 1734077082, 1238),
    "ta07": TaillardSpec(15, 15, 44531661, 1374316395, 1227),
    "ta08": TaillardSpec(15, 15, 302545136, 2092186050, 1217),
    "ta09": TaillardSpec(15, 15, 1153780144, 1393392374, 1274),
    "ta10": TaillardSpec(15, 15, 73896786, 1544979948, 1241),
    "ta71": TaillardSpec(100, 20, 302034063, 1203569070, 5464),
    "ta72": TaillardSpec(100, 20, 1437643198, 1692025209, 5181),
    "ta73": TaillardSpec(100, 20, 1792475497, 1039908559, 5568),
    "ta74": TaillardSpec(100, 20, 1647273132, 1012841433, 5339),
    "ta75": TaillardSpec(100, 20, 696480901, 1689682358, 5392),
    "ta76": TaillardSpec(100, 20, 1785569423, 1092647459, 5342),
    "ta77": TaillardSpec(100, 20, 117806902, 739059626, 5436),
    "ta78": TaillardSpec(100, 20, 1639154709, 1319962509, 5394),
    "ta79": TaillardSpec(100, 20, 2007423389, 749368241, 5358),
    "ta80": TaillardSpec(100, 20, 682761130, 262763021, 5183),
}


def generator_seed(value: int) -> int:
    """``value`` folded into the generator's seed range 1..2^31-2; a seed already in range is
    itself, so every published instance and every seed used so far keep their shops."""
    return 1 + (value - 1) % (_M - 1)


class _Lcg:
    """Taillard's unif(seed, low, high): one shared seed advanced on every draw."""

    def __init__(self, seed: int) -> None:
        if not 0 < seed < _M:
            raise ValueError(f"seed must be in 1..{_M - 1}, got {seed}")
        self.seed = seed

    def unif(self, low: int, high: int) -> int:
        """Next integer uniform on [low, high], exactly as the paper's Schrage-style code."""
        k = self.seed // _B
        seed = _A * (self.seed % _B) - k * _C
        if seed < 0:
            seed += _M
        self.seed = seed
        return low + int(seed / _M * (high - low + 1))


def taillard_arrays(
    n_jobs: int, n_machines: int, time_seed: int, machine_seed: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Durations and 0-based machine orders, both indexed [job][operation position]."""
    times = _Lcg(time_seed)
    durations = [[times.unif(1, 99) for _ in range(n_machines)] for _ in range(n_jobs)]
    machines_rng = _Lcg(machine_seed)
    orders: list[list[int]] = []
    for _ in range(n_jobs):
        order = list(range(n_machines))
        for j in range(n_machines):
            k = machines_rng.unif(j, n_machines - 1)
            order[j], order[k] = order[k], order[j]
        orders.append(order)
    return durations, orders


def taillard(
    n_jobs: int, n_machines: int, time_seed: int, machine_seed: int, name: str = ""
) -> Problem:
    """A classic job-shop Problem: machines M1..Mm, jobs J1..Jn, operations Jj-1..Jj-m."""
    durations, orders = taillard_arrays(n_jobs, n_machines, time_seed, machine_seed)
    return classic_shop(orders, durations, n_machines, name)


def _spec(name: str) -> TaillardSpec:
    try:
        return TAILLARD[name]
    except KeyError:
        raise KeyError(
            f"unknown Taillard instance {name!r}; known: {', '.join(TAILLARD)}"
        ) from None


def load_taillard(name: str) -> Problem:
    """Regenerate a registered instance by name ("ta01"), with the name as its request id."""
    spec = _spec(name)
    return taillard(spec.n_jobs, spec.n_machines, spec.time_seed, spec.machine_seed, name)


def best_known(name: str) -> int:
    """Best known makespan of a registered instance, the yardstick for optimality gaps."""
    return _spec(name).best_known
