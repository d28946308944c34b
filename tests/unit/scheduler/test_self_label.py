"""Self-labelling (`rl.self_label`): labels are the policy's best plans, a tiny run on a mixture
of shapes learns, and a run resumed from its checkpoint is the run that was not interrupted."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import dispatch_arrays, makespan_of
from jobshop_scheduler.instances import load_taillard
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.instances.taillard import taillard
from jobshop_scheduler.rl.config import ConfigError, SelfLabelConfig, TrainConfig, load_config
from jobshop_scheduler.rl.env import JobShopEnv
from jobshop_scheduler.rl.fast_policy import (
    Buffers,
    FastScorer,
    finish,
    finishes,
    greedy_schedule,
    mean_finishes,
    rollout,
)
from jobshop_scheduler.rl.features import FEATURES, N_FEATURES, WINDOW_COLUMN, FeatureScales
from jobshop_scheduler.rl.policy import JobScorerPolicy
from jobshop_scheduler.rl.self_label import (
    CHECKPOINT,
    InstanceLabels,
    _label_task,
    _SelfLabeller,
    candidate_cross_entropy,
    expert_label,
    instance_labels,
    mixture_instance,
    rollout_label,
    sample_plans,
    self_label,
    teacher_start,
    validate,
)
from jobshop_scheduler.rl.state import ShopState
from jobshop_scheduler.rl.train import train
from jobshop_scheduler.search.teacher import TabuTeacher

pytestmark = pytest.mark.unit

TINY = SelfLabelConfig(
    steps=4,
    instances=2,
    samples=4,
    jobs=(5, 8),
    machines=(3, 5),
    flexible_share=0.25,
    flexible_jobs=(5, 8),
    eval_every=2,
    checkpoint_every=1,
    validation_shapes=("8x4", "prod8"),
    validation_count=2,
)


def untrained(seed: int = 0) -> MaskablePPO:
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    return MaskablePPO(JobScorerPolicy, env, n_steps=64, batch_size=64, seed=seed, device="cpu")


def test_the_label_is_the_best_of_the_greedy_pass_and_the_samples() -> None:
    cp = compile_problem(production_like(12, seed=3))
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    greedy, sampled = sample_plans(cp, scorer, samples=16, temperature=1.0, seed=1)
    assert greedy.makespan == greedy_schedule(cp, scorer).makespan
    found = instance_labels(cp, scorer, dataclasses.replace(TINY, samples=16), seed=1)
    assert found.greedy == greedy.makespan
    assert found.best == min(p.makespan for p in [greedy, *sampled]) <= greedy.makespan
    (label,) = found.labels  # the replay inside reproduces the best plan's makespan
    assert label.weight == 1.0
    assert len(label.targets) == len(label.tables) == len(label.candidates) > 0
    assert bool((label.targets.sum(dim=1) == 1).all())  # one choice per state
    assert bool((label.candidates | ~label.targets).all())  # ... and it is a candidate
    assert bool((label.candidates.sum(dim=1) > 1).all())  # forced moves teach nothing


def test_advantage_labels_weigh_every_sample_against_the_others() -> None:
    cp = compile_problem(load_taillard("ta01"))
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    config = dataclasses.replace(TINY, samples=8, objective="advantage", states_per_plan=20)
    found = instance_labels(cp, scorer, config, seed=4)
    _, sampled = sample_plans(cp, scorer, samples=8, temperature=1.0, seed=4)
    spans = np.array([p.makespan for p in sampled], dtype=float)
    expected = (spans.mean() - spans) / spans.std() / len(spans)
    assert [x.weight for x in found.labels] == pytest.approx(list(expected[expected != 0]))
    assert sum(x.weight for x in found.labels) == pytest.approx(0.0, abs=1e-9)
    assert all(len(x.targets) == 20 for x in found.labels)  # a random subset of each plan


def test_expert_labels_are_the_jobs_the_expert_runs_first_on_each_contested_machine() -> None:
    cp = compile_problem(load_taillard("ta01"))
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    greedy, _ = rollout(cp, scorer)
    expert = TabuTeacher(iterations_per_op=5)(cp, (greedy.op_machine, greedy.op_start), seed=0)
    assert makespan_of(cp, *expert) <= greedy.makespan
    label = expert_label(cp, scorer, expert[1], follow=1.0, keep=0, seed=0)
    assert len(label.targets) > 0
    assert bool((label.candidates | ~label.targets).all())  # targets are candidates
    # only contested states are kept, and in each some candidate is a wrong answer
    assert bool((label.targets.sum(dim=1) < label.candidates.sum(dim=1)).all())
    first = expert[1][cp.job_op_start[:-1]]  # a first operation the expert starts earliest ...
    assert bool(label.targets[0, int(np.argmin(first))])  # ... is right in the first state
    sampled = expert_label(cp, scorer, expert[1], follow=0.0, keep=7, seed=0)
    assert len(sampled.targets) == 7  # `keep` states drawn from the policy's own pass


def test_a_copied_state_finishes_on_its_own() -> None:
    cp = compile_problem(taillard(8, 4, 1, 1))
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    state = ShopState(cp)
    scales = FeatureScales(state)
    state.dispatch(int(np.flatnonzero(state.candidates)[0]))
    before = (state.next_op.copy(), state.machine_free.copy(), state.scheduled)
    twin = state.copy()
    span = finish(twin, scorer, scales, Buffers.for_jobs(cp.n_jobs))
    assert twin.done and span == twin.makespan
    assert not state.done and state.scheduled == before[2]
    assert (state.next_op == before[0]).all() and (state.machine_free == before[1]).all()
    assert finish(state, scorer, scales, Buffers.for_jobs(cp.n_jobs)) == span


def test_rollout_labels_are_the_candidates_whose_greedy_finish_is_shortest() -> None:
    cp = compile_problem(taillard(10, 5, 3, 3))
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    greedy, choices = rollout(cp, scorer)
    label, shortest = rollout_label(cp, scorer, follow=0.0, keep=0, decisions=len(choices), seed=0)
    # the same pass, each candidate finished by the policy: the shortest ones are the answers
    state = ShopState(cp, scorer.window_for(cp))
    scales, buffers = FeatureScales(state), Buffers.for_jobs(cp.n_jobs)
    expected, spans_seen = [], []
    while not state.done:
        candidates = np.flatnonzero(state.candidates)
        if len(candidates) > 1:
            spans = []
            for job in candidates:
                twin = state.copy()
                twin.dispatch(int(job))
                spans.append(finish(twin, scorer, scales, buffers))
            spans_seen += spans
            if min(spans) < max(spans):  # states where every choice is as good teach nothing
                expected.append(candidates[np.asarray(spans) == min(spans)].tolist())
        state.dispatch(
            scorer.choose(state, scales, buffers) if len(candidates) > 1 else int(candidates[0])
        )
    assert state.makespan == greedy.makespan  # follow 0: the greedy pass
    assert expected, "an untrained policy has choices that matter on a 10x5 shop"
    assert [np.flatnonzero(t.numpy()).tolist() for t in label.targets] == expected
    assert bool((label.candidates | ~label.targets).all())
    assert shortest == min(spans_seen) <= greedy.makespan
    # following the answers is the rollout policy: never longer than the greedy pass
    _, improved = rollout_label(cp, scorer, follow=1.0, keep=0, decisions=len(choices), seed=0)
    assert improved < greedy.makespan
    sampled, _ = rollout_label(cp, scorer, follow=0.0, keep=5, decisions=len(choices), seed=1)
    assert 0 < len(sampled.targets) < len(label.targets)  # `keep` of the states, about


def test_sampled_finishes_average_the_greedy_finish_with_drawn_ones() -> None:
    cp = compile_problem(taillard(10, 5, 3, 3))
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    state = ShopState(cp)
    scales, buffers = FeatureScales(state), Buffers.for_jobs(cp.n_jobs)
    candidates = np.flatnonzero(state.candidates)
    greedy = finishes(state, candidates, scorer, scales, buffers)

    def worth(samples: int, temperature: float, seed: int = 0) -> np.ndarray:
        return mean_finishes(
            state, candidates, scorer, scales, buffers, greedy=greedy,
            samples=samples, rng=np.random.default_rng(seed), temperature=temperature,
        )  # fmt: skip

    assert (worth(0, 1.0) == greedy).all()  # no draws: the greedy finish itself
    assert (worth(3, 1e-6) == greedy).all()  # draws at a near-zero temperature are greedy
    drawn = worth(8, 1.0)
    assert state.scheduled == 0  # the state is left as it is
    assert not np.array_equal(drawn, greedy)  # draws at temperature 1 take other plans
    # each value is the mean of nine plans, the greedy one among them
    drawn_only = 9 * drawn - greedy
    lower = int(cp.op_min_duration.reshape(10, 5).sum(axis=1).max())
    assert (drawn_only >= 8 * lower).all()
    assert (worth(8, 1.0) == drawn).all()  # the same draws from the same seed


def test_rollout_labels_with_sampled_finishes_follow_the_drawn_plans() -> None:
    cp = compile_problem(taillard(10, 5, 3, 3))
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    _, choices = rollout(cp, scorer)

    def labels(samples: int, temperature: float = 1.0) -> tuple[torch.Tensor, int]:
        label, shortest = rollout_label(
            cp, scorer, follow=0.0, keep=0, decisions=len(choices), seed=0,
            finish_samples=samples, temperature=temperature,
        )  # fmt: skip
        assert bool((label.candidates | ~label.targets).all())
        return label.targets, shortest

    greedy, greedy_shortest = labels(0)
    # draws at a near-zero temperature are the greedy finish: the same answers
    cold, _ = labels(4, 1e-6)
    assert torch.equal(cold, greedy)
    drawn, shortest = labels(4)
    assert shortest == greedy_shortest  # `shortest` is still the greedy finishes' best
    assert len(drawn) > 0
    assert drawn.shape != greedy.shape or not torch.equal(drawn, greedy)


def test_sampled_finishes_need_a_temperature_above_zero(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[ppo]\ntotal_timesteps = 0\n[self_label]\nfinish_samples = -1\n")
    with pytest.raises(ConfigError, match="finish_samples: -1 is below 0"):
        load_config(recipe)
    recipe.write_text(
        "[ppo]\ntotal_timesteps = 0\n"
        "[self_label]\nfinish_samples = 4\nsamples = 0\ntemperature = 0.0\n"
    )
    with pytest.raises(ConfigError, match=r"temperature: 0.0 is not above 0"):
        load_config(recipe)


def test_the_teacher_starts_from_a_rule_plan_only_when_asked_and_when_it_is_shorter() -> None:
    cp = compile_problem(load_taillard("ta01"))
    machines, starts = dispatch_arrays(cp, "edd")  # 1830 on ta01
    edd = (np.asarray(machines, np.int64), np.asarray(starts, np.int64))
    mor = makespan_of(cp, *dispatch_arrays(cp, "mor"))  # 1438, the best baseline rule there
    assert teacher_start(cp, edd, with_rules=False) is edd
    start = teacher_start(cp, edd, with_rules=True)
    assert makespan_of(cp, *start) == mor
    # a policy plan no rule beats is kept, ties included
    assert teacher_start(cp, start, with_rules=True) is start


def test_the_expert_objective_needs_a_teacher(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, objective="expert")
    with pytest.raises(ConfigError, match="needs a teacher"):
        self_label(untrained(), config, tmp_path, quiet=True)
    summary = self_label(untrained(), config, tmp_path, quiet=True, teacher=TabuTeacher(5))
    assert summary["steps"] == TINY.steps


def test_a_flexible_shop_gives_the_expert_objective_anchor_states_only() -> None:
    """The expert's machine assignment is not the dispatch's, so its order labels nothing."""
    scorer = FastScorer.from_state_dict(untrained().policy.state_dict())
    config = dataclasses.replace(TINY, objective="expert", anchor=1.0)
    flexible = compile_problem(production_like(10, seed=1))
    found = instance_labels(flexible, scorer, config, seed=0, teacher=TabuTeacher(5))
    assert found.labels and all(x.weight == 0.0 for x in found.labels)
    classic = compile_problem(load_taillard("ta01"))
    found = instance_labels(classic, scorer, config, seed=0, teacher=TabuTeacher(5))
    assert found.best < found.greedy  # an untrained policy: the expert is far shorter
    assert [x.weight for x in found.labels] == [1.0]


def changed_by_a_step(
    model: MaskablePPO, config: SelfLabelConfig, labelled: InstanceLabels, tmp_path: Path
) -> set[str]:
    """The state-dict entries one learning step on ``labelled`` changes."""
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    run = _SelfLabeller(model, config, tmp_path, TabuTeacher(5))
    assert run.learn([labelled]) > 0.0
    after = model.policy.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_a_window_model_learns_the_expert_where_it_dispatches_with_the_window(
    tmp_path: Path,
) -> None:
    """Non-delay dispatching cannot follow the expert's order, so a model with a window takes
    labels on the shops it dispatches with it, and a step trains its window scorer only: the
    non-delay scorer's plans stay the --init model's."""
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    model = MaskablePPO(
        JobScorerPolicy, env, policy_kwargs={"window": 1.0, "window_ratio": 2.0}, device="cpu"
    )
    scorer = FastScorer.from_state_dict(model.policy.state_dict())
    config = dataclasses.replace(TINY, objective="expert", samples=0)
    square = compile_problem(load_taillard("ta01"))
    labelled = instance_labels(square, scorer, config, seed=0, teacher=TabuTeacher(5))
    assert [x.weight for x in labelled.labels] == [1.0]
    tables = labelled.labels[0].tables
    assert bool((tables[..., WINDOW_COLUMN][tables[..., 0] > 0] == 1.0).all())
    long = compile_problem(taillard(40, 5, 1, 2))
    assert not instance_labels(long, scorer, config, seed=0, teacher=TabuTeacher(5)).labels

    changed = changed_by_a_step(model, config, labelled, tmp_path)
    assert changed and all(k.startswith("mlp_extractor.window_") for k in changed)


def test_new_columns_only_moves_the_new_columns_of_the_trained_scorer_alone(
    tmp_path: Path,
) -> None:
    """Every other weight keeps its value exactly, so the plans of the other scorers, and what
    the old columns say in this one, are the --init model's."""
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    model = MaskablePPO(
        JobScorerPolicy, env, policy_kwargs={"window": 1.0, "window_ratio": 2.0}, device="cpu"
    )
    scorer = FastScorer.from_state_dict(model.policy.state_dict())
    config = dataclasses.replace(TINY, objective="expert", samples=0, new_columns_only=True)
    square = compile_problem(load_taillard("ta01"))
    labelled = instance_labels(square, scorer, config, seed=0, teacher=TabuTeacher(5))
    first = "mlp_extractor.window_embed.0.weight"
    before = model.policy.state_dict()[first].clone()
    with pytest.raises(ConfigError, match="new_columns_only: the --init model has every"):
        _SelfLabeller(model, config, tmp_path, TabuTeacher(5), init_columns=N_FEATURES)
    run = _SelfLabeller(model, config, tmp_path, TabuTeacher(5), init_columns=N_FEATURES - 4)
    assert run.learn([labelled]) > 0.0
    after = model.policy.state_dict()[first]
    assert torch.equal(after[:, :-4], before[:, :-4])
    assert not torch.equal(after[:, -4:], before[:, -4:])
    assert changed_by_a_step(model, dataclasses.replace(config, new_columns_only=False),
                             labelled, tmp_path)  # fmt: skip
    fresh = MaskablePPO(
        JobScorerPolicy, env, policy_kwargs={"window": 1.0, "window_ratio": 2.0}, device="cpu"
    )
    run = _SelfLabeller(fresh, config, tmp_path, TabuTeacher(5), init_columns=N_FEATURES - 4)
    start = {k: v.clone() for k, v in fresh.policy.state_dict().items()}
    run.learn([labelled])
    changed = {k for k, v in fresh.policy.state_dict().items() if not torch.equal(start[k], v)}
    assert changed == {first}


def test_columns_moves_the_named_columns_of_the_trained_scorer_alone(tmp_path: Path) -> None:
    """`columns` is `new_columns_only` for columns the --init model already has (a long-shop
    scorer copied before they existed keeps zero weights there)."""
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    model = MaskablePPO(
        JobScorerPolicy, env, policy_kwargs={"window": 1.0, "window_ratio": 2.0}, device="cpu"
    )
    scorer = FastScorer.from_state_dict(model.policy.state_dict())
    named = ("machine_load", "routing_alike")
    config = dataclasses.replace(TINY, objective="expert", samples=0, columns=named)
    square = compile_problem(load_taillard("ta01"))
    labelled = instance_labels(square, scorer, config, seed=0, teacher=TabuTeacher(5))
    first = "mlp_extractor.window_embed.0.weight"
    start = {k: v.clone() for k, v in model.policy.state_dict().items()}
    run = _SelfLabeller(model, config, tmp_path, TabuTeacher(5))
    assert run.learn([labelled]) > 0.0
    after = model.policy.state_dict()
    changed = {k for k, v in after.items() if not torch.equal(start[k], v)}
    assert changed == {first}
    moved = [FEATURES[c] for c in range(N_FEATURES)
             if not torch.equal(after[first][:, c], start[first][:, c])]  # fmt: skip
    assert moved == list(named)


def test_trains_non_delay_moves_the_other_scorer_on_the_other_shops(tmp_path: Path) -> None:
    """`trains = "non-delay"` mirrors the window run: labels on the shops dispatched non-delay,
    and a step moves the non-delay scorer only, so every windowed plan stays the same."""
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    model = MaskablePPO(
        JobScorerPolicy, env, policy_kwargs={"window": 1.0, "window_ratio": 2.0}, device="cpu"
    )
    scorer = FastScorer.from_state_dict(model.policy.state_dict())
    config = dataclasses.replace(TINY, objective="expert", samples=0, trains="non-delay")
    square = compile_problem(load_taillard("ta01"))
    assert not instance_labels(square, scorer, config, seed=0, teacher=TabuTeacher(5)).labels
    long = compile_problem(taillard(40, 5, 1, 2))
    labelled = instance_labels(long, scorer, config, seed=0, teacher=TabuTeacher(5))
    assert [x.weight for x in labelled.labels] == [1.0]
    tables = labelled.labels[0].tables
    assert bool((tables[..., WINDOW_COLUMN] == 0.0).all())

    changed = changed_by_a_step(model, config, labelled, tmp_path)
    assert changed and not any("window" in k for k in changed)
    assert any(k.startswith("mlp_extractor.embed") for k in changed)

    # the same under self-labelling proper: the square shop is not even sampled
    best = dataclasses.replace(config, objective="best", samples=4)
    assert not instance_labels(square, scorer, best, seed=0).labels
    assert [x.weight for x in instance_labels(long, scorer, best, seed=0).labels] == [1.0]


def test_trains_long_moves_the_long_shop_scorer_on_long_classic_shops(tmp_path: Path) -> None:
    """A model with a long-shop scorer learns the long classic shops without touching the
    scorer the flexible shops share: labels from long classic shops only, and a step moves the
    long-shop scorer only."""
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    kwargs = {"window": 1.0, "window_ratio": 2.0, "long_shops": True}
    model = MaskablePPO(JobScorerPolicy, env, policy_kwargs=kwargs, device="cpu")
    scorer = FastScorer.from_state_dict(model.policy.state_dict())
    config = dataclasses.replace(TINY, objective="expert", samples=0, trains="long")
    square, flexible = load_taillard("ta01"), production_like(30, seed=1)
    for shop in (square, flexible):
        found = instance_labels(compile_problem(shop), scorer, config, 0, TabuTeacher(5))
        assert not found.labels
    long = compile_problem(taillard(40, 5, 1, 2))
    labelled = instance_labels(long, scorer, config, seed=0, teacher=TabuTeacher(5))
    assert [x.weight for x in labelled.labels] == [1.0]
    tables = labelled.labels[0].tables
    assert bool((tables[..., WINDOW_COLUMN][tables[..., 0] > 0] == -1.0).all())

    changed = changed_by_a_step(model, config, labelled, tmp_path)
    assert changed and all(k.startswith("mlp_extractor.long_") for k in changed)


def test_teach_ratio_trains_as_a_lower_window_ratio_would_and_saves_the_shipped_one(
    tmp_path: Path,
) -> None:
    """`teach_ratio` gives, in one run, the weights that training with [ppo] window_ratio set to
    it gives (squares teach the long-shop scorer), but a model that dispatches as shipped."""
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    config = dataclasses.replace(
        TINY, trains="long", flexible_share=0.0, eval_every=100, validation_shapes=("12x4",)
    )

    def trained(window_ratio: float, teach_ratio: float, out: str) -> dict[str, torch.Tensor]:
        kwargs = {"window": 1.0, "window_ratio": window_ratio, "long_shops": True}
        model = MaskablePPO(JobScorerPolicy, env, policy_kwargs=kwargs, seed=3, device="cpu")
        run = dataclasses.replace(config, teach_ratio=teach_ratio)
        self_label(model, run, tmp_path / out, quiet=True)
        policy: dict[str, torch.Tensor] = torch.load(
            tmp_path / out / CHECKPOINT, weights_only=False
        )["policy"]
        return policy

    one_run = trained(2.0, 0.5, "one")
    trained_low = trained(0.5, 0.0, "low")
    as_shipped = trained(2.0, 0.0, "shipped")
    ratio = "mlp_extractor.window_ratio"
    assert float(one_run[ratio]) == 2.0 and float(trained_low[ratio]) == 0.5
    assert all(torch.equal(t, trained_low[k]) for k, t in one_run.items() if k != ratio)
    # the TINY shops have 1-2.7 jobs per machine: without teach_ratio fewer of them teach
    assert not all(torch.equal(t, as_shipped[k]) for k, t in one_run.items())


def test_a_checkpoint_from_before_a_new_setting_resumes(tmp_path: Path) -> None:
    self_label(untrained(), dataclasses.replace(TINY, steps=1), tmp_path, quiet=True)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    del saved["config"]["teach_ratio"]  # written before the setting existed
    torch.save(saved, tmp_path / CHECKPOINT)
    summary = self_label(untrained(), dataclasses.replace(TINY, steps=2), tmp_path, resume=True,
                         quiet=True)  # fmt: skip
    assert summary["steps"] == 2


@pytest.mark.parametrize("trains", ["window", "long"])
def test_trains_needs_a_model_with_that_scorer(tmp_path: Path, trains: str) -> None:
    config = dataclasses.replace(TINY, objective="expert", trains=trains)
    with pytest.raises(ConfigError, match=f"no {trains} scorer"):
        _SelfLabeller(untrained(), config, tmp_path, TabuTeacher(5))


def test_the_anchor_pulls_the_policy_back_to_where_it_started(tmp_path: Path) -> None:
    """With every instance below `min_gain` only the anchor's KL term is left: its gradient is
    zero at the start, and after a push away it points back."""
    model = untrained()
    config = dataclasses.replace(TINY, objective="expert", min_gain=1.0, anchor=1.0, steps=1)
    run = _SelfLabeller(model, config, tmp_path, TabuTeacher(5))
    found = [_label_task(task) for task in run.tasks()]
    assert all(x.weight == 0.0 for f in found for x in f.labels) and found[0].labels
    assert run.learn(found) == pytest.approx(0.0, abs=1e-7)  # at the start: no divergence
    last = run.scorer.score[2]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.mul_(3.0)  # sharpen: now the policy differs from its start
    pushed = run.learn(found)
    assert pushed > 0.0
    assert run.learn(found) < pushed  # each step moves it back towards the start


def test_cross_entropy_is_over_the_candidates_only() -> None:
    logits = torch.tensor([[0.0, 0.0, 50.0, 0.0]])
    candidates = torch.tensor([[True, True, False, True]])
    loss = candidate_cross_entropy(logits, candidates, torch.tensor([[False, True, False, False]]))
    assert float(loss) == pytest.approx(np.log(3.0), rel=1e-6)  # row 2's big logit is ignored
    either = torch.tensor([[True, True, False, False]])  # two right answers: their mass counts
    assert float(candidate_cross_entropy(logits, candidates, either)) == pytest.approx(
        np.log(3.0 / 2.0), rel=1e-6
    )


def test_the_mixture_respects_the_operation_cap() -> None:
    config = dataclasses.replace(
        TINY, jobs=(5, 100), machines=(5, 20), ratio=(0.5, 10.0), max_ops=600
    )
    rng = np.random.default_rng(0)
    shops = [mixture_instance(config, rng) for _ in range(200)]
    classic = [cp for cp in shops if cp.n_ops == cp.n_jobs * cp.n_machines]
    assert classic and all(cp.n_ops <= 600 for cp in classic)
    assert len({(cp.n_jobs, cp.n_machines) for cp in classic}) > 20  # a mixture, not one shape
    ratios = np.array([cp.n_jobs / cp.n_machines for cp in classic])
    assert ratios.min() < 1.0 and ratios.max() > 5.0
    assert 0.3 < np.mean(ratios < 2.0) < 0.8  # log-uniform: as many square-ish shops as long


def test_tiny_self_labelling_run_on_a_mixture_improves_the_policy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = untrained(seed=1)
    config = dataclasses.replace(
        TINY,
        steps=30,
        instances=4,
        samples=16,
        learning_rate=1e-2,
        eval_every=10,
        validation_shapes=("12x6", "prod10"),
        validation_count=4,
    )
    summary = self_label(model, config, tmp_path, quiet=True)
    history = [row["val_mean"] for row in summary["validation"]]
    print("validation ratio to the best rule by evaluation:", history)
    assert history[0] == summary["validation"][0]["val_mean"]  # step 0: the untrained weights
    assert summary["best_validation_ratio_to_best_rule"] < history[0] - 0.03
    # the model ends with the best weights, the ones saved
    shapes = json.loads((tmp_path / "self_label_history.json").read_text())
    assert shapes == summary["validation"]


def test_a_tiny_rollout_run_improves_the_window_scorer_and_moves_nothing_else(
    tmp_path: Path,
) -> None:
    """`objective = "rollout"` on a model with a window: its square shops teach the window
    scorer the candidates whose greedy finish is shortest, and the greedy pass gets shorter."""
    torch.manual_seed(0)
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    model = MaskablePPO(
        JobScorerPolicy, env, policy_kwargs={"window": 0.5, "window_ratio": 1.5}, seed=3,
        device="cpu",
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    config = dataclasses.replace(
        TINY, objective="rollout", samples=0, steps=20, instances=4, learning_rate=1e-2,
        flexible_share=0.0, machines=(5, 8), ratio=(0.7, 1.5), jobs=(5, 12), eval_every=10,
        validation_shapes=("8x8", "10x8"), validation_count=6,
    )  # fmt: skip
    summary = self_label(model, config, tmp_path, quiet=True)
    history = [row["val_mean"] for row in summary["validation"]]
    print("validation ratio to the best rule by evaluation:", history)
    assert summary["best_validation_ratio_to_best_rule"] < history[0] - 0.02
    after = model.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("mlp_extractor.window_") for k in changed)


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    straight, resumed = untrained(), untrained()
    self_label(straight, dataclasses.replace(TINY, eval_every=100), tmp_path / "a", quiet=True)
    first = dataclasses.replace(TINY, steps=2, eval_every=100)
    self_label(resumed, first, tmp_path / "b", quiet=True)
    assert (tmp_path / "b" / CHECKPOINT).is_file()
    again = untrained(seed=5)  # a fresh process: other weights until the checkpoint loads
    # the second half on two workers: each shop's seed comes from the parent, so no change
    second = dataclasses.replace(TINY, eval_every=100, workers=2)
    self_label(again, second, tmp_path / "b", resume=True, quiet=True)
    saved_a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)
    saved_b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    assert saved_a["progress"]["step"] == saved_b["progress"]["step"] == 4
    for name, tensor in saved_a["policy"].items():
        assert torch.equal(tensor, saved_b["policy"][name]), name
    untouched = untrained(seed=5).policy.state_dict()
    assert not all(torch.equal(t, untouched[k]) for k, t in saved_b["policy"].items())


def test_select_worst_keeps_the_weights_whose_worst_shape_is_best(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, select="worst", snapshots=True, eval_every=1)
    summary = self_label(untrained(), config, tmp_path, quiet=True)
    history = summary["validation"]
    for row in history:
        shapes = [v for k, v in row.items() if k not in ("step", "val_mean", "val_worst")]
        assert row["val_worst"] == max(shapes)
    assert summary["selected_by"] == "worst"
    assert summary["best_validation_ratio_to_best_rule"] == min(r["val_worst"] for r in history)
    snapshots = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert snapshots == [f"step_{int(r['step']):06d}.zip" for r in history]
    # best_model.zip is the snapshot of the step the selection picked
    picked = min(history, key=lambda r: r["val_worst"])
    best = MaskablePPO.load(tmp_path / "best_model.zip", device="cpu").policy.state_dict()
    snap = MaskablePPO.load(
        tmp_path / "snapshots" / f"step_{int(picked['step']):06d}.zip", device="cpu"
    ).policy.state_dict()
    assert all(torch.equal(t, snap[k]) for k, t in best.items())


def test_blend_moves_the_selected_weights_back_towards_the_start(tmp_path: Path) -> None:
    run = _SelfLabeller(untrained(), dataclasses.replace(TINY, blend=0.25), tmp_path, None)
    start = {k: t.clone() for k, t in run.scorer.named_parameters()}
    with torch.no_grad():
        for parameter in run.scorer.parameters():
            parameter.add_(torch.randn_like(parameter))  # what training would have moved
    moved = {k: t.clone() for k, t in run.scorer.named_parameters()}
    ratios = run.blend()
    for name, tensor in run.scorer.named_parameters():
        expected = start[name] + 0.25 * (moved[name] - start[name])
        assert torch.allclose(tensor, expected, atol=1e-6), name
    assert ratios == validate(run.fast(), run.shapes)
    # blend = 0: whatever the run selected, it ends where it started
    model = untrained()
    initial = {k: t.clone() for k, t in model.policy.state_dict().items()}
    summary = self_label(model, dataclasses.replace(TINY, blend=0.0), tmp_path / "b", quiet=True)
    for name, tensor in model.policy.state_dict().items():
        assert torch.allclose(tensor, initial[name], atol=1e-6), name
    assert summary["blend"] == 0.0 and "blended_validation" in summary


def test_resume_refuses_a_missing_checkpoint_and_other_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint"):
        self_label(untrained(), TINY, tmp_path, resume=True, quiet=True)
    self_label(untrained(), dataclasses.replace(TINY, steps=1), tmp_path, quiet=True)
    with pytest.raises(ConfigError, match="other \\[self_label\\] settings"):
        changed = dataclasses.replace(TINY, learning_rate=1.0)
        self_label(untrained(), changed, tmp_path, resume=True, quiet=True)


def test_train_without_ppo_runs_only_self_labelling(tmp_path: Path) -> None:
    config = TrainConfig(
        ppo=dataclasses.replace(load_config().ppo, total_timesteps=0, torch_threads=1),
        self_label=dataclasses.replace(TINY, steps=2),
    )
    summary = train(config, tmp_path, quiet=True)
    assert summary["timesteps"] == 0 and summary["self_label"]["steps"] == 2
    assert (tmp_path / "final_model.zip").is_file()
    assert not (tmp_path / "best_model.zip").exists()
    with pytest.raises(ConfigError, match="no \\[self_label\\] steps"):
        train(dataclasses.replace(config, self_label=TINY.__class__()), tmp_path, resume=True)


def test_self_label_section_is_checked(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('[ppo]\ntotal_timesteps = 0\n[self_label]\nvalidation_shapes = ["15by15"]\n')
    with pytest.raises(ConfigError, match=r"JOBSxMACHINES\[:FAMILY\], got '15by15', or prodJOBS"):
        load_config(recipe)
    recipe.write_text('[ppo]\ntotal_timesteps = 0\n[self_label]\nselect = "median"\n')
    with pytest.raises(ConfigError, match="select: 'median' is not one of 'mean', 'worst'"):
        load_config(recipe)
    recipe.write_text('[ppo]\ntotal_timesteps = 0\n[self_label]\ntrains = "both"\n')
    with pytest.raises(ConfigError, match="trains: 'both' is not one of 'auto', 'window'"):
        load_config(recipe)
    recipe.write_text("[ppo]\ntotal_timesteps = 0\n[self_label]\nteach_ratio = 0.5\n")
    with pytest.raises(ConfigError, match=r'teach_ratio: .* needs trains = "long"'):
        load_config(recipe)
    recipe.write_text(
        '[ppo]\ntotal_timesteps = 0\n[self_label]\nteach_ratio = -1\ntrains = "long"\n'
    )
    with pytest.raises(ConfigError, match="teach_ratio: -1 is below 0"):
        load_config(recipe)
    recipe.write_text('[ppo]\ntotal_timesteps = 0\n[self_label]\ncolumns = ["speed"]\n')
    with pytest.raises(ConfigError, match="columns: 'speed' is not one of 'present'"):
        load_config(recipe)
    recipe.write_text(
        '[ppo]\ntotal_timesteps = 0\n[self_label]\ncolumns = ["slack"]\nnew_columns_only = true\n'
    )
    with pytest.raises(ConfigError, match="new_columns_only must be false"):
        load_config(recipe)
    recipe.write_text("[ppo]\ntotal_timesteps = 0\n[self_label]\nblend = 1.5\n")
    with pytest.raises(ConfigError, match=r"blend: 1.5 is not in \[0, 1\]"):
        load_config(recipe)
    recipe.write_text("[ppo]\ntotal_timesteps = 0\n[self_label]\nsteps = 3\nsample = 4\n")
    with pytest.raises(ConfigError, match=r"\[self_label\] unknown keys: sample"):
        load_config(recipe)
    recipe.write_text("[ppo]\ntotal_timesteps = 0\n[self_label]\nsteps = 3\njobs = [4, 9]\n")
    assert load_config(recipe).self_label.jobs == (4, 9)


def test_schedctl_train_resume_without_a_checkpoint_exits_2(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text("[ppo]\ntotal_timesteps = 0\n[self_label]\nsteps = 3\n")
    done = subprocess.run(
        [sys.executable, "-m", "jobshop_scheduler.cli", "train", "--config", str(recipe),
         "--out", str(tmp_path / "out"), "--resume", "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--resume: no checkpoint" in done.stderr


def test_schedctl_train_names_a_missing_init_model_among_several(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text("[ppo]\ntotal_timesteps = 0\n")
    (tmp_path / "a.zip").write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "jobshop_scheduler.cli", "train", "--config", str(recipe),
         "--init", str(tmp_path / "a.zip"), "--init", str(tmp_path / "b.zip"),
         "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"--init {tmp_path / 'b.zip'}: no such model file" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name", ["self_label_expert.toml", "self_label_squares.toml", "self_label_families.toml"]
)
def test_the_expert_recipes_load(name: str) -> None:
    recipe = Path(__file__).parents[3] / "scheduler_service/src/jobshop_scheduler/rl" / name
    config = load_config(recipe)
    assert config.ppo.total_timesteps == 0 and config.self_label.objective == "expert"
    assert config.self_label.anchor > 0 and config.self_label.steps > 0
