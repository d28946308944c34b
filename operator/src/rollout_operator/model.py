"""The rollout's vocabulary: the typed spec, measurements and verdicts every layer shares.

Frozen dataclasses, no Kubernetes or Prometheus imports: the spec parser (`spec.py`) builds them
from a custom resource, the analysis (`analysis/`) fills `MetricResult`s, the state machine
(`state_machine.py`) reads both and decides. Keeping the vocabulary apart lets each of those
run without the others' clients.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.StrEnum):
    PENDING = "Pending"
    VERIFYING = "Verifying"
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
    """Wait for people. Without roles: the CLI's approve (or promote) moves on. With roles:
    every role must sign off (`signoffs.py`); the API server vouches for who signed."""

    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadTest:
    """``requests`` calls at ``concurrency`` in flight; p99 latency at most ``p99_s``."""

    concurrency: int
    requests: int
    p99_s: float


@dataclass(frozen=True)
class VerifyStep:
    """Before any traffic: a Job from the candidate's pod template checks it (replay of
    recorded requests against stable's answers, then an optional load test)."""

    replay_config_map: str  # request files (*.json) as ConfigMap keys; "" with replay_volume
    max_makespan_ratio: float = 1.0  # mean candidate/stable makespan over the replay
    load: LoadTest | None = None
    timeout_s: float = 600.0  # the Job's activeDeadlineSeconds
    api_key_secret: str = ""  # Secret with key `api-key`, for a candidate with auth on
    # Or any volume source holding the files (a production snapshot on a PVC is beyond a
    # ConfigMap's 1 MiB), the folder within it in replay_sub_path. Not hashed: a mapping.
    replay_volume: dict[str, Any] | None = field(default=None, hash=False)
    replay_sub_path: str = ""


Step = ShadowStep | WeightStep | ApprovalStep | VerifyStep


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


class ShadowTest(enum.StrEnum):
    MEAN = "mean"  # mean makespan ratios over the window, candidate minus stable
    SEQUENTIAL = "sequential"  # Wald's SPRT on paired outcomes (app mirror only)


@dataclass(frozen=True)
class ShadowCompare:
    """During shadow: mean(candidate makespan ratio) may exceed mean(stable's) by at most this;
    or, with ``test: sequential``, a sequential sign test on the mirror's paired outcomes."""

    max_makespan_regression: float = 0.0
    query: str = ""  # default built by the analysis from the metric contract when empty
    # The built-in comparison has no data until the candidate answered this many mirrored
    # requests in the window: a mean over two or three schedules is noise, not a regression.
    # The sequential test needs it only to end the step undecided.
    min_samples: int = 20
    test: ShadowTest = ShadowTest.MEAN
    alpha: float = 0.05  # chance to roll back a candidate that is not worse
    beta: float = 0.05  # chance to let pass one that is worse by ``effect``
    effect: float = 0.2  # "worse": worse in 0.5 + effect of the pairs that differ
    promote_early: bool = False  # leave shadow once the candidate is significantly better


SEQUENTIAL_CHECK = "shadow-sequential"  # the sequential test's check, in reports and reasons


class Decision(enum.StrEnum):
    WORSE = "worse"  # roll back
    BETTER = "better"  # significantly better (early promotion, when asked for)
    NOT_WORSE = "notWorse"  # the worse-test accepted "no worse"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class SequentialVerdict:
    """The sequential test's state after the pairs counted since the shadow step began."""

    worse: int
    better: int
    equal: int
    decision: Decision
    llr: float  # log-likelihood ratio of "worse" against "no difference"
    estimate: float | None  # share of differing pairs where the candidate was worse
    ci_low: float | None  # 95 % Wilson interval of that share
    ci_high: float | None
    mean_ratio: float | None = None  # mean candidate/stable makespan over the pairs

    @property
    def pairs(self) -> int:
        return self.worse + self.better + self.equal


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
    sequential: SequentialVerdict | None = None  # with ``test: sequential``, in shadow

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
    # The sign-off annotations as they are now: role -> (user, value). Which of them are new
    # is the state machine's to decide (the value each role had when the approval step began).
    sign_offs: dict[str, tuple[str, str]] = field(default_factory=dict)


class JobState(enum.StrEnum):
    ABSENT = "Absent"  # not found (never created, or deleted)
    WAITING = "Waiting"  # created, no container started yet
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class VerifyJob:
    """The verification Job as the cluster shows it: its state, the result its container left
    as termination message (parsed JSON, None when absent or unreadable) and the reason the
    Job or its pod gives (``DeadlineExceeded``, ``ImagePullBackOff``, ...)."""

    state: JobState
    result: dict[str, object] | None = None
    reason: str = ""


@dataclass(frozen=True)
class Counters:
    """Consecutive-interval counters kept in the status, so a restart forgets nothing."""

    breaches: dict[str, int] = field(default_factory=dict)
    no_data: int = 0
