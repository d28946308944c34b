"""The trained scorer as a lean NumPy forward pass, and the greedy dispatching loop around it.

Serving does not need torch's autograd machinery or SB3's fixed observation padding: the scorer's
weights are independent of the number of rows, so this path scores exactly the jobs of the
request. `rl.parity` checks that it picks the same actions as SB3's own predict (in the tests, and
at server start-up).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem, compile_problem
from jobshop_scheduler.heuristics.dispatch import LEGACY_RULE
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.features import (
    N_FEATURES,
    WINDOW_COLUMN,
    FeatureScales,
    fill_features,
)
from jobshop_scheduler.rl.kernels import add_tanh
from jobshop_scheduler.rl.state import DispatchScheme, ShopState

F32 = NDArray[np.float32]
# One dispatching loop at a time per process. A pass makes thousands of small NumPy calls; two
# threads doing that convoy on the GIL and each pass took 4x longer (0.9 s instead of 0.23 s for
# 170 jobs, measured with two planner threads), so both finished later than one after the other.
# The search's compiled loop releases the GIL and runs beside a pass.
PASS_LOCK = threading.Lock()


def _ones() -> F32:
    return np.ones(1024, dtype=np.float32)


def _zeros() -> F32:
    return np.zeros(1024, dtype=np.float32)


@dataclass(frozen=True)
class FastScorer:
    """`policy.JobScorer`'s weights, rearranged for the serving loop.

    The loop runs one small forward pass per dispatch, where NumPy's per-call overhead rivals
    the arithmetic, so the layout saves calls: the first bias is folded into the weights
    through the always-one `present` column, the score layer is split into its job and
    context halves, and the mean over jobs is a vector product with a ones buffer.
    """

    w1: F32  # (features, width), the first bias folded into row 0
    w2: F32
    b2: F32
    s1_job: F32
    s1_context: F32
    c1: F32
    s2: F32  # (width,)
    c2: float
    ones: F32 = field(default_factory=_ones)
    no_bias: F32 = field(default_factory=_zeros)  # `kernels.add_tanh` reads the first `width`
    # the dispatching scheme it chooses in, by shop (`state.dispatch_window`), the scorer of the
    # states dispatched with the window and that of long classic shops (`policy.JobScorer`)
    scheme: DispatchScheme = field(default_factory=DispatchScheme)
    window_scorer: FastScorer | None = None
    long_scorer: FastScorer | None = None
    alike_scorer: FastScorer | None = None  # the long alike shops' (`DispatchScheme.alike_scorer`)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FastScorer:
        """Weights of `policy.JobScorer` (keys under `mlp_extractor.` in the SB3 policy)."""

        def get(name: str) -> F32:
            value = state[f"mlp_extractor.{name}"]
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else value
            # a copy: a view would follow the model's parameters as training updates them
            return np.array(array, dtype=np.float32, copy=True)

        def scalar(name: str) -> float:
            return float(get(name)) if f"mlp_extractor.{name}" in state else 0.0

        def scorer(embed: str, score: str) -> FastScorer | None:
            present = f"mlp_extractor.{embed}.0.weight" in state
            return cls._of_layers(get, embed, score) if present else None

        long_scorer = scorer("long_embed", "long_score")
        alike_scorer = scorer("alike_embed", "alike_score")
        return cls._of_layers(
            get, "embed", "score",
            scheme=DispatchScheme.from_buffers(
                scalar, long_scorer is not None, alike_scorer is not None
            ),
            window_scorer=scorer("window_embed", "window_score"), long_scorer=long_scorer,
            alike_scorer=alike_scorer,
        )  # fmt: skip

    @classmethod
    def _of_layers(
        cls, get: Callable[[str], F32], embed: str, score: str, **more: Any
    ) -> FastScorer:
        def t(name: str) -> F32:
            return np.ascontiguousarray(get(name).T)

        w1, w2, s1 = t(f"{embed}.0.weight"), t(f"{embed}.2.weight"), t(f"{score}.0.weight")
        w1[0] += t(f"{embed}.0.bias")  # column 0 ("present") is 1.0 on every active row
        if w1.shape[0] < N_FEATURES:  # a model from before columns were appended: weights 0
            w1 = np.vstack([w1, np.zeros((N_FEATURES - w1.shape[0], w1.shape[1]), np.float32)])
        width = w2.shape[1]
        return cls(
            w1=w1, w2=w2, b2=t(f"{embed}.2.bias"),
            s1_job=np.ascontiguousarray(s1[:width]), s1_context=np.ascontiguousarray(s1[width:]),
            c1=t(f"{score}.0.bias"), s2=np.ascontiguousarray(t(f"{score}.2.weight")[:, 0]),
            c2=float(t(f"{score}.2.bias")[0]), **more,
        )  # fmt: skip

    def window_for(self, cp: CompiledProblem) -> float:
        """The dispatching window this scorer chooses in on ``cp``."""
        return self.scheme.window_for(cp)

    def logits(self, active: F32, picked: NDArray[np.int64]) -> F32:
        """Logits of rows `picked` of a table of active jobs (the context is their mean)."""
        scheme = active[0, WINDOW_COLUMN] if len(active) else 0.0
        if scheme > 0 and scheme != 1.0:  # every row holds the window: the scorers read 1
            active = active.copy()
            active[:, WINDOW_COLUMN] = 1.0
        if self.alike_scorer is not None and self.scheme.is_alike_window(scheme):
            return self.alike_scorer.logits(active, picked)
        if scheme > 0 and self.window_scorer is not None:
            return self.window_scorer.logits(active, picked)
        if scheme < 0 and self.long_scorer is not None:
            return self.long_scorer.logits(active, picked)
        n = active.shape[0]
        emb = active @ self.w1
        add_tanh(emb, self.no_bias)
        emb = emb @ self.w2
        add_tanh(emb, self.b2)
        ones = self.ones[:n] if n <= len(self.ones) else np.ones(n, dtype=np.float32)
        context = (ones @ emb) @ self.s1_context
        hidden = emb[picked] @ self.s1_job
        add_tanh(hidden, context * np.float32(1.0 / max(n, 1)) + self.c1)
        out: F32 = (hidden @ self.s2 + np.float32(self.c2)).astype(np.float32, copy=False)
        return out

    def choose(
        self, state: ShopState, scales: FeatureScales, buffers: Buffers | None = None
    ) -> int:
        """The greedy action: the best-scored candidate, ties to the lowest job index."""
        candidates = np.flatnonzero(state.candidates)
        if len(candidates) == 1:
            return int(candidates[0])
        scores = self.candidate_scores(state, scales, buffers)
        return int(candidates[int(np.argmax(scores))])

    def candidate_scores(
        self, state: ShopState, scales: FeatureScales, buffers: Buffers | None = None
    ) -> F32:
        """Logits of the candidate jobs, in job order."""
        table, rows = buffers or Buffers.for_jobs(state.cp.n_jobs)
        n = fill_features(state, scales, table, rows)
        return self.logits(table[:n], rows[: int(state.candidates.sum())])


class Buffers(NamedTuple):
    """Scratch arrays reused across the steps of one pass."""

    table: F32
    candidate_rows: NDArray[np.int64]

    @classmethod
    def for_jobs(cls, n_jobs: int) -> Buffers:
        return cls(np.empty((n_jobs, N_FEATURES), np.float32), np.empty(n_jobs, np.int64))


def greedy_schedule(
    cp: CompiledProblem,
    scorer: FastScorer,
    horizon: int = 0,
    *,
    deadline: float | None = None,
    finish_rules: Sequence[str] = (LEGACY_RULE,),
    finish_due: float | None = None,
) -> ShopState:
    """Dispatch every operation with the scorer, at most `horizon` jobs open at once (0: all;
    `ShopState`); the finished state holds the schedule.

    Past `deadline` (time.perf_counter) the scorer stops and the first of `finish_rules` places
    the rest (`ShopState.complete`, its `rule_operations` say how many): a pass over a large
    request costs about 0.1 ms a step, a rule a few µs, and an answer late for its client is no
    answer. Each other rule then finishes the same cut pass too while the last one's cost fits
    before `finish_due` (None: whatever the time), and the shortest plan is kept: which rule
    ends a policy's plan best depends on the shop (SPT's on 1000 production-like jobs was 3 %
    shorter than MWKR's, MOR's on 30x20 1.5 %).
    """
    with PASS_LOCK:
        state, _ = rollout(cp, scorer, horizon=horizon, deadline=deadline)
    if state.done:
        return state
    best: ShopState | None = None
    cost = 0.0
    for rule in finish_rules:
        started = time.perf_counter()
        if best is not None and finish_due is not None and started + cost > finish_due:
            break
        finished = state.copy() if rule != finish_rules[-1] else state
        finished.complete(rule)
        cost = time.perf_counter() - started
        if best is None or finished.makespan < best.makespan:
            best = finished
    assert best is not None, "finish_rules names at least one rule"
    return best


def rollout(
    cp: CompiledProblem,
    scorer: FastScorer,
    rng: np.random.Generator | None = None,
    temperature: float = 1.0,
    horizon: int = 0,
    *,
    deadline: float | None = None,
) -> tuple[ShopState, NDArray[np.int64]]:
    """One pass: the finished state and the job chosen at each step that had a choice.

    Greedy (the best-scored candidate, ties to the lowest job index) when `rng` is None;
    otherwise each choice is drawn from the softmax of the scores at `temperature`. At most
    `horizon` jobs are open at once (0: all; `ShopState`). Past `deadline` (time.perf_counter)
    the pass stops where it is and the state is left unfinished. The caller holds `PASS_LOCK`
    where other passes may run beside it.
    """
    state = ShopState(cp, scorer.window_for(cp), horizon)
    scales = FeatureScales(state)
    buffers = Buffers.for_jobs(cp.n_jobs)
    choices: list[int] = []
    for candidates in state.decisions():
        if deadline is not None and time.perf_counter() > deadline:
            break
        pick = _pick(scorer.candidate_scores(state, scales, buffers), rng, temperature)
        choices.append(int(candidates[pick]))
        state.dispatch(choices[-1])
    return state, np.asarray(choices, dtype=np.int64)


def _pick(scores: F32, rng: np.random.Generator | None, temperature: float) -> int:
    """The index of the best score (`rng` None) or one drawn from their softmax."""
    if rng is None:
        return int(np.argmax(scores))
    # inverse CDF: a quarter of Generator.choice(p=...)'s cost, which checks p each call
    scaled = scores.astype(np.float64) / temperature
    cumulative = np.cumsum(np.exp(scaled - scaled.max()))
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


def finish(
    state: ShopState,
    scorer: FastScorer,
    scales: FeatureScales,
    buffers: Buffers,
    *,
    rng: np.random.Generator | None = None,
    temperature: float = 1.0,
) -> int:
    """Dispatch the rest of `state`, greedily or drawing from `rng` (as `rollout`); return the
    makespan. `state` ends finished."""
    for candidates in state.decisions():
        pick = _pick(scorer.candidate_scores(state, scales, buffers), rng, temperature)
        state.dispatch(int(candidates[pick]))
    return state.makespan


def finishes(
    state: ShopState,
    candidates: NDArray[np.int64],
    scorer: FastScorer,
    scales: FeatureScales,
    buffers: Buffers,
) -> NDArray[np.int64]:
    """The makespan of the greedy finish after dispatching each of `candidates`, in their
    order; `state` stays as it is."""
    spans = np.empty(len(candidates), np.int64)
    for i, candidate in enumerate(candidates):
        spans[i] = _finish_after(state, int(candidate), scorer, scales, buffers)
    return spans


def mean_finishes(
    state: ShopState,
    candidates: NDArray[np.int64],
    scorer: FastScorer,
    scales: FeatureScales,
    buffers: Buffers,
    *,
    greedy: NDArray[np.int64],
    samples: int,
    rng: np.random.Generator,
    temperature: float,
) -> NDArray[np.float64]:
    """Per candidate, the mean makespan of its greedy finish (`greedy`, as `finishes` gives
    them) and `samples` finishes drawn at `temperature`: what the choice is worth to a policy
    near this one, where one greedy finish says what it is worth to this policy exactly.
    `state` stays as it is."""
    total = greedy.astype(np.float64)
    for i, candidate in enumerate(candidates):
        for _ in range(samples):
            total[i] += _finish_after(
                state, int(candidate), scorer, scales, buffers, rng=rng, temperature=temperature
            )
    return total / (samples + 1)


def _finish_after(
    state: ShopState,
    candidate: int,
    scorer: FastScorer,
    scales: FeatureScales,
    buffers: Buffers,
    *,
    rng: np.random.Generator | None = None,
    temperature: float = 1.0,
) -> int:
    """The makespan of `finish` on a copy of `state` after dispatching `candidate`; `state`
    stays as it is."""
    twin = state.copy()
    twin.dispatch(candidate)
    return finish(twin, scorer, scales, buffers, rng=rng, temperature=temperature)


def warm_up(scorer: FastScorer) -> None:
    """Load (or compile) the numba kernels now, so the first real request does not wait."""
    greedy_schedule(compile_problem(production_like(3, seed=0)), scorer)
