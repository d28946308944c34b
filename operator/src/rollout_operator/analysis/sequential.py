"""The shadow verdict as a sequential test on paired outcomes (Wald's SPRT, sign test).

The stable pods' app mirror sees both answers to the same request and counts whether the
candidate's plan was shorter (``better``), longer (``worse``) or as long (``equal``). Ties say
nothing about which is better and are dropped, as in the sign test. Of the pairs that differ,
let p be the share where the candidate is worse; a candidate no worse than stable has p = 0.5.

Two one-sided SPRTs run on the same counts, each with error rates ``alpha`` and ``beta``:

- worse-test, H0: p = 0.5 against H1: p = 0.5 + effect. Crossing the upper bound
  ln((1 - beta) / alpha) decides ``worse`` (roll back). Crossing the lower bound
  ln(beta / (1 - alpha)) decides ``notWorse``, but the operator keeps watching until the step
  ends: by Ville's inequality (the likelihood ratio is a martingale under H0) a candidate that
  is not worse still reaches "worse" with probability at most alpha / (1 - beta).
- better-test, H0: p = 0.5 against H1: p = 0.5 - effect: crossing its upper bound decides
  ``better`` (early promotion out of shadow, when asked for).

A single symmetric test (p = 0.5 - effect against p = 0.5 + effect) would be shorter, but a
candidate exactly as good as stable makes it a fair random walk that ends at "worse" about half
the time; testing each direction against "no difference" keeps that at ``alpha``.

With the defaults (alpha = beta = 0.05, effect = 0.2) a candidate worse on every differing pair
is decided after 9 pairs (9 * ln 1.4 = 3.03 > ln 19 = 2.94), one better on every pair after 9.
The counts come from Prometheus as ``increase()`` over the step's age, so they are rounded.
"""

from __future__ import annotations

import math

from rollout_operator.model import Decision, SequentialVerdict

Z_95 = 1.959963984540054


def bounds(alpha: float, beta: float) -> tuple[float, float]:
    """Wald's (lower, upper) bounds on the log-likelihood ratio."""
    return math.log(beta / (1 - alpha)), math.log((1 - beta) / alpha)


def log_likelihood_ratio(worse: int, better: int, effect: float) -> float:
    """ln L(p = 0.5 + effect) / L(p = 0.5) of ``worse`` worse and ``better`` better pairs."""
    return worse * math.log((0.5 + effect) / 0.5) + better * math.log((0.5 - effect) / 0.5)


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a share; None without trials. Good at small n and near 0 or 1,
    where the normal approximation's interval leaves [0, 1]."""
    if n <= 0:
        return None
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def decide(
    worse: float,
    better: float,
    equal: float,
    *,
    alpha: float = 0.05,
    beta: float = 0.05,
    effect: float = 0.2,
    mean_ratio: float | None = None,
) -> SequentialVerdict:
    """The verdict after these counts (rounded to whole pairs)."""
    w, b, e = (max(0, round(x)) for x in (worse, better, equal))
    lower, upper = bounds(alpha, beta)
    llr = log_likelihood_ratio(w, b, effect)
    llr_better = log_likelihood_ratio(b, w, effect)
    if llr >= upper:
        decision = Decision.WORSE
    elif llr_better >= upper:
        decision = Decision.BETTER
    elif llr <= lower:
        decision = Decision.NOT_WORSE
    else:
        decision = Decision.UNDECIDED
    interval = wilson(w, w + b)
    return SequentialVerdict(
        worse=w,
        better=b,
        equal=e,
        decision=decision,
        llr=llr,
        estimate=w / (w + b) if w + b else None,
        ci_low=interval[0] if interval else None,
        ci_high=interval[1] if interval else None,
        mean_ratio=mean_ratio,
    )


def describe(verdict: SequentialVerdict) -> str:
    """``12 pairs (9 worse, 1 better, 2 equal): worse in 0.90 [0.60, 0.98] of differing pairs``."""
    counts = (
        f"{verdict.pairs} pairs ({verdict.worse} worse, {verdict.better} better, "
        f"{verdict.equal} equal)"
    )
    if verdict.estimate is None or verdict.ci_low is None or verdict.ci_high is None:
        return f"{counts}: {verdict.decision.value}"
    share = (
        f"worse in {verdict.estimate:.2f} [{verdict.ci_low:.2f}, {verdict.ci_high:.2f}] "
        "of differing pairs"
    )
    ratio = "" if verdict.mean_ratio is None else f", mean makespan ratio {verdict.mean_ratio:.3f}"
    return f"{counts}: {verdict.decision.value}, {share}{ratio}"
