"""The rollout's vocabulary: the typed spec, measurements and verdicts every layer shares.

Frozen dataclasses, no Kubernetes or Prometheus imports: the spec parser (`spec.py`) builds them
from a custom resource, the analysis (`analysis/`) fills `MetricResult`s, the state machine
(`state_machine.py`) reads both and decides. Keeping the vocabulary apart lets each of those
run without the others' clients.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Phase(enum.StrEnum):
    PENDING = "Pending"
    SHADOW = "Shadow"
    CANARY = "Canary"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    INVALID = "Invalid"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.INVALID})


# --- steps of the plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowStep:
    """The candidate gets a mirrored copy of the traffic; clients only see stable answers."""

    duration_s: float
    percent: int = 100  # share of requests mirrored


@dataclass(frozen=True)
class WeightStep:
    """The candidate serves ``weight`` % of real traffic for ``duration_s``."""

    weight: int
    duration_s: float


@dataclass(frozen=True)
class ApprovalStep:
    """Wait for a human: the CLI's approve (or promote) moves on."""


Step = ShadowStep | WeightStep | ApprovalStep


# --- analysis configuration --------------------------------------------------------------------


class Comparison(enum.StrEnum):
    BELOW = "below"  # breach when value < threshold
    ABOVE = "above"  # breach when value > threshold


@dataclass(frozen=True)
class Rule:
    """A rollback trigger (``for_`` consecutive breaches) or a warning (``for_`` = 1).

    ``query`` is PromQL that must return one number; ``{{track}}``, ``{{namespace}}`` and
    ``{{rollout}}`` are substituted before it runs.
    """

    name: str
    query: str
    comparison: Comparison
    threshold: float
    for_: int = 1


class NoDataPolicy(enum.StrEnum):
    HOLD = "hold"  # never promote, never roll back on missing data: wait
    ROLLBACK = "rollback"  # roll back after `no_data_limit` consecutive intervals without data


@dataclass(frozen=True)
class ShadowCompare:
    """During shadow: mean(candidate makespan ratio) may exceed mean(stable's) by at most this."""

    max_makespan_regression: float = 0.0
    query: str = ""  # default built by the analysis from the metric contract when empty
    # The built-in comparison has no data until the candidate answered this many mirrored
    # requests in the window: a mean over two or three schedules is noise, not a regression.
    min_samples: int = 20


@dataclass(frozen=True)
class AnalysisSpec:
    interval_s: float
    prometheus_url: str
    rollback: tuple[Rule, ...]
    warn: tuple[Rule, ...] = ()
    shadow_compare: ShadowCompare | None = None
    no_data: NoDataPolicy = NoDataPolicy.HOLD
    no_data_limit: int = 10


# --- routing and the candidate ------------------------------------------------------------------


class Provider(enum.StrEnum):
    GATEWAY_API = "gatewayAPI"  # GRPCRoute
    ISTIO = "istio"  # VirtualService
    REPLICAS = "replicas"  # replica ratio, no mesh


@dataclass(frozen=True)
class RoutingSpec:
    provider: Provider
    route: str  # GRPCRoute / VirtualService name (unused by the replica router)
    stable_service: str
    canary_service: str
    port: int = 50051
    # Application-level mirroring: the ConfigMap the stable scheduler pods mount and watch.
    mirror_config_map: str = ""  # empty: "<targetRef>-mirror"
    # Who mirrors during shadow: "app" (the stable pods, through that ConfigMap; works on every
    # cluster) or "route" (the GRPCRoute RequestMirror filter / VirtualService mirror, an
    # Extended feature many gateways lack).
    mirror: str = "app"


@dataclass(frozen=True)
class CandidateSpec:
    image: str = ""
    model_version: str = ""
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RolloutSpec:
    target: str  # the stable Deployment's name
    candidate: CandidateSpec
    routing: RoutingSpec
    steps: tuple[Step, ...]
    analysis: AnalysisSpec
    webhook_url: str = ""


# --- measurements and verdicts -----------------------------------------------------------------


class Verdict(enum.StrEnum):
    PASS = "pass"
    BREACH = "breach"
    NO_DATA = "noData"  # empty result, NaN, provider error: never a pass, never a breach


@dataclass(frozen=True)
class MetricResult:
    """One rule measured once. ``value`` is None when there was no data (``detail`` says why)."""

    name: str
    value: float | None
    threshold: float
    comparison: Comparison
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True)
class AnalysisReport:
    """One analysis round: every rollback rule, every warning, the shadow comparison if any."""

    time: float  # epoch seconds
    rollback: tuple[MetricResult, ...] = ()
    warn: tuple[MetricResult, ...] = ()
    shadow_compare: MetricResult | None = None

    @property
    def has_no_data(self) -> bool:
        measured = (*self.rollback, *((self.shadow_compare,) if self.shadow_compare else ()))
        return any(r.verdict is Verdict.NO_DATA for r in measured)


@dataclass(frozen=True)
class Commands:
    """What a human asked for since the last reconcile (set by the CLI through annotations)."""

    approve: bool = False
    abort: bool = False
    retry: bool = False
    promote: bool = False  # skip the remaining steps


@dataclass(frozen=True)
class Counters:
    """Consecutive-interval counters kept in the status, so a restart forgets nothing."""

    breaches: dict[str, int] = field(default_factory=dict)
    no_data: int = 0
