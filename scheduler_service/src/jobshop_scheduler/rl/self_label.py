"""Self-labelling (Corsini et al., "Self-Labeling the Job Shop Scheduling Problem", 2024).

For each training instance the current policy plays `samples` rollouts with its choices drawn
from the softmax of its scores, plus its greedy pass; the shortest plan becomes the label, and
the scorer is fitted to that plan's choices by cross-entropy over each state's candidates. The
policy learns from its own best attempts, so the labels improve as it does. It needs no critic
and no reward shaping, its signal is the makespan itself, and a step's instances can be of any
shape, so one run covers a mixture of sizes and job/machine ratios.

The `objective` setting offers other labels: every sample weighted by its advantage, the tabu
search's plan (DAgger), or policy improvement by rollout (`rollout_label`), which is what the
shipped window scorer learnt from last.

The rollouts use the NumPy fast path (`fast_policy`), the same code that serves; only the
gradient step uses torch. Training keeps the weights that did best on a validation grid of
shapes (the mean ratio of the greedy makespan to the best legacy rule's) and writes a checkpoint
every `checkpoint_every` steps that `resume=True` continues from, bit for bit.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from sb3_contrib import MaskablePPO
from tqdm import tqdm

from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import BASELINE_RULES, dispatch_arrays, makespan_of
from jobshop_scheduler.instances.families import family_shop, parse_shape
from jobshop_scheduler.instances.flexible import parse_flexible, production_like, short_routes
from jobshop_scheduler.instances.taillard import LCG_MAX
from jobshop_scheduler.rl.config import ConfigError, SelfLabelConfig
from jobshop_scheduler.rl.distill import candidate_kl, column_mask, new_column_mask
from jobshop_scheduler.rl.fast_policy import Buffers, FastScorer, finishes, mean_finishes, rollout
from jobshop_scheduler.rl.features import FEATURES, N_FEATURES, FeatureScales, job_features
from jobshop_scheduler.rl.policy import JobScorer
from jobshop_scheduler.rl.state import LONG_SHOP, DispatchScheme, ShopState
from jobshop_scheduler.rl.validation import ValidationCase, evaluate

CHECKPOINT = "self_label_checkpoint.pt"
BEST = "best_model.zip"
SNAPSHOTS = "snapshots"
IntArray = NDArray[np.int64]
# (problem, a plan to start from, seed) -> (machine, start) per operation of a better plan
Teacher = Callable[[CompiledProblem, tuple[IntArray, IntArray], int], tuple[IntArray, IntArray]]


def mixture_instance(config: SelfLabelConfig, rng: np.random.Generator) -> CompiledProblem:
    """One training shop: flexible (production-like, or with short routes: `short_share`), or
    classic of one of `families` with machines drawn uniformly and jobs per machine
    log-uniformly (`ratio`), redrawn until it has at most `max_ops`."""
    if rng.random() < config.flexible_share:
        n = int(rng.integers(config.flexible_jobs[0], config.flexible_jobs[1] + 1))
        # drawn only with a share, so the older recipes draw the shops they drew
        short = config.short_share > 0 and rng.random() < config.short_share
        generate = short_routes if short else production_like
        return compile_problem(generate(n, seed=int(rng.integers(0, LCG_MAX))))
    families = config.families  # one family draws nothing, so older recipes keep their shops
    family = families[int(rng.integers(len(families)))] if len(families) > 1 else families[0]
    low, high = np.log(config.ratio[0]), np.log(config.ratio[1])
    while True:
        machines = int(rng.integers(config.machines[0], config.machines[1] + 1))
        ratio = float(np.exp(rng.uniform(low, high)))
        jobs = int(np.clip(round(ratio * machines), config.jobs[0], config.jobs[1]))
        if jobs * machines <= config.max_ops:
            return compile_problem(family_shop(family, jobs, machines, rng))


@dataclass(frozen=True)
class Plan:
    makespan: int
    choices: IntArray  # the job chosen at each step that had more than one candidate
    window: float = 0.0  # the dispatching scheme the choices were made in (`ShopState`)


def sample_plans(
    cp: CompiledProblem, scorer: FastScorer, samples: int, temperature: float, seed: int
) -> tuple[Plan, list[Plan]]:
    """The greedy plan and `samples` plans with choices drawn at `temperature`."""
    rng = np.random.default_rng(seed)
    window = scorer.window_for(cp)
    state, choices = rollout(cp, scorer)
    greedy = Plan(state.makespan, choices, window)
    sampled = []
    for _ in range(samples):
        state, choices = rollout(cp, scorer, rng, temperature)
        sampled.append(Plan(state.makespan, choices, window))
    return greedy, sampled


@dataclass(frozen=True)
class Label:
    """States of one plan and the candidate it took in each, with the weight its choices get
    in the loss (negative: they are discouraged)."""

    tables: torch.Tensor  # (states, jobs, features)
    candidates: torch.Tensor  # (states, jobs) bool
    targets: torch.Tensor  # (states, jobs) bool: the choices the label accepts (one, or more)
    weight: float


@dataclass(frozen=True)
class InstanceLabels:
    labels: list[Label]
    best: int  # the shortest makespan among the greedy and sampled plans
    greedy: int  # the greedy plan's, for the progress figures


def label_states(
    cp: CompiledProblem, plan: Plan, weight: float, keep: int = 0, seed: int = 0
) -> Label:
    """Replay `plan` and record the states that had a choice to make: all of them, or `keep`
    drawn at random (an unbiased estimate of the plan's mean loss at a fraction of the cost)."""
    steps = len(plan.choices)
    wanted = np.ones(steps, np.bool_)
    if 0 < keep < steps:
        wanted[:] = False
        wanted[np.random.default_rng(seed).choice(steps, size=keep, replace=False)] = True
    state = ShopState(cp, plan.window)
    scales = FeatureScales(state)
    tables, masks, targets = [], [], []
    for step, job in enumerate(_walk(state, plan)):
        if wanted[step]:
            tables.append(job_features(state, scales, cp.n_jobs))
            masks.append(state.candidates.copy())
            targets.append(_one_hot(job, cp.n_jobs))
    if state.makespan != plan.makespan:
        raise AssertionError(f"replay gave {state.makespan}, the rollout {plan.makespan}")
    return _label(tables, masks, targets, weight, cp.n_jobs)


def expert_label(
    cp: CompiledProblem,
    scorer: FastScorer,
    expert_start: IntArray,
    *,
    follow: float,
    keep: int,
    seed: int,
) -> Label:
    """DAgger on the expert's plan. Candidates that would take the same machine compete for
    it, and the right one is the one the expert runs first there (the earliest start in its
    plan); the order among candidates of different machines changes nothing, so every
    candidate first on its machine is a right answer and the loss is the probability mass on
    them. The pass follows the expert's earliest choice with probability `follow` and the
    policy's own greedy choice otherwise, so the policy learns on the states it reaches."""
    rng = np.random.default_rng(seed)
    state = ShopState(cp, scorer.window_for(cp))
    scales = FeatureScales(state)
    buffers = Buffers.for_jobs(cp.n_jobs)
    tables, masks, targets = [], [], []
    for candidates in state.decisions():
        starts = expert_start[state.next_op[candidates]]
        machines = np.array([state.machine_for(int(job))[0] for job in candidates])
        first = np.array([starts[i] == starts[machines == m].min() for i, m in enumerate(machines)])
        if not first.all():  # only states where the choice matters teach anything
            tables.append(job_features(state, scales, cp.n_jobs))
            masks.append(state.candidates.copy())
            target = np.zeros(cp.n_jobs, np.bool_)
            target[candidates[first]] = True
            targets.append(target)
        if rng.random() < follow:
            job = int(candidates[np.argmin(starts)])
        else:
            job = scorer.choose(state, scales, buffers)
        state.dispatch(job)
    picked = np.arange(len(targets))
    if 0 < keep < len(targets):
        picked = np.sort(rng.choice(len(targets), size=keep, replace=False))
    return _label([tables[i] for i in picked], [masks[i] for i in picked],
                  [targets[i] for i in picked], 1.0, cp.n_jobs)  # fmt: skip


def rollout_label(
    cp: CompiledProblem,
    scorer: FastScorer,
    *,
    follow: float,
    keep: int,
    decisions: int,
    seed: int,
    finish_samples: int = 0,
    temperature: float = 1.0,
) -> tuple[Label, int]:
    """Policy improvement by rollout (Bertsekas' rollout algorithm, as a step of approximate
    policy iteration): in a state, dispatch each candidate and let the policy finish the plan
    greedily; the right answers are the candidates whose plan is shortest. The policy that
    takes them is never worse than the greedy one and on square shops 6 % shorter, and unlike
    an expert's plan the labels are choices of the policy's own dispatching scheme, on its own
    states, that it can follow: it need only get the one decision right. States where every
    candidate gives the same plan length teach nothing and are left out. About `keep` states
    of the greedy pass are labelled (all: 0); at a labelled state the pass goes on with the
    best candidate with probability `follow`, with the greedy one otherwise. With
    `finish_samples`, a candidate's worth is the mean of its greedy finish and that many finishes
    drawn at `temperature` (`fast_policy.mean_finishes`). Returns the label and the shortest
    greedy plan seen."""
    rng = np.random.default_rng(seed)
    state = ShopState(cp, scorer.window_for(cp))
    scales = FeatureScales(state)
    buffers = Buffers.for_jobs(cp.n_jobs)
    share = 1.0 if keep <= 0 else keep / max(decisions, 1)
    tables, masks, targets = [], [], []
    shortest = np.iinfo(np.int64).max
    for candidates in state.decisions():
        job = scorer.choose(state, scales, buffers)
        if rng.random() < share:
            spans = finishes(state, candidates, scorer, scales, buffers)
            shortest = min(shortest, int(spans.min()))
            if finish_samples:
                worth = mean_finishes(
                    state, candidates, scorer, scales, buffers,
                    greedy=spans, samples=finish_samples, rng=rng, temperature=temperature,
                )  # fmt: skip
                best = worth == worth.min()
            else:
                best = spans == spans.min()
            if not best.all():
                tables.append(job_features(state, scales, cp.n_jobs))
                masks.append(state.candidates.copy())
                target = np.zeros(cp.n_jobs, np.bool_)
                target[candidates[best]] = True
                targets.append(target)
            if not best[candidates == job][0] and rng.random() < follow:
                job = int(candidates[np.argmax(best)])
        state.dispatch(job)
    shortest = min(shortest, state.makespan)
    return _label(tables, masks, targets, 1.0, cp.n_jobs), shortest


def _one_hot(job: int, n_jobs: int) -> NDArray[np.bool_]:
    target = np.zeros(n_jobs, np.bool_)
    target[job] = True
    return target


def _label(
    tables: list[NDArray[np.float32]],
    masks: list[NDArray[np.bool_]],
    targets: list[NDArray[np.bool_]],
    weight: float,
    n_jobs: int,
) -> Label:
    def stack(rows: list[Any], shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.from_numpy(np.stack(rows) if rows else np.zeros((0, *shape), dtype))

    return Label(
        stack(tables, (n_jobs, N_FEATURES), np.float32),
        stack(masks, (n_jobs,), np.bool_),
        stack(targets, (n_jobs,), np.bool_),
        weight,
    )


def instance_labels(
    cp: CompiledProblem,
    scorer: FastScorer,
    config: SelfLabelConfig,
    seed: int,
    teacher: Teacher | None = None,
) -> InstanceLabels:
    """What one instance teaches, by `config.objective`:

    - "best" (self-labelling proper): the shortest plan, greedy one included, with weight 1.
    - "advantage": every sampled plan, weighted by its normalised advantage over the samples'
      mean makespan (a policy gradient with the samples as each other's baseline): the drift
      that imitating one's own samples adds cancels, so only what made plans shorter moves
      the weights. An instance whose samples are all equally long teaches nothing.
    - "rollout": in about `states_per_plan` states of the greedy pass, the candidates whose
      greedy finish is shortest (`rollout_label`), on any shop the trained scorer dispatches.
    - "expert": `teacher` improves the best of the greedy and sampled plans (and with
      `teacher_from_rules` of the baseline rules' plans: `teacher_start`), and the policy
      imitates the result on its own states (`expert_label`), on classic shops where the
      result is at least `min_gain` shorter than the greedy plan: where the expert finds no
      better plan, its choices are only another of many equally good ones, and fitting them
      is noise. Other instances only give `anchor` states.

    A shop dispatched by the scorer the run does not train (`SelfLabelConfig.trains`) teaches
    nothing under any objective: it is not sampled and only gives `anchor` states.
    """
    keep = config.states_per_plan
    trained_here = scheme_of(scorer.window_for(cp), scorer.scheme) == trained_scheme(
        config, scorer.window_scorer is not None
    )
    samples = config.samples if trained_here else 0
    greedy, sampled = sample_plans(cp, scorer, samples, config.temperature, seed)
    best = min([greedy, *sampled], key=lambda plan: plan.makespan)  # ties: the greedy plan

    def anchored(shortest: int) -> InstanceLabels:
        """Nothing to learn, but with `anchor` the greedy states hold the policy there."""
        anchors = [label_states(cp, greedy, 0.0, keep, seed)] if config.anchor > 0 else []
        return InstanceLabels(anchors, shortest, greedy.makespan)

    if not trained_here:
        return anchored(best.makespan)
    if config.objective == "expert":
        if teacher is None:
            raise ConfigError('[self_label] objective "expert" needs a teacher')
        # The label orders jobs on the machine the dispatch would take; on a flexible shop the
        # expert has its own machine assignment, so there its order is no label for ours.
        if not cp.is_classic:
            return anchored(best.makespan)
        state = replay(cp, best)
        start = teacher_start(cp, (state.op_machine, state.op_start), config.teacher_from_rules)
        expert = teacher(cp, start, seed)
        shortest = min(best.makespan, makespan_of(cp, *expert))
        if shortest > (1.0 - config.min_gain) * greedy.makespan:
            return anchored(shortest)
        label = expert_label(
            cp, scorer, expert[1], follow=config.follow_teacher, keep=keep, seed=seed
        )
        return InstanceLabels([label], shortest, greedy.makespan)
    if config.objective == "rollout":
        label, shortest = rollout_label(
            cp, scorer, follow=config.follow_teacher, keep=keep,
            decisions=len(greedy.choices), seed=seed,
            finish_samples=config.finish_samples, temperature=config.temperature,
        )  # fmt: skip
        return InstanceLabels([label], min(shortest, best.makespan), greedy.makespan)
    if config.objective == "best":
        labels = [label_states(cp, best, 1.0, keep, seed)]
    else:
        spans = np.array([plan.makespan for plan in sampled], dtype=np.float64)
        spread = spans.std()
        advantage = (spans.mean() - spans) / spread if spread > 0 else np.zeros_like(spans)
        labels = [
            label_states(cp, plan, float(a) / len(sampled), keep, seed + k)
            for k, (plan, a) in enumerate(zip(sampled, advantage, strict=True))
            if a != 0
        ]
    return InstanceLabels(labels, best.makespan, greedy.makespan)


def teacher_start(
    cp: CompiledProblem, policy_plan: tuple[IntArray, IntArray], with_rules: bool
) -> tuple[IntArray, IntArray]:
    """The plan the teacher improves: the policy's best, or (`with_rules`) the shortest of it
    and the baseline rules' plans, the policy's on ties."""
    plans = [policy_plan]
    if with_rules:
        plans += [
            (np.asarray(machine, np.int64), np.asarray(start, np.int64))
            for machine, start in (dispatch_arrays(cp, rule) for rule in BASELINE_RULES)
        ]
    return min(plans, key=lambda plan: makespan_of(cp, *plan))


def _walk(state: ShopState, plan: Plan) -> Iterator[int]:
    """Replay `plan` on `state`: at each state with a choice, yield the job the plan chose
    there before dispatching it. `state` ends finished."""
    choices = iter(plan.choices.tolist())
    for _ in state.decisions():
        job = next(choices)
        yield job
        state.dispatch(job)


def replay(cp: CompiledProblem, plan: Plan) -> ShopState:
    """The finished state of `plan`'s choices."""
    state = ShopState(cp, plan.window)
    for _ in _walk(state, plan):
        pass
    return state


LabelTask = tuple[CompiledProblem, FastScorer, SelfLabelConfig, int, "Teacher | None"]


def _label_task(task: LabelTask) -> InstanceLabels:
    return instance_labels(*task)


def candidate_cross_entropy(
    logits: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Mean over states of -log p(the choice is a target), the softmax over the candidates."""
    floor = torch.finfo(logits.dtype).min / 2
    log_p = torch.log_softmax(logits.masked_fill(~candidates, floor), dim=-1)
    return -torch.logsumexp(log_p.masked_fill(~targets, floor), dim=-1).mean()


def validation_grid(config: SelfLabelConfig) -> dict[str, list[ValidationCase]]:
    """`validation_count` instances per shape of `validation_shapes` (classic "JxM", of a
    family "JxM:FAMILY", production-like "prodN", or with short routes "shortN"), from
    `validation_seed`; disjoint from the benchmark's seeds."""
    rng = np.random.default_rng(config.validation_seed)
    shapes: dict[str, list[ValidationCase]] = {}
    for name in config.validation_shapes:
        cases = shapes.setdefault(name, [])
        for k in range(config.validation_count):
            flexible = parse_flexible(name)
            if flexible:
                generate, jobs = flexible
                problem = generate(jobs, int(rng.integers(0, LCG_MAX)))
            else:
                shape = parse_shape(name)
                problem = family_shop(shape.family, shape.jobs, shape.machines, rng)
            cases.append(ValidationCase.of(f"{name}-{k}", problem))
    return shapes


def validate(scorer: FastScorer, shapes: dict[str, list[ValidationCase]]) -> dict[str, float]:
    """Per shape, the mean ratio greedy / best rule; their "mean" and the "worst" shape's
    (below 1 beats the rules)."""
    ratios = {name: evaluate(scorer, cases) for name, cases in shapes.items()}
    by_shape = list(ratios.values())
    ratios["mean"] = float(np.mean(by_shape)) if by_shape else float("nan")
    ratios["worst"] = float(np.max(by_shape)) if by_shape else float("nan")
    return ratios


@dataclass
class Progress:
    """What a checkpoint holds besides the weights and the optimizer."""

    step: int = 0
    best: float = float("inf")
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def _resumable(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a resumed run must share with the checkpoint: all but the length and the
    worker count (each shop's seed is drawn in the parent, so workers change no result). A
    setting added since the checkpoint was written counts with its default."""
    config = {**asdict(SelfLabelConfig()), **config}
    return {k: v for k, v in config.items() if k not in ("steps", "workers")}


def scheme_of(window: float, scheme: DispatchScheme) -> str:
    """The scorer that chooses in a shop dispatched with `window` (`state.dispatch_window`)
    by a model of `scheme`."""
    if scheme.alike_scorer and scheme.is_alike_window(window):
        return "alike"
    if window > 0:
        return "window"
    return "long" if window == LONG_SHOP else "non-delay"


def trained_scheme(config: SelfLabelConfig, has_window: bool) -> str:
    """The scorer a run trains (`SelfLabelConfig.trains`), "auto" resolved."""
    if config.trains == "auto":
        return "window" if has_window else "non-delay"
    return config.trains


def _actor_parameters(scorer: JobScorer, config: SelfLabelConfig) -> list[torch.nn.Parameter]:
    """What a run trains: one scorer, so the others' plans stay exactly the --init model's."""
    trained = trained_scheme(config, bool(scorer.window_parameters()))
    parameters = {
        "window": scorer.window_parameters,
        "long": scorer.long_parameters,
        "alike": scorer.alike_parameters,
        "non-delay": scorer.non_delay_parameters,
    }[trained]()
    if not parameters:
        raise ConfigError(f'[self_label] trains = "{trained}": the model has no {trained} scorer')
    return parameters


@contextmanager
def _labeller(workers: int) -> Iterator[Callable[[list[Any]], list[InstanceLabels]]]:
    if workers <= 1:
        yield lambda tasks: [_label_task(t) for t in tasks]
        return
    # fork: the workers only run NumPy and the numba kernels the parent has loaded
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield lambda tasks: pool.map(_label_task, tasks, chunksize=1)


class _SelfLabeller:
    """The scorer, its optimizer, the instance stream and the progress: what a checkpoint
    holds, and the three things a run does with them (step, validate, checkpoint)."""

    def __init__(
        self,
        model: MaskablePPO,
        config: SelfLabelConfig,
        out_dir: Path,
        teacher: Teacher | None,
        init_columns: int | None = None,
    ) -> None:
        self.model, self.config, self.out_dir = model, config, out_dir
        self.teacher = teacher
        self.scorer: JobScorer = model.policy.mlp_extractor  # type: ignore[assignment]
        self.start = copy.deepcopy(self.scorer).eval()  # what `anchor` keeps the policy near
        for parameter in self.start.parameters():
            parameter.requires_grad_(False)
        self.trained = _actor_parameters(self.scorer, config)
        self.column_mask: torch.Tensor | None = None
        if config.new_columns_only or config.columns:  # the trained scorer's first layer only
            self.trained = self.trained[:1]
            self.column_mask = (
                column_mask(self.trained[0], [FEATURES.index(c) for c in config.columns])
                if config.columns
                else new_column_mask(self.trained[0], init_columns, "self_label")
            )
        self.optimizer = torch.optim.Adam(self.trained, lr=config.learning_rate)
        self.rng = np.random.default_rng(config.seed)
        self.progress = Progress()
        self.checkpoint_path = out_dir / CHECKPOINT
        self.shapes = validation_grid(config)

    def _loss(self, label: Label) -> torch.Tensor:
        """The label's weighted cross-entropy, plus `anchor` x the KL divergence from the
        starting policy on the same states."""
        logits = self.scorer.table_logits(label.tables)
        loss = label.weight * candidate_cross_entropy(logits, label.candidates, label.targets)
        if self.config.anchor > 0:
            with torch.no_grad():
                start = self.start.table_logits(label.tables)
            loss = loss + self.config.anchor * candidate_kl(logits, start, label.candidates)
        return loss

    def fast(self) -> FastScorer:
        return FastScorer.from_state_dict(self.model.policy.state_dict())

    def resume(self) -> None:
        path = self.checkpoint_path
        if not path.is_file():
            raise ConfigError(f"--resume: no checkpoint {path}")
        saved = torch.load(path, weights_only=False)
        if _resumable(saved["config"]) != _resumable(asdict(self.config)):
            raise ConfigError(f"--resume: {path} was written with other [self_label] settings")
        self.model.policy.load_state_dict(saved["policy"])
        self.start.load_state_dict(saved["start"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.rng.bit_generator.state = saved["rng"]
        self.progress = Progress(**saved["progress"])

    def checkpoint(self) -> None:
        state = {
            "config": asdict(self.config),
            "policy": self.model.policy.state_dict(),
            "start": self.start.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "progress": asdict(self.progress),
        }
        partial = self.checkpoint_path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.checkpoint_path)

    def evaluate(self) -> None:
        """Validate; the best weights so far (by `select`) go to best_model.zip."""
        ratios = validate(self.fast(), self.shapes)
        progress = self.progress
        progress.history.append(
            {"step": float(progress.step), **{f"val_{k}": v for k, v in ratios.items()}}
        )
        snapshot = None
        if self.config.snapshots:
            snapshot = self.out_dir / SNAPSHOTS / f"step_{progress.step:06d}.zip"
            snapshot.parent.mkdir(exist_ok=True)
            self.model.save(snapshot)
        score = ratios[self.config.select]
        if score < progress.best:
            progress.best = score
            if snapshot is None:
                self.model.save(self.out_dir / BEST)
            else:  # the same weights: copy the file rather than serialise them again
                shutil.copyfile(snapshot, self.out_dir / BEST)

    def blend(self) -> dict[str, float]:
        """Move the scorer to start + blend x (scorer - start); its validation ratios."""
        start = dict(self.start.named_parameters())
        with torch.no_grad():
            for name, parameter in self.scorer.named_parameters():
                parameter.lerp_(start[name], 1.0 - self.config.blend)
        return validate(self.fast(), self.shapes)

    def tasks(self) -> list[LabelTask]:
        config, weights = self.config, self.fast()
        if config.teach_ratio > 0.0:  # the shops that teach the long-shop scorer
            weights = replace(weights, scheme=replace(weights.scheme, ratio=config.teach_ratio))
        return [
            (
                mixture_instance(config, self.rng),
                weights,
                config,
                int(self.rng.integers(0, 2**62)),
                self.teacher,
            )
            for _ in range(config.instances)
        ]

    def learn(self, instances: list[InstanceLabels]) -> float:
        """One gradient step: per instance the summed loss of its labels (`_loss`), averaged
        over the instances that have any; returns the loss."""
        losses = [
            torch.stack([self._loss(x) for x in labels]).sum()
            for labels in ([x for x in found.labels if len(x.targets)] for found in instances)
            if labels
        ]
        if not losses:
            return 0.0
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        grad = self.trained[0].grad  # None when no state of this step reached that scorer
        if self.column_mask is not None and grad is not None:
            grad.mul_(self.column_mask)
        torch.nn.utils.clip_grad_norm_(self.trained, self.config.max_grad_norm)
        self.optimizer.step()
        return float(loss.detach())


def self_label(
    model: MaskablePPO,
    config: SelfLabelConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    teacher: Teacher | None = None,
    init_columns: int | None = None,
) -> dict[str, Any]:
    """Run `config.steps` steps on `model`'s scorer; `model` ends with the best weights, which
    are also in ``out_dir/best_model.zip``. Returns the summary the model card records.
    `init_columns`: how many feature columns the --init model had (``new_columns_only``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.objective == "expert" and teacher is None:
        raise ConfigError(
            '[self_label] objective "expert" needs a teacher (schedctl train has one)'
        )
    run = _SelfLabeller(model, config, out_dir, teacher, init_columns)
    if resume:
        run.resume()
    progress = run.progress
    if progress.step == 0:
        run.evaluate()  # the starting weights compete too: training never ships worse
    bar = tqdm(total=config.steps, initial=progress.step, unit="step", disable=quiet)
    started = time.monotonic() - progress.seconds
    with _labeller(config.workers) as label:
        while progress.step < config.steps:
            labels = label(run.tasks())
            loss = run.learn(labels)
            progress.step += 1
            progress.seconds = time.monotonic() - started
            gain = np.mean([1 - x.best / x.greedy for x in labels]) if labels else 0.0
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}", sample_gain=f"{gain:.3f}", best_val=f"{progress.best:.4f}"
            )
            if progress.step % config.eval_every == 0 or progress.step == config.steps:
                run.evaluate()
            if progress.step % config.checkpoint_every == 0 or progress.step == config.steps:
                run.checkpoint()
    bar.close()
    model.set_parameters(str(out_dir / BEST), exact_match=True, device="cpu")
    blended = run.blend() if config.blend != 1.0 else {}
    (out_dir / "self_label_history.json").write_text(json.dumps(progress.history, indent=1) + "\n")
    return {
        "config": asdict(config),
        "steps": progress.step,
        "instances": progress.step * config.instances,
        "wall_seconds": round(progress.seconds, 1),
        "best_validation_ratio_to_best_rule": progress.best,
        "selected_by": config.select,
        "blend": config.blend,
        **({"blended_validation": blended} if blended else {}),
        "validation": progress.history,
    }
