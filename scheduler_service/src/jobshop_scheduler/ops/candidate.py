"""The verdict of ``schedctl verify-candidate``: measured figures in, one result object out.

Providers measure, one evaluator judges: ``verify_cli`` makes the gRPC calls and hands over
plain figures (answers checked by the validator, call latencies); the functions here decide,
with no I/O, so every gate is tested without a server. Parts are judged in the order they run
(model, replay, load); the first that fails gives the reason and the command stops there, so a
part not reached is absent from the result.

The result is one compact JSON object, camelCase, at most ``MAX_RESULT_BYTES``: it travels as a
Pod's termination message, of which the kubelet keeps 4096 bytes, into the rollout's status.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobshop_scheduler.domain.codec import schedule_from_dict
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.domain.validator import validate

MAX_RESULT_BYTES = 4000
EQUAL_REL = 1e-9  # makespans this close count as equal, not longer
SHOWN_CHARS = 300  # of one answer's problem in a reason
MAX_NAME_CHARS = 128  # of a model version or checksum a server reports: the result stays small


@dataclass(frozen=True)
class Part:
    """One judged part of the verification: its figures, and why it failed ("" passed)."""

    name: str
    figures: dict[str, Any]
    reason: str = ""

    @property
    def passed(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class Answer:
    """One side's answer to one replayed request: its makespan, or why it does not count."""

    makespan: int | None
    problem: str = ""  # the first violation, or the call's error; "" for a valid answer
    model_version: str = ""


def check_answer(problem: Problem, response: dict[str, Any]) -> Answer:
    """The validator on an answer (``response_from_pb``'s dict): trust no server's plan.

    A job left out counts against the answer: a healthy server never leaves one out (it refuses
    to answer instead), and a plan that drops jobs would otherwise look shorter.
    """
    version = str(response.get("model_version", ""))
    report = validate(problem, schedule_from_dict(response))
    if report.violations:
        more = len(report.violations) - 1
        note = f" (and {more} more violations)" if more else ""
        return Answer(None, f"{report.violations[0]}{note}", version)
    if response["makespan"] != report.makespan:
        claim = f"claims makespan {response['makespan']}, its plan ends at {report.makespan}"
        return Answer(None, claim, version)
    return Answer(report.makespan, "", version)


def failed_call(error: str) -> Answer:
    """An answer that never came (the call's status and details)."""
    return Answer(None, f"no answer ({error})")


@dataclass(frozen=True)
class Pair:
    """A replayed request: the candidate's and the stable's answers to it."""

    name: str
    candidate: Answer
    stable: Answer

    @property
    def ratio(self) -> float | None:
        """Candidate makespan / stable makespan; None unless both answers are valid."""
        c, s = self.candidate.makespan, self.stable.makespan
        if c is None or s is None:
            return None
        return 1.0 if c == s else c / max(s, 1)


def model_part(version: str, sha256: str, answered: Sequence[str] = ()) -> Part:
    """The model the candidate serves: ``version`` (from the card this pod ships, or "" when
    unknown) against the versions its answers named."""
    seen = sorted({v[:MAX_NAME_CHARS] for v in answered if v})  # a failed call names none
    version, sha256 = version[:MAX_NAME_CHARS], sha256[:MAX_NAME_CHARS]
    figures = {"version": version or (seen[0] if len(seen) == 1 else ""), "sha256": sha256}
    if len(seen) > 1:
        return Part("model", figures, f"model: the candidate answered with {len(seen)} models "
                    f"({', '.join(seen)})")  # fmt: skip
    if version and seen and seen != [version]:
        card = f"{version} (sha256 {sha256[:12]})" if sha256 else version
        reason = f"model: the candidate serves model {seen[0]}, this pod template ships {card}"
        return Part("model", figures, reason)
    return Part("model", figures)


def unreachable(version: str, sha256: str, why: str) -> Part:
    """The model part when the candidate never became SERVING."""
    figures = {"version": version[:MAX_NAME_CHARS], "sha256": sha256[:MAX_NAME_CHARS]}
    return Part("model", figures, f"model: {why}")


def replay_part(pairs: Sequence[Pair], max_ratio: float) -> Part:
    """Every answer valid, and the mean makespan ratio at most ``max_ratio``."""
    ratios = [(p.name, r) for p in pairs if (r := p.ratio) is not None]
    invalid = [p for p in pairs if p.candidate.makespan is None]
    no_stable = [p for p in pairs if p.candidate.makespan is not None and p.stable.makespan is None]
    mean = sum(r for _, r in ratios) / len(ratios) if ratios else None
    worst = max(ratios, key=lambda item: item[1]) if ratios else None
    figures = {
        "requests": len(pairs),
        "invalid": len(invalid),
        "longer": sum(r > 1 + EQUAL_REL for _, r in ratios),
        "meanRatio": _rounded(mean),
        "maxRatio": _rounded(worst[1] if worst else None),
    }
    of = f"of {len(pairs)}"
    if invalid:
        first = invalid[0]
        reason = f"replay: {len(invalid)} {of} answers invalid ({first.name}: " \
            f"{first.candidate.problem[:SHOWN_CHARS]})"  # fmt: skip
        return Part("replay", figures, reason)
    if no_stable:
        first = no_stable[0]
        reason = f"replay: the stable did not answer {len(no_stable)} {of} requests, nothing " \
            f"to compare with ({first.name}: {first.stable.problem[:SHOWN_CHARS]})"  # fmt: skip
        return Part("replay", figures, reason)
    if mean is not None and worst is not None and mean > max_ratio * (1 + EQUAL_REL):
        reason = f"replay: mean makespan ratio {mean:.4f} > {max_ratio:g} ({figures['longer']} " \
            f"{of} plans longer than the stable's, worst {worst[0]} at {worst[1]:.4f})"  # fmt: skip
        return Part("replay", figures, reason)
    return Part("replay", figures)


@dataclass(frozen=True)
class LoadFigures:
    """What the load test measured: latency percentiles of answered calls, and the failures."""

    requests: int
    concurrency: int
    p50_s: float  # NaN when no call answered
    p99_s: float
    errors: Counter[str] = field(default_factory=Counter)  # by status code
    first_error: str = ""


def load_part(load: LoadFigures, limit_s: float) -> Part:
    """No call failed, and p99 at most ``limit_s``."""
    errors = sum(load.errors.values())
    figures = {
        "requests": load.requests,
        "concurrency": load.concurrency,
        "errors": errors,
        "p50Seconds": _rounded(load.p50_s),
        "p99Seconds": _rounded(load.p99_s),
        "limitSeconds": limit_s,
    }
    if errors:
        kinds = ", ".join(f"{n} {code}" for code, n in load.errors.most_common())
        reason = f"load: {errors} of {load.requests} calls failed ({kinds}; first: " \
            f"{load.first_error[:SHOWN_CHARS]})"  # fmt: skip
        return Part("load", figures, reason)
    if not load.p99_s <= limit_s:
        reason = f"load: p99 {load.p99_s:.3f} s > limit {limit_s:g} s (p50 {load.p50_s:.3f} s, " \
            f"{load.requests} calls at concurrency {load.concurrency})"  # fmt: skip
        return Part("load", figures, reason)
    return Part("load", figures)


def verdict(parts: Sequence[Part]) -> dict[str, Any]:
    """The result object: passed, the first failing part's reason, each part's figures."""
    failing = next((p for p in parts if not p.passed), None)
    result: dict[str, Any] = {
        "passed": failing is None,
        "reason": failing.reason if failing else "",
    }
    result.update((p.name, p.figures) for p in parts)
    return result


def usage_result(message: str) -> dict[str, Any]:
    """The result of a run that could not start (exit 2): the operator still gets a reason."""
    return {"passed": False, "reason": f"usage: {message}"}


def render(result: dict[str, Any], limit: int = MAX_RESULT_BYTES) -> str:
    """Compact JSON of at most ``limit`` bytes: a long reason is cut, ending in "..."."""
    text = _dumps(result)
    reason = str(result.get("reason", ""))
    while len(text) > limit and reason:  # ASCII JSON: each character cut saves a byte or more
        reason = reason[: max(0, len(reason) - (len(text) - limit) - 3)]
        text = _dumps({**result, "reason": reason + "..." if reason else ""})
    return text


def _dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"))


def _rounded(value: float | None) -> float | None:
    """4 decimals; None (JSON null) for no value or NaN (nothing was measured)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, 4)
