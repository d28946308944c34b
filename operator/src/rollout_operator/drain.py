"""Drain before the candidate's pods go: a rollback or a promotion takes the candidate's pods
away only once the gateway routes no call to them.

A gateway drops a pod from its backends as soon as the pod is not ready, which is the moment
its deletion starts, whatever its ``preStop`` hook: if the route still sends the candidate a
share, those calls find no backend and fail (Traefik answers 503, seen in the fault drills). So
after writing the route back to 100 % stable the operator waits until the gateway reports that
route in force (the route's ``Accepted`` at its new generation, ``Router.acceptance``), then a
short delay for the data plane to load what it accepted (Traefik applies its configuration after
its provider throttle, 2 s by default), and only then scales the candidate down. Argo Rollouts
waits a blind ``scaleDownDelaySeconds``; this waits for the gateway's word, and never longer
than ``ACCEPT_TIMEOUT_S``: a rollback is not held hostage by a gateway that never answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rollout_operator.routers.base import RouteAcceptance

log = logging.getLogger(__name__)

DEFAULT_DRAIN_S = 2.0  # Traefik's default providersThrottleDuration
ACCEPT_TIMEOUT_S = 10.0
POLL_S = 0.1


def drain(
    acceptance: Callable[[], RouteAcceptance],
    delay_s: float,
    *,
    what: str,
    timeout_s: float = ACCEPT_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RouteAcceptance:
    """Wait until ``acceptance()`` is in force (at most ``timeout_s``), then ``delay_s``; the
    last verdict. ``what`` names the route in the warning when it never came into force."""
    deadline = clock() + timeout_s
    verdict = acceptance()
    while not verdict.in_force and clock() < deadline:
        sleep(POLL_S)
        verdict = acceptance()
    if not verdict.in_force:
        log.warning(
            "%s not in force after %.0fs (%s: %s); taking the candidate down anyway",
            what, timeout_s, verdict.state, verdict.message,
        )  # fmt: skip
    if delay_s > 0:
        sleep(delay_s)
    return verdict
