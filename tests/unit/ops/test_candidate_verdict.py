"""The verify gate's judge (`ops.candidate`): thresholds, reasons, and the result's size bound."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from jobshop_scheduler.ops.candidate import (
    MAX_RESULT_BYTES,
    Answer,
    LoadFigures,
    Pair,
    failed_call,
    load_part,
    model_part,
    render,
    replay_part,
    verdict,
)

pytestmark = pytest.mark.unit


def pair(name: str, candidate: int | None, stable: int | None) -> Pair:
    return Pair(name, Answer(candidate, "" if candidate else "overlap"), Answer(stable))


def test_the_mean_ratio_decides_and_equal_plans_are_not_longer() -> None:
    pairs = [pair("a", 100, 100), pair("b", 110, 100), pair("c", 90, 100)]
    part = replay_part(pairs, max_ratio=1.0)
    assert part.passed, part.reason
    assert part.figures == {
        "requests": 3, "invalid": 0, "longer": 1, "meanRatio": 1.0, "maxRatio": 1.1,
    }  # fmt: skip
    worse = replay_part([*pairs, pair("d", 130, 100)], max_ratio=1.0)
    assert worse.reason == (
        "replay: mean makespan ratio 1.0750 > 1 (2 of 4 plans longer than the stable's, "
        "worst d at 1.3000)"
    )


def test_an_invalid_answer_fails_whatever_the_ratios() -> None:
    pairs = [pair("a", 50, 100), Pair("b", failed_call("UNAVAILABLE: gone"), Answer(100))]
    part = replay_part(pairs, max_ratio=2.0)
    assert part.reason == "replay: 1 of 2 answers invalid (b: no answer (UNAVAILABLE: gone))"
    assert part.figures["invalid"] == 1 and part.figures["meanRatio"] == 0.5


def test_no_stable_answer_means_nothing_to_compare_with() -> None:
    part = replay_part([pair("a", 100, None)], max_ratio=1.0)
    assert part.reason.startswith("replay: the stable did not answer 1 of 1 requests")


def test_load_fails_on_errors_then_on_p99() -> None:
    ok = LoadFigures(10, 2, 0.1, 0.5)
    assert load_part(ok, 1.0).passed
    assert load_part(ok, 0.4).reason.startswith("load: p99 0.500 s > limit 0.4 s")
    failing = LoadFigures(10, 2, math.nan, math.nan, Counter(UNAVAILABLE=10), "UNAVAILABLE: x")
    part = load_part(failing, 1.0)
    assert part.reason.startswith("load: 10 of 10 calls failed (10 UNAVAILABLE")
    assert part.figures["p99Seconds"] is None  # JSON null, never NaN


def test_the_first_failing_part_gives_the_reason() -> None:
    model = model_part("v2", "ab" * 32, ["v1", "v1"])
    replay = replay_part([pair("a", 200, 100)], 1.0)
    result = verdict([model, replay])
    assert result["passed"] is False
    assert result["reason"].startswith("model: the candidate serves model v1, this pod")
    assert verdict([model_part("", "", ["v1", ""])]) == {
        "passed": True, "reason": "", "model": {"version": "v1", "sha256": ""},
    }  # fmt: skip


def test_the_result_fits_a_termination_message() -> None:
    long_reason = 'replay: "' + "x" * 10_000 + "\u00e9"
    model = model_part("v" * 5000, "s" * 5000, [])
    result = {**verdict([model]), "passed": False, "reason": long_reason}
    text = render(result)
    assert len(text.encode()) <= MAX_RESULT_BYTES
    parsed = json.loads(text)
    assert parsed["reason"].startswith('replay: "xxx') and parsed["reason"].endswith("...")
    assert parsed["model"]["version"] == "v" * 128
