"""The SchedulerRollout ``spec`` as typed, checked values (`model.RolloutSpec`).

The CRD's schema (crds/schedulerrollouts.yaml) already refuses most nonsense at ``kubectl apply``
and fills the defaults. This parser repeats the defaults, so a spec that never went through the
API server's defaulting (a dict built in code, an object stored before a default was added) means
the same thing, and it checks what a schema cannot: durations it cannot parse, rules whose query
is empty but whose name has no built-in query, placeholders in queries, duplicate names, an
analysis interval under a second. Every problem is a `SpecError` naming the field, which the
operator shows in the ``Invalid`` phase's condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rollout_operator import durations
from rollout_operator.model import (
    AnalysisSpec,
    ApprovalStep,
    CandidateSpec,
    Comparison,
    LoadTest,
    NoDataPolicy,
    Provider,
    RolloutSpec,
    RoutingSpec,
    Rule,
    ShadowCompare,
    ShadowStep,
    ShadowTest,
    Step,
    VerifyStep,
    WeightStep,
)
from rollout_operator.routers.registry import has_route
from rollout_operator.signoffs import ROLE_PATTERN

# The defaults, as the CRD's schema writes them: the two must agree.
DEFAULT_STEPS: tuple[dict[str, Any], ...] = (
    {"shadow": {"duration": "5d", "percent": 100}},
    {"weight": 10, "duration": "2d"},
    {"weight": 25, "duration": "2d"},
    {"weight": 50, "duration": "2d"},
    {"approval": {}},
    {"weight": 100, "duration": "24h"},
)
DEFAULT_ROLLBACK: tuple[dict[str, Any], ...] = (
    {"name": "completion-rate", "below": 0.90, "for": 2},
    {"name": "latency-p95-seconds", "above": 10, "for": 3},
    {"name": "error-rate", "above": 0.05, "for": 2},
)
DEFAULT_WARN: tuple[dict[str, Any], ...] = (
    {"name": "completion-rate", "below": 0.95},
    {"name": "latency-p95-seconds", "above": 5},
    {"name": "memory-utilisation", "above": 0.90},
)
DEFAULT_INTERVAL = "60s"
DEFAULT_PROMETHEUS_URL = "http://prometheus.monitoring.svc:9090"
DEFAULT_PORT = 50051
DEFAULT_NO_DATA_LIMIT = 10
MIN_INTERVAL_S = 1.0
DEFAULT_VERIFY_TIMEOUT = "10m"
STEP_KINDS = ("shadow", "weight", "approval", "verify")


class SpecError(ValueError):
    """A spec the operator cannot run; ``field`` is its path, e.g. ``spec.steps[2].duration``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


MIRROR_MODES = ("app", "route")  # who mirrors during shadow: the stable pods, or the route


def parse_spec(body_spec: Mapping[str, Any]) -> RolloutSpec:
    """The typed spec of a SchedulerRollout's ``spec``; SpecError on the first problem."""
    spec = _mapping(body_spec, "spec")
    analysis = _analysis(_mapping(_opt(spec, "analysis", {}), "spec.analysis"))
    webhook = _mapping(_opt(spec, "webhook", {}), "spec.webhook")
    routing = _routing(_mapping(spec.get("routing"), "spec.routing"))
    compare = analysis.shadow_compare
    if compare is not None and compare.test is ShadowTest.SEQUENTIAL and routing.mirror != "app":
        raise SpecError(
            "spec.analysis.shadowCompare.test",
            "sequential needs routing.mirror: app (a route's mirror sees no pairs of answers)",
        )
    if compare is not None and compare.promote_early and compare.test is not ShadowTest.SEQUENTIAL:
        raise SpecError("spec.analysis.shadowCompare.promoteEarly", "needs test: sequential")
    steps = _steps(_opt(spec, "steps", DEFAULT_STEPS))
    verify = next((i for i, s in enumerate(steps) if isinstance(s, VerifyStep)), None)
    if verify is not None and routing.provider is Provider.REPLICAS:
        raise SpecError(
            f"spec.steps[{verify}].verify",
            "the replicas provider runs a candidate pod only with traffic or a mirror, so a Job "
            "has nothing to check before them; use gatewayAPI or istio",
        )
    return RolloutSpec(
        target=_name(_mapping(spec.get("targetRef"), "spec.targetRef"), "spec.targetRef"),
        candidate=_candidate(_mapping(spec.get("candidate"), "spec.candidate")),
        routing=routing,
        steps=steps,
        analysis=analysis,
        webhook_url=_url(_opt(webhook, "url", ""), "spec.webhook.url", required=False),
    )


# --- the pieces ---------------------------------------------------------------------------------


def _name(data: Mapping[str, Any], field: str) -> str:
    return _text(data.get("name"), f"{field}.name")


def _candidate(data: Mapping[str, Any]) -> CandidateSpec:
    env = []
    seen: set[str] = set()
    for i, item in enumerate(_sequence(_opt(data, "env", []), "spec.candidate.env")):
        field = f"spec.candidate.env[{i}]"
        entry = _mapping(item, field)
        name = _text(entry.get("name"), f"{field}.name")
        if name in seen:
            raise SpecError(f"{field}.name", f"duplicate variable {name!r}")
        seen.add(name)
        env.append((name, _text(_opt(entry, "value", ""), f"{field}.value", required=False)))
    image = _text(_opt(data, "image", ""), "spec.candidate.image", required=False)
    model = _text(_opt(data, "modelVersion", ""), "spec.candidate.modelVersion", required=False)
    if not (image or model or env):
        raise SpecError("spec.candidate", "set at least one of image, modelVersion or env")
    return CandidateSpec(image=image, model_version=model, env=tuple(env))


def _routing(data: Mapping[str, Any]) -> RoutingSpec:
    provider_text = data.get("provider")
    try:
        provider = Provider(str(provider_text))
    except ValueError:
        known = ", ".join(p.value for p in Provider)
        raise SpecError(
            "spec.routing.provider", f"unknown provider {provider_text!r} (one of {known})"
        ) from None
    route = _text(_opt(data, "route", ""), "spec.routing.route", required=has_route(provider))
    stable = _text(data.get("stableService"), "spec.routing.stableService")
    canary = _text(data.get("canaryService"), "spec.routing.canaryService")
    if stable == canary:
        raise SpecError("spec.routing.canaryService", f"must differ from stableService {stable!r}")
    port = _opt(data, "port", DEFAULT_PORT)
    if not _is_int(port) or not 1 <= port <= 65535:
        raise SpecError("spec.routing.port", f"{port!r} is not a port number (1-65535)")
    config_map = _text(
        _opt(data, "mirrorConfigMap", ""), "spec.routing.mirrorConfigMap", required=False
    )
    mirror = _opt(data, "mirror", "app")
    if mirror not in MIRROR_MODES:
        raise SpecError(
            "spec.routing.mirror", f"{mirror!r} is not one of {', '.join(MIRROR_MODES)}"
        )
    if mirror == "route" and not has_route(provider):
        raise SpecError(
            "spec.routing.mirror", f"provider {provider} has no route to mirror on; use mirror: app"
        )
    return RoutingSpec(provider, route, stable, canary, port, config_map, mirror)


def _steps(value: Any) -> tuple[Step, ...]:
    items = _sequence(value, "spec.steps")
    if not items:
        raise SpecError("spec.steps", "the plan needs at least one step")
    return tuple(_step(_mapping(item, f"spec.steps[{i}]"), i) for i, item in enumerate(items))


def _step(data: Mapping[str, Any], index: int) -> Step:
    field = f"spec.steps[{index}]"
    kinds = [kind for kind in STEP_KINDS if data.get(kind) is not None]
    if len(kinds) != 1:
        raise SpecError(field, f"set exactly one of {', '.join(STEP_KINDS)} (got {kinds})")
    if kinds[0] != "weight" and data.get("duration") is not None:
        raise SpecError(f"{field}.duration", f"only a weight step has a duration ({kinds[0]} step)")
    if kinds[0] == "approval":
        return _approval(_mapping(data["approval"], f"{field}.approval"), f"{field}.approval")
    if kinds[0] == "verify":
        return _verify(_mapping(data["verify"], f"{field}.verify"), f"{field}.verify")
    if kinds[0] == "shadow":
        shadow = _mapping(data["shadow"], f"{field}.shadow")
        percent = _opt(shadow, "percent", 100)
        if not _is_int(percent) or not 1 <= percent <= 100:
            raise SpecError(f"{field}.shadow.percent", f"{percent!r} is not a percentage (1-100)")
        return ShadowStep(_duration(shadow.get("duration"), f"{field}.shadow.duration"), percent)
    weight = data["weight"]
    if not _is_int(weight) or not 0 <= weight <= 100:
        raise SpecError(f"{field}.weight", f"{weight!r} is not a weight (0-100)")
    return WeightStep(weight, _duration(data.get("duration"), f"{field}.duration"))


def _approval(data: Mapping[str, Any], field: str) -> ApprovalStep:
    roles: list[str] = []
    for i, item in enumerate(_sequence(_opt(data, "roles", []), f"{field}.roles")):
        role = _text(item, f"{field}.roles[{i}]")
        if not ROLE_PATTERN.match(role):
            raise SpecError(
                f"{field}.roles[{i}]", f"{role!r} is not a lower-case DNS label (a-z, 0-9, '-')"
            )
        if role in roles:
            raise SpecError(f"{field}.roles[{i}]", f"duplicate role {role!r}")
        roles.append(role)
    return ApprovalStep(tuple(roles))


def _replay(replay: Mapping[str, Any], field: str) -> tuple[str, dict[str, Any] | None, str]:
    """The replay's source: a ConfigMap's name, or a volume source, and the folder within."""
    sources = [k for k in ("configMap", "volume") if replay.get(k) is not None]
    if len(sources) != 1:
        raise SpecError(
            f"{field}.replay", f"set exactly one of configMap or volume (got {sources})"
        )
    config_map = _text(_opt(replay, "configMap", ""), f"{field}.replay.configMap", required=False)
    volume = None
    if replay.get("volume") is not None:
        volume = dict(_mapping(replay["volume"], f"{field}.replay.volume"))
        if len(volume) != 1 or "name" in volume:
            raise SpecError(
                f"{field}.replay.volume",
                "one volume source, e.g. {persistentVolumeClaim: {claimName: data}} (no name)",
            )
    sub_path = _text(_opt(replay, "subPath", ""), f"{field}.replay.subPath", required=False)
    if sub_path.startswith("/") or ".." in sub_path.split("/"):
        raise SpecError(f"{field}.replay.subPath", f"{sub_path!r} is not a relative path")
    return config_map, volume, sub_path


def _verify(data: Mapping[str, Any], field: str) -> VerifyStep:
    config_map, volume, sub_path = _replay(_mapping(data.get("replay"), f"{field}.replay"), field)
    ratio = _number(_opt(data, "maxMakespanRatio", 1.0), f"{field}.maxMakespanRatio")
    if ratio <= 0:
        raise SpecError(f"{field}.maxMakespanRatio", f"{ratio:g} is not a ratio > 0")
    timeout = _duration(_opt(data, "timeout", DEFAULT_VERIFY_TIMEOUT), f"{field}.timeout")
    if timeout < 1:
        raise SpecError(f"{field}.timeout", f"must be at least 1s (got {timeout:g}s)")
    load = None
    if data.get("load") is not None:
        spec = _mapping(data["load"], f"{field}.load")
        counts = {}
        for key, default in (("concurrency", 8), ("requests", 200)):
            value = _opt(spec, key, default)
            if not _is_int(value) or value < 1:
                raise SpecError(f"{field}.load.{key}", f"{value!r} is not a count >= 1")
            counts[key] = int(value)
        p99 = _duration(_opt(spec, "p99", "1s"), f"{field}.load.p99")
        if p99 <= 0:
            raise SpecError(f"{field}.load.p99", "must be more than 0s")
        load = LoadTest(counts["concurrency"], counts["requests"], p99)
    secret = _text(_opt(data, "apiKeySecret", ""), f"{field}.apiKeySecret", required=False)
    return VerifyStep(config_map, ratio, load, timeout, secret, volume, sub_path)


def _analysis(data: Mapping[str, Any]) -> AnalysisSpec:
    interval = _duration(_opt(data, "interval", DEFAULT_INTERVAL), "spec.analysis.interval")
    if interval < MIN_INTERVAL_S:
        raise SpecError("spec.analysis.interval", f"must be at least 1s (got {interval:g}s)")
    prometheus = _mapping(_opt(data, "prometheus", {}), "spec.analysis.prometheus")
    url = _url(_opt(prometheus, "url", DEFAULT_PROMETHEUS_URL), "spec.analysis.prometheus.url")
    policy_text = _opt(data, "noData", NoDataPolicy.HOLD.value)
    try:
        policy = NoDataPolicy(policy_text)
    except ValueError:
        raise SpecError(
            "spec.analysis.noData", f"{policy_text!r} is not hold or rollback"
        ) from None
    limit = _opt(data, "noDataLimit", DEFAULT_NO_DATA_LIMIT)
    if not _is_int(limit) or limit < 1:
        raise SpecError("spec.analysis.noDataLimit", f"{limit!r} is not a count >= 1")
    rollback = _rules(_opt(data, "rollback", DEFAULT_ROLLBACK), "spec.analysis.rollback", interval)
    warn = _rules(_opt(data, "warn", DEFAULT_WARN), "spec.analysis.warn", interval, warn=True)
    return AnalysisSpec(
        interval_s=interval,
        prometheus_url=url,
        rollback=rollback,
        warn=warn,
        shadow_compare=_shadow_compare(_opt(data, "shadowCompare", {}), interval),
        no_data=policy,
        no_data_limit=limit,
    )


def _rules(value: Any, field: str, interval_s: float, *, warn: bool = False) -> tuple[Rule, ...]:
    rules = []
    seen: set[str] = set()
    for i, item in enumerate(_sequence(value, field)):
        rule = _rule(_mapping(item, f"{field}[{i}]"), f"{field}[{i}]", warn=warn)
        if rule.name in seen:
            raise SpecError(f"{field}[{i}].name", f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        _check_query(rule, f"{field}[{i}].query", interval_s)
        rules.append(rule)
    return tuple(rules)


def _rule(data: Mapping[str, Any], field: str, *, warn: bool) -> Rule:
    name = _text(data.get("name"), f"{field}.name")
    bounds = [key for key in ("below", "above") if data.get(key) is not None]
    if len(bounds) != 1:
        raise SpecError(field, f"set exactly one of below or above (got {bounds or 'neither'})")
    threshold = _number(data[bounds[0]], f"{field}.{bounds[0]}")
    count = _opt(data, "for", 1)
    if warn and count != 1:
        raise SpecError(f"{field}.for", "a warning has no 'for': it is raised on every breach")
    if not _is_int(count) or count < 1:
        raise SpecError(f"{field}.for", f"{count!r} is not a count >= 1")
    query = _text(_opt(data, "query", ""), f"{field}.query", required=False)
    return Rule(name, query, Comparison(bounds[0]), threshold, count)


def _min_samples(value: Any, field: str) -> int:
    if not _is_int(value) or value < 1:
        raise SpecError(field, f"{value!r} is not a whole number of at least 1")
    return int(value)


def _shadow_compare(value: Any, interval_s: float) -> ShadowCompare | None:
    """On by default (the candidate must not schedule worse than stable); ``enabled: false``."""
    field = "spec.analysis.shadowCompare"
    data = _mapping(value, field)
    enabled = _opt(data, "enabled", True)
    if not isinstance(enabled, bool):
        raise SpecError(f"{field}.enabled", f"{enabled!r} is not true or false")
    if not enabled:
        return None
    test_text = _opt(data, "test", ShadowTest.MEAN.value)
    try:
        test = ShadowTest(test_text)
    except ValueError:
        raise SpecError(f"{field}.test", f"{test_text!r} is not mean or sequential") from None
    rates = {}
    for key, default, low, high in (("alpha", 0.05, 0.0, 0.5), ("beta", 0.05, 0.0, 0.5),
                                    ("effect", 0.2, 0.0, 0.5)):  # fmt: skip
        value = _number(_opt(data, key, default), f"{field}.{key}")
        if not low < value < high:
            raise SpecError(f"{field}.{key}", f"{value:g} is not between {low:g} and {high:g}")
        rates[key] = value
    early = _opt(data, "promoteEarly", False)
    if not isinstance(early, bool):
        raise SpecError(f"{field}.promoteEarly", f"{early!r} is not true or false")
    compare = ShadowCompare(
        max_makespan_regression=_number(
            _opt(data, "maxMakespanRegression", 0.0), f"{field}.maxMakespanRegression"
        ),
        query=_text(_opt(data, "query", ""), f"{field}.query", required=False),
        min_samples=_min_samples(_opt(data, "minSamples", 20), f"{field}.minSamples"),
        test=test,
        alpha=rates["alpha"],
        beta=rates["beta"],
        effect=rates["effect"],
        promote_early=early,
    )
    if compare.query:
        probe = Rule("shadow-compare", compare.query, Comparison.ABOVE, 0.0)
        _check_query(probe, f"{field}.query", interval_s)
    return compare


def _check_query(rule: Rule, field: str, interval_s: float) -> None:
    """The query renders: its placeholders are known and an empty one has a built-in."""
    # Imported here: the analysis package brings the Prometheus client, which the spec's
    # readers (the state machine, the CLI) do not need.
    from rollout_operator.analysis.queries import render  # noqa: PLC0415

    try:
        render(rule, track="canary", namespace="default", rollout="check", interval_s=interval_s)
    except ValueError as exc:
        raise SpecError(field, str(exc)) from None


# --- scalar checks ------------------------------------------------------------------------------


def _opt(data: Mapping[str, Any], key: str, default: Any) -> Any:
    """``data[key]``, or ``default`` when it is missing or null (as the API server's defaulting)."""
    value = data.get(key)
    return default if value is None else value


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        raise SpecError(field, "required")
    if not isinstance(value, Mapping):
        raise SpecError(field, f"must be an object, not {type(value).__name__}")
    return value


def _sequence(value: Any, field: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SpecError(field, f"must be a list, not {type(value).__name__}")
    return value


def _text(value: Any, field: str, *, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise SpecError(field, f"must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise SpecError(field, "required")
    return value


def _url(value: Any, field: str, *, required: bool = True) -> str:
    url = _text(value, field, required=required)
    if url and not url.startswith(("http://", "https://")):
        raise SpecError(field, f"{url!r} is not an http(s) URL")
    return url


def _duration(value: Any, field: str) -> float:
    if value is None:
        raise SpecError(field, "required")
    try:
        return durations.parse(value)
    except durations.DurationError as exc:
        raise SpecError(field, str(exc)) from None


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"{value!r} is not a number")
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
