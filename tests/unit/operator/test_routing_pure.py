"""The pure parts of routing and workloads: replica plans, the candidate template, the mirror
JSON, and the provider registry's refusal of an unknown name."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from rollout_operator.mirror_config import render
from rollout_operator.model import CandidateSpec, RoutingSpec
from rollout_operator.routers import RouterError, make_router
from rollout_operator.routers.replicas import plan_replicas
from rollout_operator.workloads import WorkloadError, candidate_template

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("stable", "weight", "mirror", "expected"),
    [
        (9, 10, 0, (9, 1)),
        (9, 25, 0, (9, 3)),
        (9, 50, 0, (9, 9)),
        (9, 100, 0, (0, 9)),
        (9, 0, 0, (9, 0)),
        (9, 0, 10, (9, 1)),  # shadow: one pod receives the copies
        (3, 10, 0, (3, 1)),  # never 0 pods for a non-zero weight
        (3, 50, 0, (3, 3)),
        (4, 20, 0, (4, 1)),
        (2, 60, 0, (2, 3)),
        (0, 50, 0, (0, 1)),  # a stable scaled to 0 by its owner stays at 0
        (0, 100, 0, (0, 1)),
    ],
)
def test_plan_replicas(stable: int, weight: int, mirror: int, expected: tuple[int, int]) -> None:
    assert plan_replicas(stable, weight, mirror) == expected


def _template(labels: dict[str, str]) -> dict[str, Any]:
    env = [{"name": "SCHEDULER_TRACK", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "a:1", "env": env}]},
    }


def test_candidate_template_first_container_and_env_override() -> None:
    stable = _template({"app": "s", "track": "stable"})
    out = candidate_template(
        stable, CandidateSpec(image="a:2"), track="canary", target="s", rollout="r"
    )
    container = out["spec"]["containers"][0]
    assert container["image"] == "a:2"
    assert container["env"] == [{"name": "SCHEDULER_TRACK", "value": "canary"}]
    assert stable["spec"]["containers"][0]["image"] == "a:1"  # input untouched


def test_shadow_labels_never_complete_the_stable_service_selector() -> None:
    stable = _template({"app": "s", "tier": "api", "track": "stable"})
    hide = {"app": "s", "tier": "api"}
    out = candidate_template(
        stable, CandidateSpec(), track="shadow", target="s", rollout="r", hide_from=hide
    )
    labels = out["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in hide.items())
    with pytest.raises(WorkloadError, match="candidate's own labels"):
        candidate_template(
            stable,
            CandidateSpec(),
            track="shadow",
            target="s",
            rollout="r",
            hide_from={"track": "shadow"},
        )


def test_no_containers_is_an_error() -> None:
    with pytest.raises(WorkloadError, match="no containers"):
        candidate_template({"spec": {}}, CandidateSpec(), track="canary", target="s", rollout="r")


def test_mirror_json() -> None:
    assert json.loads(render("c:1", 10)) == {"target": "c:1", "percent": 10, "timeout_ms": 30000}
    assert json.loads(render("c:1", 0)) == {"target": None, "percent": 0, "timeout_ms": 30000}
    assert json.loads(render(None, 30)) == {"target": None, "percent": 0, "timeout_ms": 30000}
    for bad in ({"percent": True}, {"percent": 10, "timeout_ms": 0}, {"target": ":80"}):
        args = {"target": "c:1", "percent": 10, **bad}
        with pytest.raises(ValueError):
            render(args.pop("target"), args.pop("percent"), **args)


def test_unknown_provider_is_refused_naming_the_field() -> None:
    routing = RoutingSpec("linkerd", "r", "s", "c")
    with pytest.raises(RouterError, match="unknown routing provider 'linkerd'") as err:
        make_router(routing, "ns", client.ApiClient(), target="s")
    assert err.value.field == "spec.routing.provider"
    assert "gatewayAPI, istio, replicas" in str(err.value)
