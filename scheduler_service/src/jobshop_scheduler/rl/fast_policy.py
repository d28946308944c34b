"""The trained scorer as a lean NumPy forward pass, and the greedy dispatching loop around it.

Serving does not need torch's autograd machinery or SB3's fixed observation padding: the scorer's
weights are independent of the number of rows, so this path scores exactly the jobs of the
request. `verify_against` checks it picks the same actions as SB3's own predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.heuristics.compiled import CompiledProblem
from jobshop_scheduler.rl.features import FeatureScales, job_features
from jobshop_scheduler.rl.state import ShopState

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class FastScorer:
    w1: F32
    b1: F32
    w2: F32
    b2: F32
    s1: F32
    c1: F32
    s2: F32
    c2: F32

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FastScorer:
        """Weights of `policy.JobScorer` (keys under `mlp_extractor.` in the SB3 policy)."""

        def get(name: str) -> F32:
            value = state[f"mlp_extractor.{name}"]
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else value
            return np.ascontiguousarray(np.asarray(array, dtype=np.float32).T)

        return cls(
            w1=get("embed.0.weight"), b1=get("embed.0.bias"),
            w2=get("embed.2.weight"), b2=get("embed.2.bias"),
            s1=get("score.0.weight"), c1=get("score.0.bias"),
            s2=get("score.2.weight"), c2=get("score.2.bias"),
        )  # fmt: skip

    def logits(self, table: F32, rows: NDArray[np.int64]) -> F32:
        """Logits of `rows` of a job table (the shop context uses every present row)."""
        present = table[:, 0] > 0
        emb = np.tanh(np.tanh(table[present] @ self.w1 + self.b1) @ self.w2 + self.b2)
        mean = emb.mean(axis=0) if len(emb) else np.zeros(self.w2.shape[1], dtype=np.float32)
        index = np.cumsum(present) - 1
        picked = emb[index[rows]]
        hidden = picked @ self.s1[: emb.shape[1]] + (mean @ self.s1[emb.shape[1] :] + self.c1)
        out: F32 = (np.tanh(hidden) @ self.s2 + self.c2)[:, 0]
        return out

    def choose(self, state: ShopState, scales: FeatureScales) -> int:
        """The greedy action: the best-scored candidate, ties to the lowest job index."""
        table = job_features(state, scales, state.cp.n_jobs)
        candidates = np.flatnonzero(state.candidates)
        if len(candidates) == 1:
            return int(candidates[0])
        return int(candidates[int(np.argmax(self.logits(table, candidates)))])


def greedy_schedule(cp: CompiledProblem, scorer: FastScorer) -> ShopState:
    """Dispatch every operation with the scorer; the finished state holds the schedule."""
    state = ShopState(cp)
    scales = FeatureScales(state)
    while not state.done:
        state.dispatch(scorer.choose(state, scales))
    return state
