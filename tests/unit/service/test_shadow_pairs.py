"""Paired shadow outcomes: what makes a pair, how it is judged, what the mirror exports."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from jobshop_scheduler.api import pb
from jobshop_scheduler.service.mirror import Mirror
from jobshop_scheduler.service.shadow_pairs import (
    OUTCOMES,
    PAIR_RATIO_BUCKETS,
    ShadowPairs,
    complete_makespan,
    outcome,
)

pytestmark = pytest.mark.unit


def answer(
    makespan: int, completion_rate: float = 1.0, unscheduled: int = 0
) -> pb.ScheduleResponse:
    return pb.ScheduleResponse(
        makespan=makespan,
        completion_rate=completion_rate,
        unscheduled=[
            pb.Unscheduled(job_id=f"J{i}", reason="not scheduled") for i in range(unscheduled)
        ],
    )


def pairs(registry: CollectorRegistry, track: str = "stable") -> dict[str, float | None]:
    """The counts by outcome; None where a series is missing (it must not be: preset at zero)."""
    return {
        o: registry.get_sample_value("scheduler_shadow_pairs_total", {"track": track, "outcome": o})
        for o in OUTCOMES
    }


@pytest.mark.parametrize(
    ("candidate", "stable", "expected"),
    [(90, 100, "better"), (101, 100, "worse"), (100, 100, "equal"), (1, 2, "better"),
     (10**8 + 1, 10**8, "worse"), (10**12 + 1, 10**12, "equal")],  # equal: within 1e-9 relative
)  # fmt: skip
def test_outcome_is_the_sign_of_the_difference(candidate: int, stable: int, expected: str) -> None:
    assert outcome(candidate, stable) == expected


def test_only_a_complete_plan_has_a_makespan_to_pair() -> None:
    assert complete_makespan(answer(120)) == 120
    assert complete_makespan(None) is None
    assert complete_makespan(pb.ScheduleResponse()) is None  # an empty answer: no plan
    assert complete_makespan(answer(120, completion_rate=0.5, unscheduled=3)) is None
    assert complete_makespan(answer(120, unscheduled=1)) is None
    assert complete_makespan(answer(120, completion_rate=0.9)) is None


def test_pairs_are_counted_by_outcome_and_their_ratio_observed() -> None:
    registry = CollectorRegistry()
    recorder = ShadowPairs(registry, "stable")
    assert pairs(registry) == {"better": 0.0, "worse": 0.0, "equal": 0.0}  # preset at zero
    assert recorder.record(100, answer(80)) == "better"
    assert recorder.record(100, answer(150)) == "worse"
    assert recorder.record(100, answer(100)) == "equal"
    assert recorder.record(100, answer(200)) == "worse"
    assert pairs(registry) == {"better": 1.0, "worse": 2.0, "equal": 1.0}
    labels = {"track": "stable"}
    assert registry.get_sample_value("scheduler_shadow_pair_ratio_count", labels) == 4
    assert registry.get_sample_value("scheduler_shadow_pair_ratio_sum", labels) == pytest.approx(
        0.8 + 1.5 + 1.0 + 2.0
    )
    at_one = registry.get_sample_value(
        "scheduler_shadow_pair_ratio_bucket", {**labels, "le": "1.0"}
    )
    assert at_one == 2  # 0.8 and the equal pair
    assert 1.0 in PAIR_RATIO_BUCKETS and tuple(sorted(PAIR_RATIO_BUCKETS)) == PAIR_RATIO_BUCKETS


def test_no_pair_without_two_complete_plans() -> None:
    registry = CollectorRegistry()
    recorder = ShadowPairs(registry, "stable")
    assert recorder.record(None, answer(80)) is None  # this pod's answer was not complete
    assert recorder.record(0, answer(80)) is None
    assert recorder.record(100, answer(80, completion_rate=0.5, unscheduled=2)) is None
    assert recorder.record(100, pb.ScheduleResponse()) is None
    assert pairs(registry) == {"better": 0.0, "worse": 0.0, "equal": 0.0}
    count = registry.get_sample_value("scheduler_shadow_pair_ratio_count", {"track": "stable"})
    assert count == 0


def test_the_mirror_exports_the_pair_series_at_zero_from_the_start() -> None:
    registry = CollectorRegistry()
    Mirror(None, registry, "stable")
    assert pairs(registry) == {"better": 0.0, "worse": 0.0, "equal": 0.0}
    count = registry.get_sample_value("scheduler_shadow_pair_ratio_count", {"track": "stable"})
    assert count == 0
