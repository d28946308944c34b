"""When a rollout is reconciled next (`plan.next_reconcile_at`), the per-rollout wake-ups
(`wakeups.py`), the task that sleeps until a reconcile is due (`handlers.Driver.drive`), and the
work a reconcile no longer repeats (a Deployment or route read, kopf's copy of the rollout,
steady effects applied a moment ago)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout_operator import workloads
from rollout_operator.actions import (
    EnsureCandidate,
    PromoteStable,
    ScaleDownCandidate,
    SetTraffic,
)
from rollout_operator.handlers import RESYNC_S, Driver
from rollout_operator.model import Commands, Phase
from rollout_operator.plan import PROGRESS_DEADLINE_S, Wakeup, next_reconcile_at
from rollout_operator.reconcile import Reconciled, Reconciler, SteadyEffects
from rollout_operator.routers.base import RouteAcceptance
from rollout_operator.routers.gatewayapi import GRPCROUTE
from rollout_operator.routers.routes import RouteObject
from rollout_operator.status import RolloutStatus
from rollout_operator.wakeups import WAKE_MARGIN_S, Gate, Wakeups, sleep_until
from tests.unit.operator.rollout_cases import (
    CANARY_S,
    FULL_S,
    INTERVAL_S,
    SHADOW_S,
    SPEC,
    no_data,
)
from tests.unit.operator.rollout_cases import Driver as Machine

pytestmark = pytest.mark.unit

POLL_S, LONG_RESYNC_S = 0.5, 60.0  # a resync longer than the 10 s interval: the rounds show


def wakeup(machine: Machine, resync_s: float = LONG_RESYNC_S) -> Wakeup | None:
    return next_reconcile_at(
        machine.spec, machine.status, machine.now, poll_s=POLL_S, resync_s=resync_s
    )


def next_at(machine: Machine, resync_s: float = LONG_RESYNC_S) -> float | None:
    due = wakeup(machine, resync_s)
    return None if due is None else due.at


def in_shadow() -> Machine:
    machine = Machine()
    machine.tick()
    assert machine.status.phase is Phase.SHADOW
    return machine


def awaiting() -> Machine:
    machine = in_shadow()
    machine.finish_step(SHADOW_S)
    while machine.status.phase is not Phase.AWAITING_APPROVAL:
        machine.finish_step(CANARY_S)
    return machine


# --- next_reconcile_at --------------------------------------------------------------------------


def test_a_step_just_entered_is_polled_until_its_first_round() -> None:
    machine = in_shadow()  # entered now, no round yet: due at once, and the route to check
    assert next_at(machine) == pytest.approx(machine.now + POLL_S)


def test_after_a_round_the_next_round_is_due_one_interval_later() -> None:
    machine = in_shadow()
    machine.analysed(after=3)
    assert machine.status.last_analysis is not None
    due = machine.status.last_analysis.time + INTERVAL_S
    assert wakeup(machine) == Wakeup(pytest.approx(due), transition=False)  # routine


def test_a_step_ending_before_the_next_round_is_due_at_its_end() -> None:
    machine = in_shadow()
    started = machine.status.step_started_at
    assert started is not None
    machine.analysed(after=SHADOW_S - 4)  # the next round would come 6 s after the step's end
    assert wakeup(machine) == Wakeup(pytest.approx(started + SHADOW_S), transition=True)
    machine.tick(SHADOW_S - (machine.now - started))  # reconciled right then: the step ends
    assert (machine.status.phase, machine.status.step) == (Phase.CANARY, 1)


def test_a_step_held_for_data_waits_for_the_next_round_not_in_a_loop() -> None:
    machine = in_shadow()
    for _ in range(int(SHADOW_S // INTERVAL_S) + 2):  # past the step's end, never any data
        machine.tick(INTERVAL_S, no_data(machine.now + INTERVAL_S))
    assert machine.status.phase is Phase.SHADOW and "holding" in machine.status.message
    assert machine.status.last_analysis is not None
    due = next_at(machine)
    assert due is not None and due > machine.now
    assert due == pytest.approx(machine.status.last_analysis.time + INTERVAL_S)


def test_a_steady_step_is_resynced_within_the_bound() -> None:
    machine = in_shadow()
    machine.analysed(after=3)
    assert next_at(machine, resync_s=RESYNC_S) == pytest.approx(machine.now + RESYNC_S)


@pytest.mark.parametrize(
    "case",
    ["pending", "candidate down mid-step", "route not taken", "round not counted", "promoting"],
)
def test_a_rollout_waiting_on_the_cluster_is_polled(case: str) -> None:
    machine = in_shadow()
    machine.analysed(after=3)
    if case == "pending":
        machine = Machine()
        machine.tick(available=False)
        assert machine.status.phase is Phase.PENDING
    elif case == "candidate down mid-step":
        machine.tick(1, available=False)
        assert machine.status.candidate_unavailable_since is not None
    elif case == "route not taken":
        machine.route = RouteAcceptance("Pending", "the gateway has not seen generation 2")
        machine.tick(1)
        assert machine.status.route_pending_since is not None
    elif case == "round not counted":  # approval step, route pending: its rounds are dropped
        machine = awaiting()
        machine.route = RouteAcceptance("Pending", "the gateway has not seen generation 9")
        machine.tick(INTERVAL_S + 1)
    else:
        machine = awaiting()
        machine.tick(1, commands=Commands(approve=True))
        machine.finish_step(FULL_S)
        assert machine.status.phase is Phase.PROMOTING
        machine.tick(1, stable=False)
    assert next_at(machine) == pytest.approx(machine.now + POLL_S)


def test_a_finished_rollout_is_never_due() -> None:
    machine = in_shadow()
    machine.tick(1, commands=Commands(abort=True))
    assert machine.status.phase is Phase.ROLLED_BACK
    assert next_at(machine) is None


def test_a_deadline_shorter_than_the_poll_is_due_at_the_deadline() -> None:
    machine = Machine()
    machine.tick(available=False)
    due = next_reconcile_at(
        machine.spec, machine.status, machine.now, poll_s=30.0, resync_s=60.0,
        progress_deadline_s=10.0,
    )  # fmt: skip
    assert due == Wakeup(pytest.approx(machine.now + 10.0), transition=True)


# --- Wakeups ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_rollout_never_reconciled_here_is_due_at_once() -> None:
    assert Wakeups(max_sleep_s=5, clock=Clock()).due_in("new") == 0


def test_the_wait_runs_to_the_moment_and_never_past_the_bound() -> None:
    clock = Clock()
    wakeups = Wakeups(max_sleep_s=5, clock=clock)
    wakeups.set("a", Wakeup(clock.now + 2))
    assert wakeups.due_in("a") == pytest.approx(2 + WAKE_MARGIN_S)
    wakeups.set("a", Wakeup(clock.now + 3600))  # a wall clock set back must not stall it
    assert wakeups.due_in("a") == 5
    wakeups.set("a", None)  # finished: a look after the bound, should its task still run
    assert wakeups.due_in("a") == 5
    wakeups.set("a", Wakeup(clock.now - 1))
    assert wakeups.due_in("a") == 0
    wakeups.set("b", Wakeup(clock.now + 2))
    wakeups.forget("b")
    assert wakeups.due_in("b") == 0


async def test_a_new_moment_set_from_a_pool_thread_wakes_the_sleeper() -> None:
    wakeups = Wakeups(max_sleep_s=30)
    with wakeups.waiter("a") as woken:
        began = time.monotonic()
        setter = threading.Timer(0.05, wakeups.set, args=("a", Wakeup(time.time())))
        setter.start()
        await sleep_until(10.0, woken.wait())
        setter.join()
    assert time.monotonic() - began < 2.0
    assert wakeups.due_in("a") == 0


async def test_sleep_until_runs_its_time_when_nothing_wakes_it() -> None:
    began = time.monotonic()
    await sleep_until(0.05, asyncio.Event().wait())
    assert 0.04 <= time.monotonic() - began < 2.0


# --- Driver.drive: the task per rollout ----------------------------------------------------------


class Stopped:
    """Stands in for kopf's ``stopped`` flag of an async daemon."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self) -> Any:
        return self.event.wait()


def rollout_body(version: str) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": "r", "uid": "u", "resourceVersion": version}
    return {"metadata": meta, "spec": {}}


class FakeCustom:
    def __init__(self) -> None:
        self.gets = 0

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.gets += 1
        return rollout_body("7")


class FakeReconciler:
    """Each reconcile takes a round now (the next one is due an interval later); the first
    ``failures`` reconciles raise."""

    progress_deadline_s = PROGRESS_DEADLINE_S

    def __init__(self, failures: int = 0) -> None:
        self.custom = FakeCustom()
        self.calls: list[float] = []
        self.failures = failures
        self.seen: list[Any] = []
        machine = in_shadow()
        machine.analysed(after=3)
        self.status = machine.status

    def reconcile(self, rollout: Any) -> Reconciled:
        now = time.time()
        self.calls.append(now)
        if len(self.calls) <= self.failures:
            raise ApiException(status=500, reason="apiserver hiccup")
        assert self.status.last_analysis is not None
        last = replace(self.status.last_analysis, time=now)
        status = replace(self.status, last_analysis=last, step_started_at=now - 10)
        self.seen.append(rollout.body)
        return Reconciled(status, SPEC, now, version="7")


async def settle(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def test_the_task_reconciles_at_once_then_sleeps_until_woken_and_stops_on_request() -> None:
    fake = FakeReconciler()
    driver = Driver(cast(Reconciler, fake), tick_s=POLL_S)
    stopped = Stopped()
    task = asyncio.create_task(driver.drive(stopped, "ns", "r", "u"))
    await settle(lambda: len(fake.calls) == 1)
    await asyncio.sleep(0.3)
    assert len(fake.calls) == 1  # the next round is due 10 s on (bounded by the 5 s resync)
    assert driver.wakeups.due_in("u") > 4
    # A change of the object, reconciled in a pool thread, names an earlier moment: woken.
    threading.Thread(target=driver.wakeups.set, args=("u", Wakeup(time.time()))).start()
    await settle(lambda: len(fake.calls) == 2)
    assert len(fake.calls) == 2
    stopped.event.set()
    await asyncio.wait_for(task, timeout=2.0)
    assert driver.wakeups.due_in("u") == 0  # forgotten: restarted by a retry, it goes at once


async def test_a_failed_reconcile_is_retried_a_poll_later() -> None:
    fake = FakeReconciler(failures=1)
    driver = Driver(cast(Reconciler, fake), tick_s=0.05)
    stopped = Stopped()
    task = asyncio.create_task(driver.drive(stopped, "ns", "r", "u"))
    await settle(lambda: len(fake.calls) == 2)
    stopped.event.set()
    await asyncio.wait_for(task, timeout=2.0)
    assert len(fake.calls) == 2
    assert fake.calls[1] - fake.calls[0] < 1.0  # a tick later, not kopf's 60 s backoff


# --- one read per object and reconcile ----------------------------------------------------------


def deployment(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "scheduler"}]}}},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                   "availableReplicas": 2},
    }  # fmt: skip


def test_a_reconcile_reads_each_deployment_once_and_afresh_after_a_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[str] = []

    def read(self: Any, name: str, namespace: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(name)
        if name.endswith("-candidate"):
            raise ApiException(status=404, reason="Not Found")
        return deployment(name)

    monkeypatch.setattr(client.AppsV1Api, "read_namespaced_deployment", read)
    monkeypatch.setattr(client.AppsV1Api, "patch_namespaced_deployment", lambda *a, **k: {})
    apps = workloads.ReadOnceAppsApi(client.ApiClient())
    assert workloads.stable_available(apps, "ns", "scheduler")
    assert workloads.stable_replicas(apps, "ns", "scheduler") == 2
    assert workloads.stable_revision(apps, "ns", "scheduler")
    assert not workloads.candidate_available(apps, "ns", "scheduler")
    assert not workloads.candidate_available(apps, "ns", "scheduler")  # the 404, remembered
    assert reads == ["scheduler", "scheduler-candidate"]
    workloads.scale_down_candidate(apps, "ns", "scheduler")  # a write: everything afresh
    assert workloads.stable_available(apps, "ns", "scheduler")
    assert reads == ["scheduler", "scheduler-candidate", "scheduler"]
    fresh = workloads.ReadOnceAppsApi(client.ApiClient())  # the next reconcile: its own reads
    workloads.stable_available(fresh, "ns", "scheduler")
    assert reads.count("scheduler") == 3


class FakeRoutes:
    """A GRPCRoute on a fake API server; ``conflicts`` replaces answer 409 first."""

    def __init__(self, conflicts: int = 0) -> None:
        self.obj: dict[str, Any] = {"metadata": {"resourceVersion": "1"}, "spec": {"w": 0}}
        self.gets = 0
        self.replaced: list[dict[str, Any]] = []
        self.conflicts = conflicts

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.gets += 1
        return {"metadata": dict(self.obj["metadata"]), "spec": dict(self.obj["spec"])}

    def replace_namespaced_custom_object(self, *args: Any) -> None:
        if self.conflicts:
            self.conflicts -= 1
            self.obj["metadata"]["resourceVersion"] += "'"  # someone else wrote meanwhile
            raise ApiException(status=409, reason="Conflict")
        self.replaced.append(args[-1])


def set_weight(weight: int) -> Any:
    return lambda spec: spec.update(w=weight)


def test_the_route_read_for_its_acceptance_is_the_one_set_traffic_writes() -> None:
    api = FakeRoutes()
    route = RouteObject(cast(client.CustomObjectsApi, api), GRPCROUTE, "ns", "scheduler")
    route.read(keep=True)
    route.update(set_weight(10))
    assert (api.gets, [r["spec"] for r in api.replaced]) == (1, [{"w": 10}])
    route.update(set_weight(25))  # the kept copy is used once: the next update reads
    assert api.gets == 2


def test_a_kept_route_gone_stale_costs_a_conflict_and_a_fresh_read() -> None:
    api = FakeRoutes(conflicts=1)
    route = RouteObject(cast(client.CustomObjectsApi, api), GRPCROUTE, "ns", "scheduler")
    route.read(keep=True)
    route.update(set_weight(10))
    assert api.gets == 2
    assert api.replaced[-1]["metadata"]["resourceVersion"] == "1'"  # written on the fresh copy


def test_status_round_trip_keeps_the_moment() -> None:
    """What a restarted operator reads back names the same next moment (the task of a resumed
    rollout sleeps towards the same step end)."""
    machine = in_shadow()
    machine.analysed(after=3)
    before = next_at(machine)
    machine.status = RolloutStatus.from_dict(machine.status.to_dict())
    assert next_at(machine) == before


def test_kopfs_copy_is_used_only_when_it_is_the_version_the_last_reconcile_left() -> None:
    fake = FakeReconciler()
    driver = Driver(cast(Reconciler, fake), tick_s=POLL_S)
    driver.run("ns", "r", "u")  # nothing known yet: read from the API server
    assert fake.custom.gets == 1
    ours = rollout_body("7")  # what the reconcile left (its status patch's version)
    known = driver.current("u", ours)
    assert known == ours and known is not ours  # a copy: kopf swaps its own as events come
    driver.run("ns", "r", "u", known)
    assert fake.custom.gets == 1 and fake.seen[-1] == ours
    assert driver.current("u", rollout_body("6")) is None  # older than ours: read afresh
    driver._versions["u"] = "8"  # a change handler reconciled while this one waited
    driver.run("ns", "r", "u", known)
    assert fake.custom.gets == 2


async def test_the_gate_lets_transitions_pass_routine_reconciles() -> None:
    gate = Gate(slots=1)
    order: list[str] = []

    async def reconcile(name: str, wakeup: Wakeup) -> None:
        async with gate.slot(wakeup):
            order.append(name)
            await asyncio.sleep(0.01)

    holder = asyncio.create_task(reconcile("holder", Wakeup(0.0)))
    await asyncio.sleep(0)  # it holds the only slot
    waiting = [
        asyncio.create_task(reconcile("round at 1", Wakeup(1.0))),
        asyncio.create_task(reconcile("round at 2", Wakeup(2.0))),
        asyncio.create_task(reconcile("step end at 3", Wakeup(3.0, transition=True))),
    ]
    cancelled = asyncio.create_task(reconcile("cancelled", Wakeup(0.5, transition=True)))
    await asyncio.sleep(0)
    cancelled.cancel()  # a task stopped while it waits must not keep a slot
    await asyncio.gather(holder, *waiting)
    assert order == ["holder", "step end at 3", "round at 1", "round at 2"]
    async with gate.slot(Wakeup(9.0)):  # and the slot is free again
        pass


def test_steady_effects_are_applied_again_when_changed_or_every_reassertion() -> None:
    steady = SteadyEffects(reassert_s=5.0)
    at_10 = [EnsureCandidate("canary"), SetTraffic(10)]
    assert not steady.in_force("u", 1, at_10, 100.0)  # never applied (a restart: at once)
    steady.applied("u", 1, at_10, 100.0)
    assert steady.in_force("u", 1, at_10, 104.9)  # the next rounds skip them
    assert not steady.in_force("u", 1, at_10, 105.0)  # re-asserted: drift repaired
    assert not steady.in_force("u", 1, [EnsureCandidate("canary"), SetTraffic(25)], 101.0)
    assert not steady.in_force("u", 1, [EnsureCandidate("canary"), SetTraffic(0)], 101.0)
    assert not steady.in_force("u", 2, at_10, 101.0)  # the spec was edited
    assert not steady.in_force("v", 1, at_10, 101.0)  # another rollout
    rollback = [SetTraffic(0), ScaleDownCandidate()]
    steady.applied("u", 1, rollback, 102.0)  # not steady: never skipped, and the rest forgotten
    assert not steady.in_force("u", 1, rollback, 102.5)
    assert not steady.in_force("u", 1, at_10, 102.5)
    promoting = [PromoteStable(), SetTraffic(50)]
    steady.applied("u", 1, promoting, 103.0)
    assert not steady.in_force("u", 1, promoting, 103.5)
    steady.applied("u", 1, at_10, 104.0)
    steady.forget("u")  # about to apply: a failure midway must not leave them "in force"
    assert not steady.in_force("u", 1, at_10, 104.5)
