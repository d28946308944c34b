"""Built-in PromQL over the metric contract, and the templating every rule's query goes through.

A rule whose ``query`` is empty uses the built-in query of its name. Queries name the track
under analysis (``canary`` during weight steps, ``shadow`` during shadow) and the rollout's
namespace through placeholders: ``{{track}}``, ``{{namespace}}``, ``{{rollout}}`` and
``{{window}}`` are substituted in built-in and user queries alike; any other ``{{...}}`` is an
error naming the rule, so a typo is caught when the spec is checked, not read as "no data".

Assumptions the built-ins make about the monitoring stack (the chart's ServiceMonitor/PodMonitor
and kube-prometheus defaults satisfy them):

- the scheduler's contract series (shared DESIGN.md) carry the pod's ``namespace`` as a label;
- ``memory-utilisation`` reads cAdvisor's ``container_memory_working_set_bytes`` (kubelet
  ``/metrics/cadvisor``) over kube-state-metrics' ``kube_pod_container_resource_limits
  {resource="memory"}``, and finds the track's pods through ``kube_pod_labels{label_track=...}``,
  which kube-state-metrics exports only with ``--metric-labels-allowlist=pods=[track]``. The value
  is the highest ratio among the track's pods (the pod closest to its OOM kill); pods without a
  memory limit are not counted, so a track without limits has no data.

The window: ``max(2 * interval, 60 s)``. ``rate()`` needs two samples in its window, and 60 s
holds at least two at the common 15 to 30 s scrape intervals; twice the analysis interval makes
consecutive rounds overlap, so no request falls between two measurements. The analysis cuts it
to the evidence's age (``window_since``): the rules' window never reaches back before the
attempt's first step, the shadow comparison's never before the shadow step, since the same track
in the same namespace was a previous candidate's before that.
"""

from __future__ import annotations

import math
import re

from rollout_operator.model import SEQUENTIAL_CHECK, Comparison, Rule, ShadowCompare

SHADOW_COMPARE = "shadow-makespan-regression"
MIN_WINDOW_S = 60

COMPLETION_RATE = """
sum(rate(
  scheduler_jobs_scheduled_total{track="{{track}}", namespace="{{namespace}}"}[{{window}}]
))
/
sum(rate(
  scheduler_jobs_requested_total{track="{{track}}", namespace="{{namespace}}"}[{{window}}]
))"""
# A track without any non-OK series has no errors (0); a track without requests at all divides
# 0 by 0 (NaN) and so has no data.
ERROR_RATE = """
(
  sum(rate(
    scheduler_requests_total{track="{{track}}", namespace="{{namespace}}", code!="OK"}[{{window}}]
  ))
  or vector(0)
)
/
sum(rate(
  scheduler_requests_total{track="{{track}}", namespace="{{namespace}}"}[{{window}}]
))"""
LATENCY_P95 = """
histogram_quantile(0.95, sum by (le) (rate(
  scheduler_request_duration_seconds_bucket{
    track="{{track}}", namespace="{{namespace}}"
  }[{{window}}]
)))"""
MEMORY_UTILISATION = """
max(
  sum by (namespace, pod) (
    container_memory_working_set_bytes{namespace="{{namespace}}", container!="", container!="POD"}
  )
  / on (namespace, pod)
  sum by (namespace, pod) (
    kube_pod_container_resource_limits{namespace="{{namespace}}", resource="memory"}
  )
  * on (namespace, pod) group_left ()
  max by (namespace, pod) (kube_pod_labels{namespace="{{namespace}}", label_track="{{track}}"})
)"""
# Mean makespan ratio (answer / legacy rule) of a track's answers in the window.
MEAN_MAKESPAN_RATIO = """
sum(rate(scheduler_makespan_ratio_sum{track="{{track}}", namespace="{{namespace}}"}[{{window}}]))
/
sum(rate(scheduler_makespan_ratio_count{track="{{track}}", namespace="{{namespace}}"}[{{window}}]))
"""
# The candidate's mean minus stable's, on the same mirrored requests: positive means the
# candidate's schedules are longer.
SHADOW_MAKESPAN_REGRESSION = f"""
({MEAN_MAKESPAN_RATIO})
-
({MEAN_MAKESPAN_RATIO.replace("{{track}}", "stable")})"""

BUILTIN_QUERIES: dict[str, str] = {
    name: query.strip()
    for name, query in {
        "completion-rate": COMPLETION_RATE,
        "latency-p95-seconds": LATENCY_P95,
        "error-rate": ERROR_RATE,
        "memory-utilisation": MEMORY_UTILISATION,
        SHADOW_COMPARE: SHADOW_MAKESPAN_REGRESSION,
    }.items()
}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def window_s(interval_s: float) -> int:
    """The range of the built-ins' ``rate()`` in seconds: ``max(2 * interval, 60 s)``."""
    return max(MIN_WINDOW_S, math.ceil(2 * interval_s))


def window(interval_s: float) -> str:
    """The range of the built-ins' ``rate()`` as PromQL writes it."""
    return f"{window_s(interval_s)}s"


def age_range(age_s: float) -> str:
    """A range that reaches back ``age_s`` and not a millisecond further (at least 1 ms): whole
    seconds rounded up would take in the last scrape before the start."""
    return f"{max(1, math.floor(age_s * 1000))}ms"


def window_since(interval_s: float, age_s: float) -> str:
    """The window, cut to the ``age_s`` seconds since the evidence began: a window reaching
    further back reads the samples a previous candidate's pods left under the same track and
    namespace. Too short for two scrapes, ``rate()`` has no data, which holds the step; no step
    is judged on another candidate's answers."""
    return window(interval_s) if age_s >= window_s(interval_s) else age_range(age_s)


# The built-in comparison only where the candidate answered enough mirrored requests.
ENOUGH_SAMPLES = """
and on ()
(
  sum(increase(
    scheduler_makespan_ratio_count{track="{{track}}", namespace="{{namespace}}"}[{{window}}]
  ))
  >= %d
)"""


# The sequential test's inputs: paired outcomes counted by the stable pods' app mirror since the
# shadow step began ({{window}} is the step's age), and the mean candidate/stable ratio of them.
SEQUENTIAL = SEQUENTIAL_CHECK
SHADOW_PAIRS = """
sum(increase(
  scheduler_shadow_pairs_total{track="stable", namespace="{{namespace}}", outcome="%s"}[{{window}}]
))"""
SHADOW_PAIR_MEAN_RATIO = """
sum(increase(
  scheduler_shadow_pair_ratio_sum{track="stable", namespace="{{namespace}}"}[{{window}}]
))
/
sum(increase(
  scheduler_shadow_pair_ratio_count{track="stable", namespace="{{namespace}}"}[{{window}}]
))"""
PAIR_OUTCOMES = ("worse", "better", "equal")


def sequential_rules() -> tuple[Rule, ...]:
    """The sequential test's queries as rules (a rule is how a query gets rendered): one count
    per outcome, then the mean ratio. Their comparisons are not used."""
    counts = [Rule(f"pairs-{o}", SHADOW_PAIRS % o, Comparison.ABOVE, 0.0) for o in PAIR_OUTCOMES]
    return (*counts, Rule("pair-mean-ratio", SHADOW_PAIR_MEAN_RATIO, Comparison.ABOVE, 0.0))


def shadow_rule(compare: ShadowCompare) -> Rule:
    """The shadow comparison as a rule: breach when the regression exceeds the allowed maximum.
    The built-in query has no data while the window holds fewer than ``min_samples`` answers."""
    query = compare.query
    if not query.strip():
        query = BUILTIN_QUERIES[SHADOW_COMPARE] + ENOUGH_SAMPLES % compare.min_samples
    return Rule(
        name=SHADOW_COMPARE,
        query=query,
        comparison=Comparison.ABOVE,
        threshold=compare.max_makespan_regression,
    )


def query_of(rule: Rule) -> str:
    """The rule's own query, else the built-in one of its name; ValueError naming an unknown one."""
    if rule.query.strip():
        return rule.query
    try:
        return BUILTIN_QUERIES[rule.name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_QUERIES))
        raise ValueError(
            f"rule {rule.name!r} has no query and there is no built-in query of that name "
            f"(built-in: {known})"
        ) from None


def render(
    rule: Rule,
    track: str,
    namespace: str,
    rollout: str,
    interval_s: float,
    *,
    range_: str | None = None,
) -> str:
    """The PromQL to run for ``rule``: placeholders substituted, unknown ones a ValueError.
    ``range_`` replaces the analysis window (dashboards want a shorter, livelier one)."""
    values = {
        "track": track,
        "namespace": namespace,
        "rollout": rollout,
        "window": range_ or window(interval_s),
    }

    def substitute(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            raise ValueError(
                f"query of rule {rule.name!r} uses unknown placeholder {match.group(0)} "
                f"(known: {', '.join('{{' + k + '}}' for k in values)})"
            ) from None

    return _PLACEHOLDER.sub(substitute, query_of(rule))
