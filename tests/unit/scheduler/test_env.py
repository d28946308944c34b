"""The dispatching environment: gymnasium's checker, masks, reward telescoping, rule parity."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.heuristics.compiled import compile_problem
from jobshop_scheduler.heuristics.dispatch import dispatch_arrays, makespan_of
from jobshop_scheduler.instances import load_taillard
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.env import ENV_ID, JobShopEnv, register
from jobshop_scheduler.rl.features import N_FEATURES
from jobshop_scheduler.rl.sampling import CurriculumSampler, Stage
from jobshop_scheduler.rl.state import ShopState

pytestmark = pytest.mark.unit


def mwkr_choice(state: ShopState) -> int:
    candidates = np.flatnonzero(state.candidates)
    return int(candidates[np.argmin(-state.cp.work_from[state.next_op[candidates]])])


def test_passes_gymnasium_env_checker() -> None:
    sampler = CurriculumSampler(
        [Stage(until=1.0, jobs=(3, 6), machines=(3, 5), flexible_share=0.5, flexible_jobs=(3, 5))]
    )
    check_env(JobShopEnv(sampler=sampler, max_jobs=8), skip_render_check=True)


def test_registered_id_makes_the_env() -> None:
    register()
    env = gym.make(ENV_ID, problem=load_taillard("ta01"), max_jobs=20)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (20, N_FEATURES)
    assert not obs[15:].any()  # padding rows are zero


@pytest.mark.parametrize(
    "problem", [load_taillard("ta01"), production_like(30, seed=4)], ids=["ta01", "flexible"]
)
def test_mwkr_through_the_env_equals_the_dispatcher_and_return_telescopes(problem: Problem) -> None:
    env = JobShopEnv(problem=problem, max_jobs=64)
    _, info = env.reset(seed=0)
    total, done, steps = 0.0, False, 0
    while not done:
        mask = env.action_masks()
        assert env.state is not None
        action = mwkr_choice(env.state)
        assert mask[action] and mask.sum() == env.state.candidates.sum()
        _, reward, done, _, step_info = env.step(action)
        assert reward <= 1e-9  # the lower bound never decreases
        total += reward
        steps += 1
    cp = compile_problem(problem)
    assert steps == cp.n_ops
    assert step_info["makespan"] == makespan_of(cp, *dispatch_arrays(cp, "mwkr"))
    scale = env._scales.work
    assert total == pytest.approx(-(step_info["makespan"] - info["lower_bound"]) / scale)


def test_invalid_action_is_replaced_and_reported_but_state_refuses_it() -> None:
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=16)
    env.reset(seed=0)
    assert env.state is not None
    first = int(np.flatnonzero(env.action_masks())[0])
    blocked = 15  # a padding row: never a candidate
    with pytest.raises(ValueError, match="not a candidate"):
        ShopState(env.state.cp).dispatch(blocked)
    _, _, _, _, info = env.step(blocked)
    assert info["invalid_action"] == blocked
    assert env.state.next_op[first] == env.state.cp.job_op_start[first] + 1


def test_too_many_jobs_for_the_table_is_an_error() -> None:
    env = JobShopEnv(problem=load_taillard("ta01"), max_jobs=10)
    with pytest.raises(ValueError, match="15 jobs"):
        env.reset(seed=0)


def test_busy_machines_delay_both_dispatchers_alike() -> None:
    """A batch after an earlier one: its machines start busy, in the state as in the rules."""
    problem = production_like(25, seed=9)
    busy = {problem.machines[0]: 400, problem.machines[-1]: 150}
    cp = compile_problem(problem, machine_ready=busy)
    op_machine, op_start = dispatch_arrays(cp, "mwkr")
    for machine, ready in busy.items():
        k = cp.machine_index[machine]
        assert all(s >= ready for m, s in zip(op_machine, op_start, strict=True) if m == k)
    state = ShopState(cp)
    while not state.done:
        state.dispatch(mwkr_choice(state))
    assert state.op_start.tolist() == op_start
    assert state.op_machine.tolist() == op_machine
    with pytest.raises(ValueError, match="unknown machines"):
        compile_problem(problem, machine_ready={"nope": 3})
