"""Analysis: measure the rollout's rules in Prometheus and judge them.

Layered like Argo Rollouts' metric providers + ``evaluate.go`` and Flagger's ``RunQuery →
float``: ``queries`` turns a rule into PromQL, a provider (``prometheus``) turns PromQL into a
number or ``NoData`` and never judges, ``evaluate`` is the one place that turns a number into a
verdict, and ``runner.analyse`` strings them together for one analysis round. The submodules
import each other directly, never through this package, which only re-exports their names.
"""

from rollout_operator.analysis.evaluate import evaluate
from rollout_operator.analysis.provider import MetricsProvider, NoData
from rollout_operator.analysis.queries import BUILTIN_QUERIES, render
from rollout_operator.analysis.runner import analyse

__all__ = ["BUILTIN_QUERIES", "MetricsProvider", "NoData", "analyse", "evaluate", "render"]
