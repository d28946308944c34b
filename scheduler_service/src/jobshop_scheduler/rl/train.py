"""PPO training with a size curriculum, greedy evaluation against the legacy rules, best-model
checkpointing and a progress bar. `schedctl train` is the command-line front end."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor
from tqdm import tqdm

from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.config import ConfigError, TrainConfig
from jobshop_scheduler.rl.distill import distill
from jobshop_scheduler.rl.env import JobShopEnv
from jobshop_scheduler.rl.fast_policy import FastScorer
from jobshop_scheduler.rl.model_store import sha256_of
from jobshop_scheduler.rl.policy import SCHEME_BUFFERS, SCHEME_KEYS, JobScorerPolicy
from jobshop_scheduler.rl.sampling import CurriculumSampler, Stage, random_taillard
from jobshop_scheduler.rl.self_label import Teacher, self_label
from jobshop_scheduler.rl.validation import ValidationCase, evaluate


def validation_set(config: TrainConfig) -> list[ValidationCase]:
    """Fixed instances, disjoint from the benchmark (Taillard's seeds are never drawn here)."""
    rng = np.random.default_rng(config.eval.seed)
    problems = [
        (f"val-15x15-{i}", random_taillard(rng, (15, 15), (15, 15)))
        for i in range(config.eval.classic)
    ]
    problems += [
        (
            f"val-flex{config.eval.flexible_jobs}-{i}",
            production_like(config.eval.flexible_jobs, seed=config.eval.seed + i),
        )
        for i in range(config.eval.flexible)
    ]
    return [ValidationCase.of(name, problem) for name, problem in problems]


class TrainingMonitor(BaseCallback):
    """Curriculum stage switches, periodic evaluation with best-model saving, a progress bar."""

    def __init__(
        self, config: TrainConfig, sampler: CurriculumSampler, out_dir: Path, quiet: bool
    ) -> None:
        super().__init__()
        self.config, self.sampler, self.out_dir = config, sampler, out_dir
        self.cases = validation_set(config)
        self.best = float("inf")
        self.history: list[dict[str, Any]] = []
        self.bar = tqdm(total=config.ppo.total_timesteps, unit="step", disable=quiet)
        self._next_eval = 0

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        progress = self.num_timesteps / self.config.ppo.total_timesteps
        if self.sampler.advance_to(progress):
            self.bar.write(f"curriculum: {self.sampler.stage}")
        if self.num_timesteps >= self._next_eval:
            self._next_eval += self.config.eval.every
            self._evaluate()
        return True

    def _evaluate(self) -> None:
        scorer = FastScorer.from_state_dict(self.model.policy.state_dict())
        ratio = evaluate(scorer, self.cases)
        episodes = [info["r"] for info in self.model.ep_info_buffer or []]
        self.history.append(
            {
                "timesteps": self.num_timesteps,
                "ratio_to_best_rule": ratio,
                "mean_episode_return": float(np.mean(episodes)) if episodes else float("nan"),
            }
        )
        if ratio < self.best:
            self.best = ratio
            self.model.save(self.out_dir / "best_model.zip")
        self.bar.set_postfix(val_ratio=f"{ratio:.4f}", best=f"{self.best:.4f}")

    def _on_training_end(self) -> None:
        self._evaluate()
        self.bar.close()


def learning_rate_schedule(start: float, end: float | None) -> float | Callable[[float], float]:
    """Constant, or linear from `start` to `end` (late updates stop undoing what was learnt)."""
    if end is None:
        return start

    def rate(progress_remaining: float) -> float:  # SB3 passes 1 at the start, 0 at the end
        return end + (start - end) * progress_remaining

    return rate


def build_model(config: TrainConfig, sampler: CurriculumSampler) -> MaskablePPO:
    p = config.ppo
    env = VecMonitor(
        DummyVecEnv(
            [
                lambda: JobShopEnv(
                    sampler=sampler,
                    max_jobs=p.rows,
                    scheme=p.scheme,
                )
            ]
            * p.n_envs
        )
    )
    env.seed(p.seed)
    return MaskablePPO(
        JobScorerPolicy,
        env,
        policy_kwargs={
            "hidden": p.hidden,
            **p.scheme.model_arguments(),
            "ortho_init": True,
        },
        n_steps=p.n_steps,
        batch_size=p.batch_size,
        n_epochs=p.n_epochs,
        learning_rate=learning_rate_schedule(p.learning_rate, p.final_learning_rate),
        gamma=p.gamma,
        gae_lambda=p.gae_lambda,
        ent_coef=p.ent_coef,
        clip_range=p.clip_range,
        seed=p.seed,
        verbose=0,
        device="cpu",
    )


FIRST_LAYER = "mlp_extractor.embed.0.weight"
# the extra scorers, each started as a copy of the first scorer when --init lacks it
COPIED_SCORERS = {"mlp_extractor.window_embed.": "mlp_extractor.embed.",
                  "mlp_extractor.window_score.": "mlp_extractor.score.",
                  "mlp_extractor.long_embed.": "mlp_extractor.embed.",
                  "mlp_extractor.long_score.": "mlp_extractor.score.",
                  "mlp_extractor.alike_embed.": "mlp_extractor.window_embed.",
                  "mlp_extractor.alike_score.": "mlp_extractor.window_score."}  # fmt: skip


def scheme_changes(model: MaskablePPO, init: Path) -> dict[str, dict[str, float]]:
    """The dispatching settings in which ``model`` (built from the config) differs from the
    ``init`` model, by buffer name: {"init": its value, "config": the new one}. The config
    wins (`initial_parameters`), which is how a recipe changes a model's scheme on purpose,
    and how a recipe written before a setting existed drops it by accident: both are said."""
    _, loaded, _ = load_from_zip_file(str(init), device="cpu", load_data=False)
    params: dict[str, Any] = dict(loaded)
    before: dict[str, torch.Tensor] = params["policy"]
    after = model.policy.state_dict()
    changes = {}
    for key, name in zip(SCHEME_KEYS, SCHEME_BUFFERS, strict=True):
        old = float(before[key]) if key in before else 0.0  # older models: the default
        if old != float(after[key]):
            changes[name] = {"init": old, "config": float(after[key])}
    return changes


def initial_parameters(model: MaskablePPO, init: Path) -> tuple[dict[str, Any], int]:
    """The parameters of ``init``, fitted to ``model``, and its number of feature columns.

    A model trained before feature columns were appended to the table (``features.FEATURES``)
    gets zero weights for the new columns, so it starts out choosing exactly as it did and
    training learns what the new columns are worth. Its optimizer state (sized for the old
    layer) is replaced by the fresh one. The config, not ``init``, says how the model
    dispatches (`PPOConfig.window`, `long_shops`); a window or long-shop scorer ``init`` lacks
    starts as a copy of its non-delay scorer.
    """
    _, loaded, _ = load_from_zip_file(str(init), device="cpu", load_data=False)
    params: dict[str, Any] = dict(loaded)
    policy: dict[str, torch.Tensor] = params["policy"]
    old = policy[FIRST_LAYER]
    fresh = model.policy.state_dict()
    new = fresh[FIRST_LAYER]
    if old.shape[0] != new.shape[0] or old.shape[1] > new.shape[1]:
        raise ConfigError(
            f"{init}: first layer {tuple(old.shape)} does not fit this code's {tuple(new.shape)}"
        )
    if old.shape[1] < new.shape[1]:
        added = new.shape[1] - old.shape[1]
        for key in [k for k in policy if k.endswith("embed.0.weight")]:  # every scorer's
            layer = policy[key]
            policy[key] = torch.cat([layer, layer.new_zeros(layer.shape[0], added)], dim=1)
        params["policy.optimizer"] = model.policy.optimizer.state_dict()
    for key in SCHEME_KEYS:
        policy[key] = fresh[key]
    for key in [k for k in fresh if k.startswith(tuple(COPIED_SCORERS)) and k not in policy]:
        prefix = next(p for p in COPIED_SCORERS if key.startswith(p))
        policy[key] = policy[COPIED_SCORERS[prefix] + key[len(prefix) :]].clone()
        params["policy.optimizer"] = model.policy.optimizer.state_dict()
    dropped = {k.split(".")[1] for k in policy if k.startswith(tuple(COPIED_SCORERS))} - {
        k.split(".")[1] for k in fresh
    }
    if "window_embed" in dropped:
        raise ConfigError(f"{init} has a window scorer; set [ppo] window above 0")
    if "alike_embed" in dropped:
        raise ConfigError(f"{init} has an alike shops' scorer; set [ppo] alike_shops = true")
    if "long_embed" in dropped:
        raise ConfigError(f"{init} has a long-shop scorer; set [ppo] long_shops = true")
    return params, int(old.shape[1])


def averaged_parameters(model: MaskablePPO, inits: Sequence[Path]) -> tuple[dict[str, Any], int]:
    """`initial_parameters` of one model, or of several averaged tensor by tensor (a model
    soup): runs fine-tuned from one start on different shops or seeds each move part of the
    way, and their average often keeps what each gained where the plain runs also lose
    elsewhere. Their optimizer moments belong to none of them, so the average starts fresh."""
    fitted = [initial_parameters(model, path) for path in inits]
    params, columns = fitted[0]
    if len(fitted) == 1:
        return params, columns
    first: dict[str, torch.Tensor] = params["policy"]
    for path, (other, _) in zip(inits[1:], fitted[1:], strict=True):
        shapes = {key: tuple(value.shape) for key, value in other["policy"].items()}
        if shapes != {key: tuple(value.shape) for key, value in first.items()}:
            raise ConfigError(f"{path}: its tensors differ from {inits[0]}'s; cannot average")
    params["policy"] = {
        key: torch.stack([p["policy"][key] for p, _ in fitted]).mean(dim=0)
        if value.is_floating_point() and key not in SCHEME_KEYS
        else value
        for key, value in first.items()
    }
    params["policy.optimizer"] = model.policy.optimizer.state_dict()
    return params, min(c for _, c in fitted)


def start_from(model: MaskablePPO, inits: Sequence[Path]) -> tuple[int, dict[str, Any]]:
    """Set ``model``'s weights from the --init models (`averaged_parameters`), naming on
    stderr every dispatch setting the config changes in them; returns the init models'
    feature columns and the card's `initialised_from` (the first model, and all of them
    when averaged)."""
    changes = [scheme_changes(model, path) for path in inits]
    for path, changed in zip(inits, changes, strict=True):
        for name, values in changed.items():
            print(
                f"note: [ppo] {name} = {values['config']:g} where {path.name} has"
                f" {values['init']:g}; the model dispatches as the config says",
                file=sys.stderr,
            )
    params, columns = averaged_parameters(model, inits)
    model.set_parameters(params, exact_match=True, device="cpu")
    source: dict[str, Any] = {
        "file": inits[0].name, "sha256": sha256_of(inits[0]), "scheme_changes": changes[0],
    }  # fmt: skip
    if len(inits) > 1:
        source["average_of"] = [{"file": str(p), "sha256": sha256_of(p)} for p in inits]
    return columns, source


def _warm_start_and_ppo(
    model: MaskablePPO,
    config: TrainConfig,
    monitor: TrainingMonitor,
    quiet: bool,
    init_columns: int | None,
) -> list[dict[str, float]]:
    """Distillation (if configured), then PPO (if any timesteps), ending on PPO's best
    validation checkpoint; returns the distillation history."""
    distilled: list[dict[str, float]] = []
    if config.distill.rounds > 0:
        distilled = distill(
            model,
            config.distill,
            quiet,
            lambda scorer: evaluate(scorer, monitor.cases),
            init_columns,
        )
    if config.ppo.total_timesteps == 0:
        return distilled
    model.learn(total_timesteps=config.ppo.total_timesteps, callback=monitor)
    best = monitor.out_dir / "best_model.zip"
    if best.exists():  # the checkpoint that did best on validation
        model.set_parameters(str(best), exact_match=True, device="cpu")
    with (monitor.out_dir / "eval_history.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(monitor.history[0]))
        writer.writeheader()
        writer.writerows(monitor.history)
    return distilled


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    quiet: bool = False,
    init: Path | Sequence[Path] = (),
    resume: bool = False,
    teacher: Teacher | None = None,
) -> dict[str, Any]:
    """Train, keep the best validation checkpoint as final_model.zip, return a summary.

    ``init``: a model zip whose policy weights training starts from (fine-tuning, e.g. on a
    plant's own shop sizes); the scorer's weights do not depend on the table height, so a model
    trained with other ``rows`` fits. Several zips: training starts from their average
    (`averaged_parameters`). ``resume``: continue the self-labelling stage from its
    checkpoint in ``out_dir`` (the stages before it are not run again).
    """
    if resume and config.self_label.steps == 0:
        raise ConfigError("resume continues self-labelling: the config has no [self_label] steps")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.ppo.torch_threads)
    set_random_seed(config.ppo.seed)
    # without PPO the env only gives the model its observation shape: any stage will do
    sampler = CurriculumSampler(list(config.curriculum) or [Stage(1.0, (10, 10), (10, 10))])
    model = build_model(config, sampler)
    inits = [init] if isinstance(init, Path) else list(init)
    init_columns, initialised_from = start_from(model, inits) if inits else (None, None)
    if not inits and config.distill.rounds > 0:
        raise ConfigError("[distill] needs --init: the teacher is built from that model")
    monitor = TrainingMonitor(config, sampler, out_dir, quiet or config.ppo.total_timesteps == 0)
    started = time.monotonic()
    distilled: list[dict[str, float]] = []
    if not resume:  # a resumed run continues self-labelling; what came before is in the zip
        distilled = _warm_start_and_ppo(model, config, monitor, quiet, init_columns)
    labelled: dict[str, Any] = {}
    if config.self_label.steps > 0:
        labelled = self_label(
            model, config.self_label, out_dir, resume=resume, quiet=quiet, teacher=teacher,
            init_columns=init_columns,
        )  # fmt: skip
    wall = time.monotonic() - started
    model.save(out_dir / "final_model.zip")
    (out_dir / "best_model.zip").unlink(missing_ok=True)
    best = labelled.get("best_validation_ratio_to_best_rule", monitor.best)
    summary = {
        "config": config.as_dict(),
        "timesteps": int(model.num_timesteps),
        "wall_seconds": round(wall, 1),
        # None when nothing was validated (a recipe that only sets model settings): JSON has no inf
        "best_validation_ratio_to_best_rule": best if math.isfinite(best) else None,
        "torch_threads": config.ppo.torch_threads,
    }
    if labelled:
        summary["self_label"] = labelled
    if distilled:
        summary["distillation"] = distilled
    if initialised_from is not None:
        summary["initialised_from"] = initialised_from
    (out_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
