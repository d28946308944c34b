"""parse_spec: defaults without the API server, and every error a schema cannot catch, by field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator import durations
from rollout_operator.model import (
    ApprovalStep,
    Comparison,
    LoadTest,
    NoDataPolicy,
    Provider,
    ShadowCompare,
    ShadowStep,
    ShadowTest,
    VerifyStep,
    WeightStep,
)
from rollout_operator.spec import (
    DEFAULT_ROLLBACK,
    DEFAULT_STEPS,
    DEFAULT_WARN,
    SpecError,
    parse_spec,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
MINIMAL: dict[str, Any] = {
    "targetRef": {"name": "scheduler"},
    "candidate": {"image": "registry.example/scheduler:1.5.0"},
    "routing": {
        "provider": "gatewayAPI",
        "route": "scheduler",
        "stableService": "scheduler",
        "canaryService": "scheduler-canary",
    },
}


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "schedulerrollouts.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]


def with_changes(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with ``value`` at a dotted path (``None`` deletes); list indexes as numbers."""
    spec = copy.deepcopy(MINIMAL)
    keys = path.split(".")
    node: Any = spec
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return spec


def test_minimal_spec_gets_the_standard_plan_and_rules() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.target == "scheduler"
    assert spec.steps == (
        ShadowStep(5 * 86400, 100),
        WeightStep(10, 2 * 86400),
        WeightStep(25, 2 * 86400),
        WeightStep(50, 2 * 86400),
        ApprovalStep(),
        WeightStep(100, 86400),
    )
    analysis = spec.analysis
    assert analysis.interval_s == 60
    assert analysis.no_data is NoDataPolicy.HOLD
    assert analysis.no_data_limit == 10
    assert [(r.name, r.comparison, r.threshold, r.for_) for r in analysis.rollback] == [
        ("completion-rate", Comparison.BELOW, 0.90, 2),
        ("latency-p95-seconds", Comparison.ABOVE, 10.0, 3),
        ("error-rate", Comparison.ABOVE, 0.05, 2),
    ]
    assert [(r.name, r.threshold, r.for_) for r in analysis.warn] == [
        ("completion-rate", 0.95, 1),
        ("latency-p95-seconds", 5.0, 1),
        ("memory-utilisation", 0.90, 1),
    ]
    assert all(r.query == "" for r in (*analysis.rollback, *analysis.warn))  # built-ins
    assert analysis.shadow_compare == ShadowCompare(0.0, "")
    assert spec.routing.provider is Provider.GATEWAY_API
    assert spec.routing.port == 50051
    assert spec.webhook_url == ""


def test_crd_defaults_are_the_parser_defaults() -> None:
    """The schema's defaults (applied by the API server) and spec.py's mean the same plan."""
    props = crd_schema()
    analysis = props["analysis"]["properties"]
    assert props["steps"]["default"] == list(DEFAULT_STEPS)
    assert analysis["rollback"]["default"] == list(DEFAULT_ROLLBACK)
    assert analysis["warn"]["default"] == list(DEFAULT_WARN)
    defaulted = {
        **MINIMAL,
        "steps": props["steps"]["default"],
        "analysis": {
            "interval": analysis["interval"]["default"],
            "prometheus": {"url": analysis["prometheus"]["properties"]["url"]["default"]},
            "rollback": analysis["rollback"]["default"],
            "warn": analysis["warn"]["default"],
            "shadowCompare": {"enabled": True, "maxMakespanRegression": 0.0, "minSamples": 20},
            "noData": analysis["noData"]["default"],
            "noDataLimit": analysis["noDataLimit"]["default"],
        },
    }
    assert parse_spec(defaulted) == parse_spec(MINIMAL)


def test_crd_duration_pattern_is_the_parsers() -> None:
    props = crd_schema()
    step = props["steps"]["items"]["properties"]
    assert step["duration"]["pattern"] == durations.PATTERN
    assert step["shadow"]["properties"]["duration"]["pattern"] == durations.PATTERN
    assert props["analysis"]["properties"]["interval"]["pattern"] == durations.PATTERN


def test_example_manifest_parses() -> None:
    example = yaml.safe_load((ROOT / "examples" / "rollout.yaml").read_text())
    spec = parse_spec(example["spec"])
    assert spec == parse_spec({**MINIMAL, **example["spec"]})
    assert spec.candidate.model_version == "2026.11.1"
    assert spec.candidate.env == (("SCHEDULER_BATCH_SIZE", "170"),)
    # The standard plan written out, behind a verify step and with the approval's two roles.
    verify, *plan = spec.steps
    assert isinstance(verify, VerifyStep) and verify.replay_config_map == "scheduler-replay"
    assert verify.load == LoadTest(concurrency=8, requests=200, p99_s=1.0)
    standard = parse_spec(MINIMAL).steps
    assert [type(s) for s in plan] == [type(s) for s in standard]
    approvals = [s for s in plan if isinstance(s, ApprovalStep)]
    assert [a.roles for a in approvals] == [("ops-manager", "plant-manager")]
    assert [s for s in plan if not isinstance(s, ApprovalStep)] == [
        s for s in standard if not isinstance(s, ApprovalStep)
    ]
    assert spec.analysis.shadow_compare is not None
    assert spec.analysis.shadow_compare.test is ShadowTest.SEQUENTIAL
    assert spec.analysis.prometheus_url == "http://prometheus.monitoring.svc:9090"


def test_custom_plan_rules_and_routing() -> None:
    spec = parse_spec(
        {
            **MINIMAL,
            "routing": {"provider": "replicas", "stableService": "a", "canaryService": "b"},
            "candidate": {"modelVersion": "2026.11.1", "env": [{"name": "X", "value": "1"}]},
            "steps": [{"shadow": {"duration": "1h30m", "percent": 20}}, {"approval": {}}],
            "analysis": {
                "interval": "5s",
                "rollback": [{"name": "queue", "query": "max(q{track='{{track}}'})", "above": 3}],
                "warn": [],
                "shadowCompare": {"enabled": False},
                "noData": "rollback",
                "noDataLimit": 3,
            },
            "webhook": {"url": "https://hooks.example/rollouts"},
        }
    )
    assert spec.routing.provider is Provider.REPLICAS
    assert spec.routing.route == ""
    assert spec.steps == (ShadowStep(5400, 20), ApprovalStep())
    assert spec.analysis.rollback[0].for_ == 1
    assert spec.analysis.warn == ()
    assert spec.analysis.shadow_compare is None
    assert spec.analysis.no_data is NoDataPolicy.ROLLBACK
    assert spec.webhook_url == "https://hooks.example/rollouts"


def test_null_fields_mean_defaults() -> None:
    assert parse_spec({**MINIMAL, "steps": None, "analysis": None}) == parse_spec(MINIMAL)


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("steps", [], "spec.steps", "at least one step"),
        ("steps", [{"weight": 150, "duration": "1h"}], "spec.steps[0].weight", "0-100"),
        ("steps", [{"weight": True, "duration": "1h"}], "spec.steps[0].weight", "not a weight"),
        ("steps", [{"weight": 10, "duration": "2 days"}], "spec.steps[0].duration", "'2 days'"),
        ("steps", [{"weight": 10}], "spec.steps[0].duration", "required"),
        ("steps", [{"approval": {}, "duration": "1h"}], "spec.steps[0].duration", "only a weight"),
        ("steps", [{"approval": {}, "weight": 10}], "spec.steps[0]", "exactly one"),
        ("steps", [{}], "spec.steps[0]", "exactly one"),
        (
            "steps",
            [{"shadow": {"duration": "1d", "percent": 0}}],
            "spec.steps[0].shadow.percent",
            "1-100",
        ),
        ("steps", ["weight"], "spec.steps[0]", "must be an object"),
        ("analysis.interval", "500ms", "spec.analysis.interval", "at least 1s"),
        ("analysis.noData", "ignore", "spec.analysis.noData", "hold or rollback"),
        ("analysis.noDataLimit", 0, "spec.analysis.noDataLimit", ">= 1"),
        ("analysis.prometheus", {"url": "prometheus:9090"}, "spec.analysis.prometheus.url", "http"),
        (
            "analysis.rollback",
            [{"name": "queue-depth", "above": 3}],
            "spec.analysis.rollback[0].query",
            "no built-in query",
        ),
        (
            "analysis.warn",
            [{"name": "x", "query": "up{job='{{trak}}'}", "above": 1}],
            "spec.analysis.warn[0].query",
            "unknown placeholder",
        ),
        (
            "analysis.rollback",
            [{"name": "error-rate", "above": 0.1}, {"name": "error-rate", "above": 0.2}],
            "spec.analysis.rollback[1].name",
            "duplicate",
        ),
        (
            "analysis.rollback",
            [{"name": "error-rate", "above": 0.1, "below": 0.0}],
            "spec.analysis.rollback[0]",
            "exactly one of below or above",
        ),
        (
            "analysis.rollback",
            [{"name": "error-rate", "above": "high"}],
            "spec.analysis.rollback[0].above",
            "not a number",
        ),
        (
            "analysis.rollback",
            [{"name": "error-rate", "above": 0.1, "for": 0}],
            "spec.analysis.rollback[0].for",
            ">= 1",
        ),
        (
            "analysis.warn",
            [{"name": "error-rate", "above": 0.1, "for": 3}],
            "spec.analysis.warn[0].for",
            "no 'for'",
        ),
        (
            "analysis.shadowCompare",
            {"query": "x{{nope}}"},
            "spec.analysis.shadowCompare.query",
            "unknown placeholder",
        ),
        (
            "analysis.shadowCompare",
            {"minSamples": 0},
            "spec.analysis.shadowCompare.minSamples",
            "at least 1",
        ),
        ("routing.provider", "linkerd", "spec.routing.provider", "unknown provider 'linkerd'"),
        ("routing.route", None, "spec.routing.route", "required"),
        ("routing.canaryService", "scheduler", "spec.routing.canaryService", "must differ"),
        ("routing.port", 70000, "spec.routing.port", "port number"),
        ("routing.mirror", "mesh", "spec.routing.mirror", "not one of app, route"),
        ("targetRef", None, "spec.targetRef", "required"),
        ("targetRef.name", "", "spec.targetRef.name", "required"),
        ("candidate", {}, "spec.candidate", "at least one of image"),
        (
            "candidate.env",
            [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
            "spec.candidate.env[1].name",
            "duplicate",
        ),
        ("webhook", {"url": "ftp://x"}, "spec.webhook.url", "http"),
    ],
)
def test_errors_name_the_field(path: str, value: Any, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(with_changes(path, value))
    assert err.value.field == field
    assert words in err.value.message
    assert str(err.value).startswith(f"{field}: ")


def test_mirror_mode_defaults_to_the_app_and_route_needs_a_route() -> None:
    assert parse_spec(MINIMAL).routing.mirror == "app"
    assert parse_spec(with_changes("routing.mirror", "route")).routing.mirror == "route"
    replicas = with_changes("routing.provider", "replicas")
    replicas["routing"]["mirror"] = "route"
    with pytest.raises(SpecError) as err:
        parse_spec(replicas)
    assert err.value.field == "spec.routing.mirror"
