"""Draining before the candidate goes: wait for the gateway's word, then the data plane's delay,
and never longer than the timeout."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from rollout_operator.drain import ACCEPT_TIMEOUT_S, POLL_S, drain
from rollout_operator.routers.base import NOT_REPORTED, RouteAcceptance

PENDING = RouteAcceptance("Pending", "gw has not reported generation 3 yet")
ACCEPTED = RouteAcceptance("Accepted", "generation 3 accepted by gw")
REJECTED = RouteAcceptance("Rejected", "gw: ResolvedRefs False")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def verdicts(*answers: RouteAcceptance) -> Callable[[], RouteAcceptance]:
    queue = list(answers)
    return lambda: queue.pop(0) if len(queue) > 1 else queue[0]


def test_waits_for_acceptance_then_the_delay() -> None:
    t = FakeTime()
    got = drain(verdicts(PENDING, PENDING, ACCEPTED), 2.0, what="route", sleep=t.sleep,
                clock=t.clock)  # fmt: skip
    assert got == ACCEPTED
    assert t.slept == [POLL_S, POLL_S, 2.0]


def test_a_route_nobody_reports_on_waits_only_the_delay() -> None:
    t = FakeTime()
    assert drain(lambda: NOT_REPORTED, 1.5, what="route", sleep=t.sleep, clock=t.clock).in_force
    assert t.slept == [1.5]


def test_a_gateway_that_never_accepts_holds_the_candidate_only_until_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = FakeTime()
    caplog.set_level(logging.WARNING)
    got = drain(lambda: REJECTED, 0.0, what="GRPCRoute ns/scheduler", sleep=t.sleep,
                clock=t.clock)  # fmt: skip
    assert got == REJECTED
    assert ACCEPT_TIMEOUT_S <= t.now < ACCEPT_TIMEOUT_S + 2 * POLL_S
    assert "GRPCRoute ns/scheduler not in force" in caplog.text
    assert "ResolvedRefs False" in caplog.text
