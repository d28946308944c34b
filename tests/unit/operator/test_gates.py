"""The gates of the plan: the verify step, sign-offs by role, the sequential shadow verdict."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from rollout_operator.actions import Action, EmitEvent, RunVerification, SetTraffic
from rollout_operator.analysis import sequential
from rollout_operator.analysis.provider import NoData
from rollout_operator.analysis.runner import analyse
from rollout_operator.model import (
    AnalysisReport,
    Commands,
    Decision,
    JobState,
    Phase,
    RolloutSpec,
    Verdict,
    VerifyJob,
)
from rollout_operator.plan import track_at
from rollout_operator.spec import SpecError, parse_spec
from rollout_operator.state_machine import advance
from rollout_operator.status import RolloutStatus
from rollout_operator.verification import build_job, verify_args
from tests.unit.operator.rollout_cases import T0

pytestmark = pytest.mark.unit

ROUTING = {
    "provider": "gatewayAPI",
    "route": "scheduler",
    "stableService": "scheduler",
    "canaryService": "scheduler-canary",
}
PASSED = {
    "passed": True,
    "reason": "",
    "replay": {"requests": 12, "invalid": 0, "longer": 1, "meanRatio": 0.97, "maxRatio": 1.02},
    "load": {"requests": 200, "concurrency": 8, "errors": 0, "p50Seconds": 0.02,
             "p99Seconds": 0.09, "limitSeconds": 1.0},
}  # fmt: skip


def spec_with(steps: list[dict[str, Any]], **analysis: Any) -> RolloutSpec:
    return parse_spec(
        {
            "targetRef": {"name": "scheduler"},
            "candidate": {"image": "registry.example/scheduler:1.5.0"},
            "routing": ROUTING,
            "steps": steps,
            "analysis": {"interval": "10s", "rollback": [], "warn": [], **analysis},
        }
    )


VERIFY = spec_with(
    [
        {"verify": {"replay": {"configMap": "replay"}, "timeout": "5m",
                    "load": {"concurrency": 4, "requests": 100, "p99": "1s"}}},
        {"shadow": {"duration": "100s"}},
        {"approval": {"roles": ["ops-manager", "plant-manager"]}},
        {"weight": 100, "duration": "50s"},
    ],
    shadowCompare={"enabled": False},
)  # fmt: skip


class Run:
    """advance() as the reconciler calls it, with the Job and the sign-offs it would see."""

    def __init__(self, spec: RolloutSpec = VERIFY) -> None:
        self.spec, self.status, self.now = spec, RolloutStatus(), T0
        self.actions: list[Action] = []

    def tick(
        self,
        after: float = 1.0,
        *,
        job: VerifyJob | None = None,
        commands: Commands = Commands(),  # noqa: B008
        report: AnalysisReport | None = None,
    ) -> list[Action]:
        self.now += after
        self.status, self.actions = advance(
            self.spec, self.status, self.now, report, commands,
            candidate_available=True, verify_job=job,
        )  # fmt: skip
        return self.actions

    def phase(self) -> Phase:
        """The phase now (a call, so that mypy does not keep an earlier assert's narrowing)."""
        return self.status.phase

    def created(self) -> None:
        """What the reconciler records once it created the Job."""
        found = self.status.verification
        assert found is not None
        self.status = replace(self.status, verification=replace(found, created=True))

    def events(self) -> list[tuple[str, str]]:
        return [(a.reason, a.message) for a in self.actions if isinstance(a, EmitEvent)]


def verifying() -> Run:
    run = Run()
    run.tick()  # Pending
    actions = run.tick()  # the candidate is available: the verify step
    assert run.phase() is Phase.VERIFYING
    assert run.status.verification is not None
    assert RunVerification(run.status.verification.job, 0) in actions
    assert SetTraffic(0, 0) in actions
    run.created()
    return run


# --- verify ---------------------------------------------------------------------------------------


def test_a_passed_verification_moves_on_and_keeps_the_figures() -> None:
    run = verifying()
    assert run.status.verification is not None
    assert run.status.verification.job.startswith("scheduler-verify-1-")
    assert len(run.status.verification.job) <= 63
    run.tick(job=VerifyJob(JobState.WAITING))
    run.tick(job=VerifyJob(JobState.RUNNING))
    assert run.status.gate == "verify Running"
    run.tick(job=VerifyJob(JobState.SUCCEEDED, PASSED, "Completed"))
    assert run.phase() is Phase.SHADOW
    assert run.status.verification is not None
    assert run.status.verification.state == "Passed"
    assert run.status.verification.result == PASSED
    verified = run.status.condition("Verified")
    assert verified is not None and verified.status == "True"
    assert "p99 0.09 s (limit 1 s)" in verified.message
    assert [h.phase for h in run.status.history] == [Phase.PENDING, Phase.VERIFYING, Phase.SHADOW]


def test_a_job_not_created_yet_is_created_again() -> None:
    run = Run()
    run.tick()
    run.tick()
    assert run.status.verification is not None
    actions = run.tick(job=VerifyJob(JobState.ABSENT))
    assert RunVerification(run.status.verification.job, 0) in actions
    assert run.phase() is Phase.VERIFYING


@pytest.mark.parametrize(
    ("job", "after", "reason"),
    [
        (VerifyJob(JobState.ABSENT), 1.0, "was deleted before it finished"),
        (
            VerifyJob(
                JobState.FAILED, {"passed": False, "reason": "replay: 3 of 12 answers invalid"}
            ),
            1.0,
            "replay: 3 of 12 answers invalid",
        ),
        (
            VerifyJob(JobState.FAILED, None, "DeadlineExceeded"),
            1.0,
            "no container started within its timeout of 5m (ContainerCreating: no such configmap)",
        ),
        (VerifyJob(JobState.SUCCEEDED, None, "Completed"), 1.0, "finished without a result"),
        (
            VerifyJob(JobState.WAITING, None, "ErrImagePull: no such image"),
            301.0,
            "no container started within 5m (ErrImagePull: no such image)",
        ),
        (VerifyJob(JobState.RUNNING), 331.0, "still running"),
    ],
)
def test_a_verification_that_does_not_pass_rolls_back_with_its_reason(
    job: VerifyJob, after: float, reason: str
) -> None:
    run = verifying()
    run.tick(job=VerifyJob(JobState.WAITING, None, "ContainerCreating: no such configmap"))
    run.tick(after, job=job)
    assert run.phase() is Phase.ROLLED_BACK
    assert reason in run.status.rollback_reason
    assert run.status.rollback_reason.startswith("verification failed: ")
    verified = run.status.condition("Verified")
    assert verified is not None and verified.status == "False"


def test_a_job_that_ran_and_overran_its_deadline_says_so() -> None:
    run = verifying()
    run.tick(job=VerifyJob(JobState.RUNNING))
    run.tick(job=VerifyJob(JobState.FAILED, None, "DeadlineExceeded"))
    assert "exceeded its timeout of 5m" in run.status.rollback_reason


def test_a_job_never_started_keeps_the_last_reason_its_pod_gave() -> None:
    run = verifying()
    run.tick(job=VerifyJob(JobState.WAITING, None, "ContainerCreating: configmap not found"))
    run.tick(301.0, job=VerifyJob(JobState.WAITING))  # its pod gone by now: no reason left
    assert run.status.rollback_reason.endswith(
        "no container started within 5m (ContainerCreating: configmap not found)"
    )


def test_a_waiting_job_within_its_start_limit_waits() -> None:
    run = verifying()
    run.tick(200.0, job=VerifyJob(JobState.WAITING, None, "ContainerCreating"))
    assert run.phase() is Phase.VERIFYING
    assert run.status.verification is not None
    assert run.status.verification.state == "Waiting"


def test_the_job_is_built_from_the_candidate_without_its_labels_probes_or_sidecars() -> None:
    step = VERIFY.steps[0]
    candidate = {
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "scheduler", "track": "shadow"}},
                "spec": {
                    "containers": [
                        {"name": "scheduler", "image": "img:2",
                         "args": ["serve", "--model-dir", "/models/m", "--port=1"],
                         "readinessProbe": {"grpc": {"port": 50051}},
                         "ports": [{"containerPort": 50051}],
                         "volumeMounts": [{"name": "model", "mountPath": "/models"}]},
                        {"name": "proxy", "image": "envoy"},
                    ],
                    "volumes": [{"name": "model", "emptyDir": {}}],
                },
            }
        }
    }  # fmt: skip
    name = "scheduler-verify-1-abc"
    job = build_job(
        candidate, step, VERIFY.routing, namespace="plant", rollout="scheduler-1-5-0",
        name=name, owner_ref={"kind": "SchedulerRollout"},
    )  # fmt: skip
    pod = job["spec"]["template"]
    assert "app" not in pod["metadata"]["labels"]  # no Service selects it
    [container] = pod["spec"]["containers"]
    assert container["image"] == "img:2"
    assert "readinessProbe" not in container and "ports" not in container
    assert container["args"][:5] == [
        "verify-candidate", "--candidate", "scheduler-canary.plant.svc:50051",
        "--stable", "scheduler.plant.svc:50051",
    ]  # fmt: skip
    assert container["args"][-8:] == [
        "--concurrency", "4", "--load-requests", "100", "--p99-limit-seconds", "1",
        "--model-dir", "/models/m",
    ]  # fmt: skip
    assert pod["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 300
    assert {"name": "verify-requests", "configMap": {"name": "replay"}} in pod["spec"]["volumes"]


def test_the_replay_may_come_from_any_volume_such_as_a_snapshot_on_a_claim() -> None:
    spec = spec_with(
        [{"verify": {"replay": {"volume": {"persistentVolumeClaim": {"claimName": "data"}},
                                "subPath": "snapshots"}}}]
    )  # fmt: skip
    step = spec.steps[0]
    candidate = {"spec": {"template": {"spec": {"containers": [{"name": "scheduler"}]}}}}
    job = build_job(
        candidate, step, spec.routing, namespace="plant", rollout="r",
        name="s-verify-1-a", owner_ref={},
    )  # fmt: skip
    pod = job["spec"]["template"]["spec"]
    assert {"name": "verify-requests", "persistentVolumeClaim": {"claimName": "data"}} in pod[
        "volumes"
    ]
    [mount] = pod["containers"][0]["volumeMounts"]
    assert mount["subPath"] == "snapshots" and mount["mountPath"] == "/verify/requests"


def test_verify_args_name_the_api_key_file_when_a_secret_is_given() -> None:
    spec = spec_with([{"verify": {"replay": {"configMap": "r"}, "apiKeySecret": "key"}}])
    args = verify_args(spec.steps[0], spec.routing, "ns")
    assert args[-2:] == ["--api-key-file", "/verify/api-key/api-key"]
    assert "--concurrency" not in args


# --- sign-offs ------------------------------------------------------------------------------------


def at_approval() -> Run:
    run = verifying()
    run.tick(job=VerifyJob(JobState.SUCCEEDED, PASSED))
    run.tick(101.0, report=AnalysisReport(time=run.now + 101.0))
    assert run.phase() is Phase.AWAITING_APPROVAL, run.status.message
    return run


def signed(**roles: str) -> Commands:
    return Commands(sign_offs={r.replace("_", "-"): (u.split("@")[0], u) for r, u in roles.items()})


def test_every_role_signs_off_then_the_next_step() -> None:
    run = at_approval()
    assert run.status.gate == "sign-offs 0/2"
    run.tick(commands=signed(ops_manager="alice@1"))
    assert run.phase() is Phase.AWAITING_APPROVAL
    assert ("SignedOff", "step 3: ops-manager signed off by alice") in run.events()
    assert run.status.gate == "sign-offs 1/2"
    run.tick(commands=signed(ops_manager="alice@1", plant_manager="bob@1"))
    assert run.phase() is Phase.CANARY
    assert [(o.role, o.user) for o in run.status.sign_offs] == [
        ("ops-manager", "alice"),
        ("plant-manager", "bob"),
    ]
    approved = run.status.condition("Approved")
    assert approved is not None and approved.status == "True"
    assert approved.message == "step 3 signed off by ops-manager alice, plant-manager bob"


def test_a_plain_approve_does_not_pass_a_step_with_roles() -> None:
    run = at_approval()
    run.tick(commands=Commands(approve=True))
    assert run.phase() is Phase.AWAITING_APPROVAL
    assert run.events()[0][0] == "SignOffsRequired"


def test_a_sign_off_from_before_the_step_does_not_count() -> None:
    run = Run()
    old = signed(ops_manager="alice@old", plant_manager="bob@old")
    run.tick(commands=old)
    run.tick(commands=old)
    run.created()
    run.tick(job=VerifyJob(JobState.SUCCEEDED, PASSED), commands=old)
    run.tick(101.0, report=AnalysisReport(time=run.now + 101.0), commands=old)
    assert run.phase() is Phase.AWAITING_APPROVAL
    run.tick(commands=old)
    assert run.phase() is Phase.AWAITING_APPROVAL
    run.tick(commands=signed(ops_manager="alice@new", plant_manager="bob@new"))
    assert run.phase() is Phase.CANARY


def test_one_person_cannot_sign_off_as_two_roles() -> None:
    run = at_approval()
    run.tick(commands=signed(ops_manager="alice@1", plant_manager="alice@2"))
    assert run.phase() is Phase.AWAITING_APPROVAL
    assert any(reason == "SignOffNotCounted" for reason, _ in run.events())


def test_promote_is_refused_while_sign_offs_are_ahead_and_abort_is_not() -> None:
    run = verifying()
    run.tick(commands=Commands(promote=True), job=VerifyJob(JobState.RUNNING))
    assert run.phase() is Phase.VERIFYING
    assert run.events()[0][0] == "PromoteRefused"
    assert "ops-manager, plant-manager" in run.events()[0][1]
    run.tick(commands=Commands(abort=True), job=VerifyJob(JobState.RUNNING))
    assert run.phase() is Phase.ROLLED_BACK


# --- the sequential test --------------------------------------------------------------------------


def test_nine_worse_pairs_decide_worse_and_eight_do_not() -> None:
    assert sequential.decide(9, 0, 0).decision is Decision.WORSE
    assert sequential.decide(8, 0, 5).decision is Decision.UNDECIDED
    assert sequential.decide(0, 9, 0).decision is Decision.BETTER
    assert sequential.decide(0, 6, 0).decision is Decision.NOT_WORSE
    verdict = sequential.decide(9, 1, 2, mean_ratio=1.07)
    assert verdict.pairs == 12
    assert verdict.estimate == pytest.approx(0.9)
    assert verdict.ci_low is not None and verdict.ci_high is not None
    assert 0.55 < verdict.ci_low < 0.9 < verdict.ci_high <= 1.0


@pytest.mark.parametrize(("p_worse", "most"), [(0.5, 0.08), (0.7, 1.0)])
def test_the_false_rollback_rate_is_about_alpha_however_long_it_watches(
    p_worse: float, most: float
) -> None:
    """Judged after every pair and never stopped but by "worse", as the operator watches a
    shadow step: a candidate that is no worse is rolled back in at most about alpha / (1 - beta)
    of runs (Ville's inequality), a worse one nearly always."""
    rng = random.Random(16)
    runs, called_worse = 400, 0
    for _ in range(runs):
        worse = better = 0
        for _ in range(2000):
            if rng.random() < p_worse:
                worse += 1
            else:
                better += 1
            if sequential.decide(worse, better, 0).decision is Decision.WORSE:
                called_worse += 1
                break
    rate = called_worse / runs
    assert rate <= most
    if p_worse > 0.5:
        assert rate >= 0.95


class Counts:
    """A metrics provider answering the sequential test's queries from fixed counts."""

    def __init__(self, **counts: float | None) -> None:
        self.counts = counts

    def query(self, promql: str) -> float | NoData:
        for outcome in ("worse", "better", "equal"):
            if f'outcome="{outcome}"' in promql:
                value = self.counts.get(outcome)
                return NoData("no series") if value is None else value
        return 1.04


def shadow_round(provider: Counts, min_samples: int = 20) -> AnalysisReport:
    spec = spec_with(
        [{"shadow": {"duration": "100s"}}],
        shadowCompare={"test": "sequential", "minSamples": min_samples},
    )
    return analyse(
        spec.analysis, track="shadow", namespace="plant", rollout="r", shadow=True,
        now=T0, provider=provider, shadow_since=T0 - 30,
    )  # fmt: skip


def test_the_analysis_turns_pair_counts_into_the_shadow_check() -> None:
    worse = shadow_round(Counts(worse=9.2, better=0, equal=3))
    assert worse.shadow_compare is not None and worse.sequential is not None
    assert worse.shadow_compare.verdict is Verdict.BREACH
    assert worse.sequential.mean_ratio == pytest.approx(1.04)
    few = shadow_round(Counts(worse=2, better=1, equal=3))
    assert few.shadow_compare is not None and few.shadow_compare.verdict is Verdict.NO_DATA
    enough = shadow_round(Counts(worse=2, better=1, equal=30))
    assert enough.shadow_compare is not None and enough.shadow_compare.verdict is Verdict.PASS
    none = shadow_round(Counts())
    assert none.shadow_compare is not None and none.shadow_compare.verdict is Verdict.NO_DATA
    assert none.sequential is None


def sequential_run(**compare: Any) -> Run:
    spec = spec_with(
        [{"shadow": {"duration": "100s"}}, {"weight": 50, "duration": "100s"}],
        shadowCompare={"test": "sequential", **compare},
    )
    run = Run(spec)
    run.tick()
    run.tick()
    assert run.phase() is Phase.SHADOW
    return run


def test_a_worse_candidate_is_rolled_back_by_the_sequential_test() -> None:
    run = sequential_run()
    run.tick(10.0, report=shadow_round(Counts(worse=9, better=0, equal=1)))
    assert run.phase() is Phase.ROLLED_BACK
    assert run.status.rollback_reason.startswith(
        "candidate worse in shadow: shadow-sequential 10 pairs"
    )
    assert run.status.shadow_verdict is not None
    assert run.status.shadow_verdict.decision is Decision.WORSE


def test_a_better_candidate_leaves_shadow_early_only_when_asked() -> None:
    better = Counts(worse=0, better=9, equal=0)
    run = sequential_run()
    run.tick(10.0, report=replace(shadow_round(better), time=T0 + 12.0))
    assert run.phase() is Phase.SHADOW
    assert run.status.gate == "pairs 9 better"
    early = sequential_run(promoteEarly=True)
    early.tick(10.0, report=replace(shadow_round(better), time=T0 + 12.0))
    assert early.phase() is Phase.CANARY
    assert any(reason == "ShadowBetter" for reason, _ in early.events())
    assert early.status.shadow_verdict is not None  # kept for the record after shadow


# --- the spec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"approval": {"roles": ["Ops Manager"]}}, "spec.steps[0].approval.roles[0]"),
        ({"approval": {"roles": ["ops", "ops"]}}, "spec.steps[0].approval.roles[1]"),
        ({"verify": {}}, "spec.steps[0].verify.replay"),
        ({"verify": {"replay": {}}}, "spec.steps[0].verify.replay"),
        ({"verify": {"replay": {"volume": {"name": "x", "emptyDir": {}}}}},
         "spec.steps[0].verify.replay.volume"),
        ({"verify": {"replay": {"configMap": "r", "subPath": "../etc"}}},
         "spec.steps[0].verify.replay.subPath"),
        ({"verify": {"replay": {"configMap": "r"}, "maxMakespanRatio": 0}},
         "spec.steps[0].verify.maxMakespanRatio"),
        ({"verify": {"replay": {"configMap": "r"}, "load": {"concurrency": 0}}},
         "spec.steps[0].verify.load.concurrency"),
        ({"verify": {"replay": {"configMap": "r"}}, "weight": 10}, "spec.steps[0]"),
    ],
)  # fmt: skip
def test_a_bad_gate_names_its_field(step: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_with([step])
    assert caught.value.field == field


def test_the_sequential_test_needs_the_app_mirror() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "targetRef": {"name": "s"},
                "candidate": {"image": "i"},
                "routing": {**ROUTING, "mirror": "route"},
                "analysis": {"shadowCompare": {"test": "sequential"}},
            }
        )
    assert caught.value.field == "spec.analysis.shadowCompare.test"
    with pytest.raises(SpecError) as early:
        spec_with([{"weight": 1, "duration": "1s"}], shadowCompare={"promoteEarly": True})
    assert early.value.field == "spec.analysis.shadowCompare.promoteEarly"


def test_a_verify_step_keeps_the_candidate_out_of_the_stable_service_and_needs_a_route() -> None:
    spec = spec_with([{"verify": {"replay": {"configMap": "r"}}}, {"weight": 10, "duration": "1s"}])
    assert track_at(spec.steps, 0) == "shadow"  # hidden from the stable Service, as a shadow
    assert track_at(spec.steps, 1) == "canary"
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "targetRef": {"name": "s"},
                "candidate": {"image": "i"},
                "routing": {"provider": "replicas", "stableService": "a", "canaryService": "b"},
                "steps": [{"verify": {"replay": {"configMap": "r"}}}],
            }
        )
    assert caught.value.field == "spec.steps[0].verify"


def test_status_round_trips_the_gates() -> None:
    run = at_approval()
    run.tick(commands=signed(ops_manager="alice@1"))
    back = RolloutStatus.from_dict(run.status.to_dict())
    assert back == run.status
