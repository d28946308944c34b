"""A weight counts once the gateway took it: the GRPCRoute parents' conditions, read into one
verdict, and what the state machine does with it."""

from __future__ import annotations

from typing import Any

import pytest

from rollout_operator.model import Phase
from rollout_operator.plan import PROGRESS_DEADLINE_S
from rollout_operator.routers.base import RouteAcceptance
from rollout_operator.routers.gatewayapi import parents_acceptance
from rollout_operator.status import ROUTE_ACCEPTED
from tests.unit.operator.rollout_cases import SHADOW_S, Driver

pytestmark = pytest.mark.unit

PENDING = RouteAcceptance("Pending", "traefik.io/gateway-controller has not reported generation 3")
ACCEPTED = RouteAcceptance("Accepted", "generation 3 accepted by traefik.io/gateway-controller")
REJECTED = RouteAcceptance("Rejected", "BackendNotFound: Service scheduler-canary not found")


def parent(generation: int, accepted: str = "True", resolved: str = "True") -> dict[str, Any]:
    def condition(type_: str, status: str) -> dict[str, Any]:
        reason = "Accepted" if status == "True" else "BackendNotFound"
        return {"type": type_, "status": status, "reason": reason,
                "message": f"{type_} {status}", "observedGeneration": generation}  # fmt: skip

    return {
        "parentRef": {"name": "plant-gateway"},
        "controllerName": "traefik.io/gateway-controller",
        "conditions": [condition("Accepted", accepted), condition("ResolvedRefs", resolved)],
    }


def test_no_parent_status_is_not_reported_and_in_force() -> None:
    verdict = parents_acceptance(3, [])
    assert verdict.state == "NotReported" and verdict.in_force


def test_the_current_generation_accepted_by_every_parent() -> None:
    verdict = parents_acceptance(3, [parent(3), parent(4)])
    assert verdict.state == "Accepted" and verdict.in_force
    assert "generation 3" in verdict.message and "traefik.io" in verdict.message


def test_a_parent_behind_the_generation_is_pending() -> None:
    verdict = parents_acceptance(3, [parent(3), parent(2)])
    assert verdict.state == "Pending" and not verdict.in_force
    assert "has not reported generation 3" in verdict.message


def test_unresolved_refs_or_not_accepted_is_rejected_with_the_gateways_words() -> None:
    verdict = parents_acceptance(3, [parent(3, resolved="False")])
    assert verdict.state == "Rejected" and not verdict.in_force
    assert "ResolvedRefs False (BackendNotFound: ResolvedRefs False)" in verdict.message
    assert parents_acceptance(3, [parent(3, accepted="False")]).state == "Rejected"
    # an old rejection says nothing about the current generation
    assert parents_acceptance(3, [parent(2, accepted="False")]).state == "Pending"


def to_first_canary_step() -> Driver:
    driver = Driver()
    driver.tick()
    driver.finish_step(SHADOW_S)
    assert driver.status.phase is Phase.CANARY and driver.status.weight == 10
    return driver


def test_a_step_waits_for_its_route_and_its_clock_starts_at_acceptance() -> None:
    driver = to_first_canary_step()
    entered = driver.status.step_started_at
    assert entered is not None
    driver.route = PENDING
    for _ in range(15):  # 150 s of good rounds, past the step's 100 s: not counted
        driver.analysed()
    assert driver.status.phase is Phase.CANARY and driver.status.step == 1
    assert driver.status.route_pending_since is not None
    assert driver.status.last_analysis is None or driver.status.last_analysis.time <= entered
    condition = driver.status.condition(ROUTE_ACCEPTED)
    assert condition is not None and (condition.status, condition.reason) == ("Unknown", "Pending")
    assert "route not in force yet" in driver.status.message
    driver.route = ACCEPTED
    driver.analysed()
    accepted_at = driver.status.step_started_at
    assert accepted_at == driver.now and driver.status.route_pending_since is None
    condition = driver.status.condition(ROUTE_ACCEPTED)
    assert condition is not None and condition.status == "True"
    driver.finish_step(100.0)  # the step's full duration, counted from the acceptance
    assert driver.status.step == 2 and driver.now - accepted_at >= 100.0


def test_a_route_rejected_past_the_deadline_rolls_back_naming_the_gateways_reason() -> None:
    driver = to_first_canary_step()
    driver.route = REJECTED
    driver.analysed()
    condition = driver.status.condition(ROUTE_ACCEPTED)
    assert condition is not None and (condition.status, condition.reason) == ("False", "Rejected")
    assert driver.status.phase is Phase.CANARY
    driver.tick(PROGRESS_DEADLINE_S)
    final = driver.status
    assert final.phase is Phase.ROLLED_BACK
    assert "route not in force" in final.rollback_reason
    assert "BackendNotFound" in final.rollback_reason


def test_a_route_nobody_reports_on_changes_nothing() -> None:
    driver = to_first_canary_step()
    driver.finish_step(100.0)
    assert driver.status.step == 2
    assert driver.status.condition(ROUTE_ACCEPTED) is None
