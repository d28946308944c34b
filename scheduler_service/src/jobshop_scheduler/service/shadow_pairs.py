"""Paired outcomes of the app-level mirror: the shadow's plan against the stable's, per request.

A window mean of two tracks' makespan ratios compares different requests; the mirror sees both
answers to the *same* request, so each mirrored request is one paired observation. The operator's
sequential test (a sign test) needs exactly these counts: shorter, longer or equal. Only two
complete plans make a pair: an error or a partial answer (jobs left unscheduled, as the
drop-jobs fault does) has a shorter makespan for the wrong reason, and the completion-rate and
mirror-failure series already count those. Both servers validate a plan before it leaves, so a
complete answer is a valid one; the stable pod does not re-validate the shadow's plan on its
serving path.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram

from jobshop_scheduler.api import pb

OUTCOMES = ("better", "worse", "equal")
EQUAL_REL_TOL = 1e-9
# Candidate makespan over the stable's: 1.0 (equal) is its own bucket edge, with fine steps on
# either side where most pairs fall and coarse ones out to twice or half as long.
PAIR_RATIO_BUCKETS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0, 1.001, 1.01, 1.02,
                      1.05, 1.1, 1.2, 1.5, 2.0)  # fmt: skip


def complete_makespan(response: pb.ScheduleResponse | None) -> int | None:
    """The makespan of a complete answer (every job placed); None when it is not one."""
    if response is None or response.unscheduled or response.completion_rate < 1.0:
        return None
    return response.makespan if response.makespan > 0 else None


def outcome(candidate: int, stable: int) -> str:
    """``better`` when the candidate's plan is shorter, ``worse`` when longer, else ``equal``."""
    if math.isclose(candidate, stable, rel_tol=EQUAL_REL_TOL, abs_tol=0.0):
        return "equal"
    return "better" if candidate < stable else "worse"


class ShadowPairs:
    """``scheduler_shadow_pairs_total`` and ``scheduler_shadow_pair_ratio`` for one track."""

    def __init__(self, registry: CollectorRegistry, track: str) -> None:
        pairs = Counter(
            "scheduler_shadow_pairs",
            "Mirrored requests by how the shadow's plan compared with this track's answer",
            ["track", "outcome"],
            registry=registry,
        )
        self._pairs = {o: pairs.labels(track=track, outcome=o) for o in OUTCOMES}
        ratio = Histogram(
            "scheduler_shadow_pair_ratio",
            "Shadow makespan / this track's makespan, per mirrored request answered by both",
            ["track"],
            buckets=PAIR_RATIO_BUCKETS,
            registry=registry,
        )
        self._ratio = ratio.labels(track=track)

    def record(self, stable_makespan: int | None, response: pb.ScheduleResponse) -> str | None:
        """Count the pair if both answers are complete plans; the outcome, or None if no pair."""
        candidate = complete_makespan(response)
        if stable_makespan is None or stable_makespan <= 0 or candidate is None:
            return None
        result = outcome(candidate, stable_makespan)
        self._pairs[result].inc()
        self._ratio.observe(candidate / stable_makespan)
        return result
