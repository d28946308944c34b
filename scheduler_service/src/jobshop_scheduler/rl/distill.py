"""Distillation warm start: teach the scorer to weigh the machine an operation would take.

On a loaded flexible shop the makespan is about (work actually done) / machines, and the work
done grows whenever a dispatch puts an operation on a slower eligible machine because that one
is free now. PPO alone learns this slowly (the cost shows late and is small per step), so before
PPO the scorer is fitted to a teacher that knows it:

    teacher logits = the --init model's logits + speed_weight * log(speed)

where ``speed`` = 1 - the feature ``speed_loss`` = min duration / duration on the machine the
operation would take (1 on every classic operation, so on classic shops the teacher *is* the
--init model). With ``new_columns_only`` only the first-layer weights of the columns the --init
model lacks are fitted; those columns are 0 on classic shops, so the student then keeps the
--init model's classic decisions exactly. The
student starts from the --init weights (new feature columns at zero) and minimises the KL
divergence from the teacher's distribution over the candidates, on states visited by the
teacher (round 1) and then by the student itself (later rounds, as in DAgger), with a little
random exploration. PPO then starts from the student.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from tqdm import tqdm

from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.instances.taillard import LCG_MAX
from jobshop_scheduler.rl.config import ConfigError, DistillConfig
from jobshop_scheduler.rl.fast_policy import Buffers, FastScorer
from jobshop_scheduler.rl.features import FEATURES, FeatureScales, job_features
from jobshop_scheduler.rl.policy import JobScorer
from jobshop_scheduler.rl.sampling import random_taillard
from jobshop_scheduler.rl.state import ShopState

SPEED_LOSS = FEATURES.index("speed_loss")
_MIN_SPEED = 1e-3


@dataclass
class Episode:
    """The decision states of one rollout: tables, candidate masks, teacher logits."""

    tables: torch.Tensor  # (steps, jobs, features)
    candidates: torch.Tensor  # (steps, jobs) bool
    teacher: torch.Tensor  # (steps, jobs)


def speed_bonus(speed_loss: np.ndarray, weight: float) -> np.ndarray:
    """weight * log(speed), the teacher's addition to the --init model's logits."""
    bonus: np.ndarray = weight * np.log(np.maximum(1.0 - speed_loss, _MIN_SPEED))
    return bonus


def speed_bonus_t(speed_loss: torch.Tensor, weight: float) -> torch.Tensor:
    """`speed_bonus` on a tensor."""
    return weight * torch.log((1.0 - speed_loss).clamp(min=_MIN_SPEED))


def training_instances(
    config: DistillConfig, rng: np.random.Generator, count: int
) -> list[CompiledProblem]:
    """Flexible production-like shops and classic Taillard-style ones, drawn from `rng`."""
    problems = []
    for _ in range(count):
        if rng.random() < config.flexible_share:
            n = int(rng.integers(config.flexible_jobs[0], config.flexible_jobs[1] + 1))
            problems.append(production_like(n, seed=int(rng.integers(0, LCG_MAX))))
        else:
            problems.append(random_taillard(rng, config.jobs, config.machines))
    return [compile_problem(p) for p in problems]


def rollout(
    cp: CompiledProblem,
    choose: Callable[[ShopState, FeatureScales, Buffers], int],
    explore: float,
    rng: np.random.Generator,
    window: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Play one episode (dispatching by `window`, as `ShopState`); return the padded tables
    and candidate masks of its real decisions."""
    state = ShopState(cp, window)
    scales = FeatureScales(state)
    buffers = Buffers.for_jobs(cp.n_jobs)
    tables, masks = [], []
    while not state.done:
        candidates = np.flatnonzero(state.candidates)
        if len(candidates) > 1:
            tables.append(job_features(state, scales, cp.n_jobs))
            masks.append(state.candidates.copy())
            if rng.random() < explore:
                job = int(candidates[rng.integers(len(candidates))])
            else:
                job = choose(state, scales, buffers)
        else:
            job = int(candidates[0])
        state.dispatch(job)
    width = len(FEATURES)
    if not tables:
        return np.zeros((0, cp.n_jobs, width), np.float32), np.zeros((0, cp.n_jobs), np.bool_)
    return np.stack(tables), np.stack(masks)


def teacher_chooser(
    scorer: FastScorer, weight: float
) -> Callable[[ShopState, FeatureScales, Buffers], int]:
    def choose(state: ShopState, scales: FeatureScales, buffers: Buffers) -> int:
        candidates = np.flatnonzero(state.candidates)
        scores = scorer.candidate_scores(state, scales, buffers)
        loss = buffers.table[buffers.candidate_rows[: len(candidates)], SPEED_LOSS]
        return int(candidates[int(np.argmax(scores + speed_bonus(loss, weight)))])

    return choose


def student_chooser(scorer: FastScorer) -> Callable[[ShopState, FeatureScales, Buffers], int]:
    def choose(state: ShopState, scales: FeatureScales, buffers: Buffers) -> int:
        return scorer.choose(state, scales, buffers)

    return choose


def candidate_kl(
    student: torch.Tensor, teacher: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """Mean KL(teacher || student) of the softmax over each state's candidates."""
    floor = torch.finfo(student.dtype).min / 2
    log_t = torch.log_softmax(teacher.masked_fill(~candidates, floor), dim=-1)
    log_s = torch.log_softmax(student.masked_fill(~candidates, floor), dim=-1)
    return (log_t.exp() * (log_t - log_s)).masked_fill(~candidates, 0.0).sum(-1).mean()


def first_layer(scorer: JobScorer) -> torch.Tensor:
    """The scorer's first weight matrix, (hidden, feature columns)."""
    layer = scorer.embed[0]
    assert isinstance(layer, torch.nn.Linear)
    return layer.weight


def new_column_mask(first: torch.Tensor, init_columns: int | None, section: str) -> torch.Tensor:
    """1 on the first-layer weights of the feature columns from `init_columns` on (those the
    --init model lacks), 0 elsewhere: a gradient times it leaves every other weight as it
    was, under Adam too (a weight whose gradient is always 0 never moves)."""
    if init_columns is None or init_columns >= first.shape[1]:
        raise ConfigError(
            f"[{section}] new_columns_only: the --init model has every feature column"
        )
    return column_mask(first, range(init_columns, first.shape[1]))


def column_mask(first: torch.Tensor, columns: Iterable[int]) -> torch.Tensor:
    """1 on the first-layer weights of `columns`, 0 elsewhere (see `new_column_mask`)."""
    mask = torch.zeros_like(first)
    mask[:, list(columns)] = 1.0
    return mask


class _Distiller:
    """The student (the model's scorer), its frozen teacher, the states gathered so far."""

    def __init__(self, model: MaskablePPO, config: DistillConfig, init_columns: int) -> None:
        self.model, self.config = model, config
        self.student: JobScorer = model.policy.mlp_extractor  # type: ignore[assignment]
        self.teacher = copy.deepcopy(self.student).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.teacher_choice = teacher_chooser(self.scorer(), config.speed_weight)
        first = first_layer(self.student)
        self.column_mask: torch.Tensor | None = None
        if config.new_columns_only:
            self.column_mask = new_column_mask(first, init_columns, "distill")
        trained = [first] if config.new_columns_only else list(self.student.parameters())
        self.optimizer = torch.optim.Adam(trained, lr=config.learning_rate)
        self.rng = np.random.default_rng(config.seed)
        self.episodes: list[Episode] = []

    def scorer(self) -> FastScorer:
        return FastScorer.from_state_dict(self.model.policy.state_dict())

    def gather(self, round_: int) -> None:
        """Roll out the teacher (first round) or the student (later ones); label every state."""
        config = self.config
        choose = self.teacher_choice if round_ == 0 else student_chooser(self.scorer())
        for cp in training_instances(config, self.rng, config.instances):
            tables, masks = rollout(
                cp, choose, config.explore, self.rng, self.student.window_for(cp)
            )
            if len(tables) == 0:
                continue
            x = torch.from_numpy(tables)
            with torch.no_grad():
                bonus = speed_bonus_t(x[..., SPEED_LOSS], config.speed_weight)
                target = self.teacher.table_logits(x) + bonus
            self.episodes.append(Episode(x, torch.from_numpy(masks), target))

    def epoch(self, lr: float) -> float:
        """One pass over every gathered state in shuffled minibatches; the mean loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total, batches = 0.0, 0
        for e in self.rng.permutation(len(self.episodes)):
            episode = self.episodes[e]
            order = torch.from_numpy(self.rng.permutation(len(episode.tables)))
            for idx in torch.split(order, self.config.batch_size):
                logits = self.student.table_logits(episode.tables[idx])
                loss = candidate_kl(logits, episode.teacher[idx], episode.candidates[idx])
                self.optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                if self.column_mask is not None:
                    grad = first_layer(self.student).grad
                    assert grad is not None
                    grad.mul_(self.column_mask)
                self.optimizer.step()
                total += loss.item()
                batches += 1
        return total / max(batches, 1)


def distill(
    model: MaskablePPO,
    config: DistillConfig,
    quiet: bool = False,
    evaluate: Callable[[FastScorer], float] | None = None,
    init_columns: int | None = None,
) -> list[dict[str, float]]:
    """Fit `model`'s scorer to the teacher built from its current weights; one row per epoch.

    The learning rate decays linearly to a tenth over all epochs: the last weights are kept.
    `init_columns`: how many feature columns the --init model had (``new_columns_only``).
    """
    scorer: JobScorer = model.policy.mlp_extractor  # type: ignore[assignment]
    width = first_layer(scorer).shape[1]
    distiller = _Distiller(model, config, width if init_columns is None else init_columns)
    history: list[dict[str, float]] = []
    started = time.monotonic()
    steps = config.rounds * config.epochs
    bar = tqdm(total=steps, unit="epoch", disable=quiet)
    for round_ in range(config.rounds):
        distiller.gather(round_)
        for epoch in range(config.epochs):
            done = (round_ * config.epochs + epoch) / max(steps - 1, 1)
            kl = distiller.epoch(config.learning_rate * (1.0 - 0.9 * done))
            row = {
                "round": float(round_),
                "epoch": float(epoch),
                "states": float(sum(len(e.tables) for e in distiller.episodes)),
                "kl": kl,
                "seconds": round(time.monotonic() - started, 1),
            }
            if evaluate is not None:
                row["ratio_to_best_rule"] = evaluate(distiller.scorer())
            history.append(row)
            bar.update(1)
            bar.set_postfix(kl=f"{kl:.4f}")
    bar.close()
    return history
