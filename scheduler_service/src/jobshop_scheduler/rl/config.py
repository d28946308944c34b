"""Training configuration: one typed object, loaded from TOML (defaults in default_train.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from jobshop_scheduler.instances.families import FAMILIES, parse_shape
from jobshop_scheduler.instances.flexible import parse_flexible
from jobshop_scheduler.rl.features import FEATURES
from jobshop_scheduler.rl.sampling import Stage
from jobshop_scheduler.rl.state import DispatchScheme


@dataclass(frozen=True)
class PPOConfig:
    total_timesteps: int = 800_000
    n_envs: int = 8
    n_steps: int = 256
    batch_size: int = 512
    n_epochs: int = 4
    learning_rate: float = 3e-4
    final_learning_rate: float | None = None  # linear decay to this at the end; None: constant
    gamma: float = 1.0
    gae_lambda: float = 0.95
    ent_coef: float = 0.01
    clip_range: float = 0.2
    seed: int = 0
    rows: int = 64  # job-table rows while training (largest training instance); serving pads none
    hidden: int = 64
    # the dispatching scheme (`kernels.refresh`): 0 non-delay; 1 the active-schedule
    # (Giffler-Thompson) conflict set, which holds every active schedule, the optimal one too.
    # Above 0 the model has a second scorer for the states dispatched with the window.
    window: float = 0.0
    # the window applies to classic shops with at most this many jobs per machine (0: all);
    # longer and flexible shops dispatch non-delay (`state.dispatch_window`; but window_flexible)
    window_ratio: float = 0.0
    # a third scorer for the classic shops longer than `window_ratio`, which otherwise share the
    # first scorer with the flexible shops (`policy.JobScorer`); needs a window and a ratio
    long_shops: bool = False
    # long classic shops whose routes are at least this alike (`state.routing_alike`: 0 random
    # orders, 1 a flow shop) get the window all the same (0: none do); needs a window
    window_alike: float = 0.0
    # and their window narrows the longer they are: window x (window_ratio / jobs per machine)
    # to this power (0: the window itself)
    window_narrowing: float = 0.0
    # and shops with fewer jobs per machine than `window_ratio` a wider one: window x
    # (window_ratio / jobs per machine) to this power, at most 1 (0: the window itself)
    window_widening: float = 0.0
    # a fourth scorer for those long alike shops, dispatched with a window narrower than
    # `window`, so that learning them leaves the square shops' plans as they were; needs
    # window_alike and window_narrowing above 0
    alike_shops: bool = False
    # flexible shops with at most this many jobs per machine get the window, widened as the
    # classic ones (0: every flexible shop dispatches non-delay); needs a window
    window_flexible: float = 0.0
    # and those with at most this many operations per machine, at any number of jobs: short
    # routes (0: none); needs a window
    window_flexible_ops: float = 0.0
    torch_threads: int = 2

    @property
    def scheme(self) -> DispatchScheme:
        """The dispatching scheme these settings give the model (`state.dispatch_window`)."""
        return DispatchScheme(
            self.window, self.window_ratio, self.long_shops, self.window_alike,
            self.window_narrowing, self.window_widening, self.alike_shops, self.window_flexible,
            self.window_flexible_ops,
        )  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    every: int = 40_000
    classic: int = 6  # validation 15x15 random job shops (never the Taillard benchmark seeds)
    flexible: int = 2  # validation production-like instances ...
    flexible_jobs: int = 40  # ... of this many jobs
    seed: int = 12345


@dataclass(frozen=True)
class DistillConfig:
    """Optional warm start before PPO (`rl.distill`); needs --init, which is the teacher's base."""

    rounds: int = 0  # 0: no distillation
    instances: int = 40  # rollouts per round
    epochs: int = 3  # passes over all states gathered so far, per round
    batch_size: int = 256
    learning_rate: float = 3e-4  # decays linearly to a tenth over all epochs
    speed_weight: float = 20.0  # teacher = init logits + speed_weight * log(speed)
    explore: float = 0.05  # share of random candidate choices in the rollouts
    flexible_share: float = 0.6
    flexible_jobs: tuple[int, int] = (20, 170)
    jobs: tuple[int, int] = (15, 50)  # classic shops
    machines: tuple[int, int] = (10, 20)
    seed: int = 2024
    # Fit only the first-layer weights of the feature columns the --init model lacks: all of
    # them are 0 on classic shops, so classic decisions stay exactly the --init model's.
    new_columns_only: bool = False


OBJECTIVES = ("best", "advantage", "expert", "rollout")
SELECTIONS = ("mean", "worst")
TRAINED_SCORERS = ("auto", "window", "non-delay", "long", "alike")


@dataclass(frozen=True)
class SelfLabelConfig:
    """Optional self-labelling after PPO (`rl.self_label`): the policy fitted to its own best
    sampled plans, on a mixture of shop shapes."""

    steps: int = 0  # gradient steps; 0: no self-labelling
    # Which scorer learns, the others keeping the --init model's plans exactly: "window" (a model
    # with a window only), "long" (one with a long-shop scorer only), "non-delay" (the first
    # scorer: flexible shops, and long classic ones without a long-shop scorer), or "auto": the
    # window scorer when there is one
    trains: str = "auto"
    # trains = "long" only, 0: off. While labelling, the classic shops above this many jobs per
    # machine are dispatched as long shops (non-delay, the long-shop scorer choosing), so shops
    # the model as shipped dispatches with the window (up to [ppo] window_ratio) teach the
    # long-shop scorer too. Validation and the saved model dispatch as shipped.
    teach_ratio: float = 0.0
    instances: int = 4  # training instances per step
    samples: int = 32  # sampled rollouts per instance, besides the greedy pass
    temperature: float = 1.0  # of the sampling softmax
    # "best": fit the shortest plan; "advantage": every sample, weighted by its advantage;
    # "expert": imitate the tabu search's improvement of the best plan (DAgger); "rollout":
    # in some of the greedy pass's states, the candidates whose greedy finish is shortest
    objective: str = "best"
    teacher_iterations: int = 10  # "expert": tabu iterations per operation
    # "expert": share of steps that follow the label, not the policy; "rollout": of labelled
    # states where the policy's choice is not among the answers
    follow_teacher: float = 0.5
    # "rollout": a candidate's worth is the mean of its greedy finish and this many finishes
    # drawn at `temperature` (0: the greedy finish alone)
    finish_samples: int = 0
    min_gain: float = 0.0  # "expert": an instance teaches if the expert is this much shorter
    # "expert": the teacher starts from the best of the policy's plans and the baseline rules'
    # (`heuristics.dispatch.BASELINE_RULES`), not of the policy's alone: on a shop where a rule
    # beats the policy (SPT on near flow shops) the labels then lead past that rule
    teacher_from_rules: bool = False
    # Fit only the trained scorer's first-layer weights of the feature columns the --init model
    # lacks (as `[distill] new_columns_only`): new columns start at 0, and Adam moves a weight
    # by about the learning rate per step, so beside trained weights they need a stage (and a
    # rate) of their own before they can carry anything
    new_columns_only: bool = False
    # The same for named feature columns (`features.FEATURES`) the --init model has: a scorer
    # copied from another one (the long-shop scorer) keeps the zero weights its source had on
    # columns added later, which only a stage of their own moves
    columns: tuple[str, ...] = ()
    # weight of KL(starting policy || policy) on every state in the loss: keeps the policy where
    # no label moves it (0: off)
    anchor: float = 0.0
    states_per_plan: int = 0  # states of a plan in the loss, drawn at random; 0: all
    learning_rate: float = 1e-4
    max_grad_norm: float = 1.0
    # Classic shops: machines uniform, jobs per machine log-uniform in `ratio` (so square shops
    # are as common as long ones), jobs clipped to `jobs`; redrawn while jobs * machines > max_ops.
    machines: tuple[int, int] = (5, 20)
    ratio: tuple[float, float] = (0.5, 10.0)
    jobs: tuple[int, int] = (10, 100)
    max_ops: int = 2000
    # the classic shops' structure, drawn uniformly per shop (`instances.families`): "taillard"
    # and shops Taillard's generator does not make ("two_set", "flow", "narrow", "partial")
    families: tuple[str, ...] = ("taillard",)
    flexible_share: float = 0.2
    flexible_jobs: tuple[int, int] = (20, 170)
    # of the flexible shops, the share with routes of one to four operations
    # (`instances.flexible.short_routes`) rather than production-like ten to twenty
    short_share: float = 0.0
    seed: int = 7
    workers: int = 1  # processes that play the rollouts
    eval_every: int = 25
    checkpoint_every: int = 10
    validation_shapes: tuple[str, ...] = (
        "15x15", "20x15", "20x20", "30x15", "30x20", "50x15", "50x20", "100x20", "prod50",
    )  # fmt: skip
    # (a shape may name a family: "50x20:two_set"; without one it is "taillard")
    validation_count: int = 3
    validation_seed: int = 4242
    # which validation figure picks best_model.zip: the "mean" over the shapes, or the "worst"
    # shape's (shipping asks a policy to beat the rules on every shape, not on average)
    select: str = "mean"
    snapshots: bool = False  # also keep the weights of every evaluation: snapshots/step_N.zip
    # The run's output: start + blend x (selected - start). 1: the selected weights; below 1
    # interpolates back towards the --init model (WiSE-FT, Wortsman et al. 2022), which keeps
    # most of the gain where the labels taught and loses the drift where they did not.
    blend: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    curriculum: tuple[Stage, ...] = ()
    distill: DistillConfig = field(default_factory=DistillConfig)
    self_label: SelfLabelConfig = field(default_factory=SelfLabelConfig)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ppo": {f.name: getattr(self.ppo, f.name) for f in fields(self.ppo)},
            "eval": {f.name: getattr(self.eval, f.name) for f in fields(self.eval)},
            "distill": {f.name: getattr(self.distill, f.name) for f in fields(self.distill)},
            "self_label": {
                f.name: getattr(self.self_label, f.name) for f in fields(self.self_label)
            },
            "curriculum": [
                {f.name: getattr(s, f.name) for f in fields(s)} for s in self.curriculum
            ],
        }


class ConfigError(ValueError):
    """A training config key or value is wrong; the message names it."""


def _section(cls: type, data: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"[{name}] unknown keys: {', '.join(sorted(unknown))}")
    return cls(**data)


def _stage(raw: dict[str, Any], index: int) -> Stage:
    try:
        flex = raw.get("flexible_jobs", (10, 30))
        return Stage(
            until=float(raw["until"]),
            jobs=(int(raw["jobs"][0]), int(raw["jobs"][1])),
            machines=(int(raw["machines"][0]), int(raw["machines"][1])),
            flexible_share=float(raw.get("flexible_share", 0.0)),
            flexible_jobs=(int(flex[0]), int(flex[1])),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ConfigError(f"curriculum[{index}]: {exc}") from exc


_PAIRS: dict[str, type] = {"flexible_jobs": int, "jobs": int, "machines": int, "ratio": float}


def _value(key: str, value: Any) -> Any:
    """TOML to the dataclass field: (low, high) pairs typed, other lists as tuples."""
    if key in _PAIRS:
        kind = _PAIRS[key]
        return (kind(value[0]), kind(value[1]))
    return tuple(value) if isinstance(value, list) else value


def _with_ranges(cls: type, raw: dict[str, Any], name: str) -> Any:
    """A section with (low, high) pairs and lists (distillation, self-labelling)."""
    try:
        data = {key: _value(key, value) for key, value in raw.items()}
    except (IndexError, TypeError, ValueError) as exc:
        raise ConfigError(f"[{name}]: {exc}") from exc
    return _section(cls, data, name)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"[self_label] {key}: {value!r} is not one of " + ", ".join(repr(o) for o in allowed)
        )


def _check_columns(config: SelfLabelConfig) -> None:
    for column in config.columns:
        _one_of("columns", column, FEATURES)
    if config.columns and config.new_columns_only:
        raise ConfigError(
            "[self_label] columns: names the columns to fit, so new_columns_only must be false"
        )


def _check_sampling(config: SelfLabelConfig) -> None:
    if config.finish_samples < 0:
        raise ConfigError(f"[self_label] finish_samples: {config.finish_samples} is below 0")
    if (config.finish_samples or config.samples) and not config.temperature > 0.0:
        raise ConfigError(f"[self_label] temperature: {config.temperature} is not above 0")


def _check_self_label(config: SelfLabelConfig) -> None:
    _one_of("objective", config.objective, OBJECTIVES)
    _one_of("select", config.select, SELECTIONS)
    _one_of("trains", config.trains, TRAINED_SCORERS)
    if not 0.0 <= config.blend <= 1.0:
        raise ConfigError(f"[self_label] blend: {config.blend} is not in [0, 1]")
    if not 0.0 <= config.short_share <= 1.0:
        raise ConfigError(f"[self_label] short_share: {config.short_share} is not in [0, 1]")
    if config.teach_ratio < 0.0:
        raise ConfigError(f"[self_label] teach_ratio: {config.teach_ratio} is below 0")
    _check_sampling(config)
    if config.teach_ratio > 0.0 and config.trains != "long":
        raise ConfigError(
            "[self_label] teach_ratio: routes shops to the long-shop scorer, so it needs"
            f' trains = "long" (not {config.trains!r})'
        )
    _check_columns(config)
    if not config.families:
        raise ConfigError("[self_label] families: empty; give some of " + ", ".join(FAMILIES))
    for family in config.families:
        _one_of("families", family, FAMILIES)
    for shape in config.validation_shapes:
        if parse_flexible(shape):
            continue
        try:
            parse_shape(shape)
        except ValueError as exc:
            raise ConfigError(
                f"[self_label] validation_shapes: {exc}, or prodJOBS, or shortJOBS"
            ) from None


def load_config(path: Path | None = None) -> TrainConfig:
    """Parse a TOML config; None loads the shipped default."""
    if path is None:
        text = resources.files("jobshop_scheduler.rl").joinpath("default_train.toml").read_text()
    else:
        text = path.read_text()
    raw = tomllib.loads(text)
    unknown = set(raw) - {"ppo", "eval", "curriculum", "distill", "self_label"}
    if unknown:
        raise ConfigError(f"unknown sections: {', '.join(sorted(unknown))}")
    stages = tuple(_stage(s, i) for i, s in enumerate(raw.get("curriculum", [])))
    config = TrainConfig(
        ppo=_section(PPOConfig, raw.get("ppo", {}), "ppo"),
        eval=_section(EvalConfig, raw.get("eval", {}), "eval"),
        curriculum=stages,
        distill=_with_ranges(DistillConfig, raw.get("distill", {}), "distill"),
        self_label=_with_ranges(SelfLabelConfig, raw.get("self_label", {}), "self_label"),
    )
    if config.ppo.total_timesteps > 0:
        if not stages:
            raise ConfigError("PPO (ppo.total_timesteps > 0) needs a [[curriculum]] stage")
        biggest = max(max(s.jobs[1], s.flexible_jobs[1]) for s in stages)
        # distillation and self-labelling score tables of any height: their sizes need no rows
        if biggest > config.ppo.rows:
            raise ConfigError(
                f"ppo.rows={config.ppo.rows} is below the largest instance ({biggest} jobs)"
            )
    _check_scheme(config.ppo)
    _check_self_label(config.self_label)
    return config


def _check_scheme(ppo: PPOConfig) -> None:
    """The dispatching scheme's settings (`state.dispatch_window`)."""
    if not 0.0 <= ppo.window <= 1.0:
        raise ConfigError(f"[ppo] window: {ppo.window} is not in [0, 1]")
    if ppo.window_ratio < 0.0:
        raise ConfigError(f"[ppo] window_ratio: {ppo.window_ratio} is below 0")
    if not 0.0 <= ppo.window_alike <= 1.0:
        raise ConfigError(f"[ppo] window_alike: {ppo.window_alike} is not in [0, 1]")
    if ppo.window_narrowing < 0.0:
        raise ConfigError(f"[ppo] window_narrowing: {ppo.window_narrowing} is below 0")
    if ppo.window_widening < 0.0:
        raise ConfigError(f"[ppo] window_widening: {ppo.window_widening} is below 0")
    for name in ("window_flexible", "window_flexible_ops"):
        if getattr(ppo, name) < 0.0:
            raise ConfigError(f"[ppo] {name}: {getattr(ppo, name)} is below 0")
    _check_needs(ppo)


def _check_needs(ppo: PPOConfig) -> None:
    """The settings that only mean something with others."""
    if ppo.window_alike > 0 and not ppo.window > 0:
        raise ConfigError("[ppo] window_alike: needs a window above 0 (it widens where it applies)")
    if ppo.window_narrowing > 0 and not ppo.window_alike > 0:
        raise ConfigError(
            "[ppo] window_narrowing: needs window_alike above 0 (it narrows the window of the"
            " long shops that window_alike gives one)"
        )
    if ppo.window_widening > 0 and not (ppo.window > 0 and ppo.window_ratio > 0):
        raise ConfigError(
            "[ppo] window_widening: needs window and window_ratio above 0 (it widens the window"
            " of the shops with fewer jobs per machine than window_ratio)"
        )
    for name, shops in (("window_flexible", "small"), ("window_flexible_ops", "short-route")):
        if getattr(ppo, name) > 0 and not ppo.window > 0:
            raise ConfigError(
                f"[ppo] {name}: needs a window above 0 (it gives the {shops} flexible shops"
                " the window)"
            )
    if ppo.alike_shops and not (ppo.window_alike > 0 and ppo.window_narrowing > 0):
        raise ConfigError(
            "[ppo] alike_shops: needs window_alike and window_narrowing above 0 (the alike shops"
            " are the long ones dispatched with a narrower window)"
        )
    if ppo.long_shops and not (ppo.window > 0 and ppo.window_ratio > 0):
        raise ConfigError(
            "[ppo] long_shops: needs window and window_ratio above 0 (the long shops are the"
            " classic ones with more than window_ratio jobs per machine)"
        )
