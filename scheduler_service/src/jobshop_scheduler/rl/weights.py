"""The files a scheduler serves from: the policy's weights as plain arrays, and SB3's own outputs.

`final_model.zip` is what stable-baselines3 writes and reads, and reading it needs torch and SB3
(seconds of imports, a gigabyte of install). Serving needs neither: the answers come from the
NumPy fast path. So the ship step (`rl.ship`, with SB3) writes two `.npz` files beside the zip:

- `policy_weights.npz`: the actor's tensors from SB3's state dict, under the same names;
- `reference_outputs.npz`: states SB3 walked through on fixed instances, with the scores SB3's
  actor gave each candidate job and the job SB3's ``predict`` chose.

A server loads the arrays and replays the recorded states through the fast path (milliseconds);
any disagreement keeps it from becoming ready, as the SB3 parity check at start-up did before.
`verify-model` proves with SB3 itself that both files still match the zip. Both are ``.npz``
read with ``allow_pickle=False``: plain arrays, no code runs on load.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from jobshop_scheduler.rl.fast_policy import FastScorer

WEIGHTS_NAME = "policy_weights.npz"
REFERENCE_NAME = "reference_outputs.npz"
# the scorers' layers and the dispatching scheme: "window" also covers the window scorer's
# layers (window_embed, window_score) and the scheme's buffers (window, window_ratio, window_alike,
# window_narrowing)
ACTOR_PREFIXES = (
    "mlp_extractor.embed.",
    "mlp_extractor.score.",
    "mlp_extractor.window",
    "mlp_extractor.long_",
    "mlp_extractor.alike_",
)
# Float32 in NumPy and in torch sum in different orders: scores differ by ~1e-6. Two candidates
# scored within TIE_TOLERANCE may be ordered either way; that is not a disagreement.
SCORE_TOLERANCE = 1e-4
TIE_TOLERANCE = 1e-4

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]


class ServingFileError(ValueError):
    """A serving file is unreadable or disagrees with the fast path; the message says where."""


def _read_npz(path: Path) -> dict[str, NDArray[np.generic]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError as exc:
        raise ServingFileError(f"{path.name} missing: {path}") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ServingFileError(f"{path.name} is not a readable array file: {exc}") from exc


def actor_arrays(state_dict: dict[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
    """The tensors the fast path reads, out of a whole policy's state dict."""
    return {k: v for k, v in state_dict.items() if k.startswith(ACTOR_PREFIXES)}


def write_weights(path: Path, arrays: dict[str, NDArray[np.float32]]) -> None:
    plain: dict[str, Any] = {name: np.asarray(value, np.float32) for name, value in arrays.items()}
    np.savez(path, **plain)


def read_weights(path: Path) -> dict[str, NDArray[np.float32]]:
    return {name: np.asarray(v, np.float32) for name, v in _read_npz(path).items()}


def load_scorer(path: Path) -> FastScorer:
    """The fast path's scorer from `policy_weights.npz`; a missing tensor names itself."""
    try:
        return FastScorer.from_state_dict(read_weights(path))
    except KeyError as exc:
        raise ServingFileError(f"{path.name} lacks the tensor {exc.args[0]}") from exc
    except (ValueError, IndexError) as exc:
        raise ServingFileError(f"{path.name} holds tensors of the wrong shape: {exc}") from exc


@dataclass(frozen=True)
class RecordedState:
    table: F32  # the active jobs' feature rows, in job order
    candidates: I64  # rows of `table` SB3 could choose from
    scores: F32  # SB3's actor score of each candidate
    choice: int  # index into `candidates` of SB3's deterministic action
    instance: str
    step: int


@dataclass(frozen=True)
class ReferenceOutputs:
    """States and SB3's outputs on them, stored as flat arrays with offsets."""

    states: tuple[RecordedState, ...]
    max_states: int  # the walk's budget, so that a fresh walk retraces the same states

    def write(self, path: Path) -> None:
        s = self.states
        np.savez_compressed(
            path,
            tables=np.concatenate([x.table for x in s]).astype(np.float32),
            table_offsets=np.cumsum([0, *(len(x.table) for x in s)]).astype(np.int64),
            candidates=np.concatenate([x.candidates for x in s]).astype(np.int64),
            scores=np.concatenate([x.scores for x in s]).astype(np.float32),
            candidate_offsets=np.cumsum([0, *(len(x.candidates) for x in s)]).astype(np.int64),
            choices=np.array([x.choice for x in s], np.int64),
            instances=np.array([x.instance for x in s], dtype=np.str_),
            steps=np.array([x.step for x in s], np.int64),
            max_states=np.array(self.max_states, np.int64),
        )

    @classmethod
    def read(cls, path: Path) -> ReferenceOutputs:
        data = _read_npz(path)
        try:
            t_off, c_off = data["table_offsets"], data["candidate_offsets"]
            states = tuple(
                RecordedState(
                    table=data["tables"][t_off[i] : t_off[i + 1]].astype(np.float32),
                    candidates=data["candidates"][c_off[i] : c_off[i + 1]].astype(np.int64),
                    scores=data["scores"][c_off[i] : c_off[i + 1]].astype(np.float32),
                    choice=int(data["choices"][i]),
                    instance=str(data["instances"][i]),
                    step=int(data["steps"][i]),
                )
                for i in range(len(data["choices"]))
            )
            max_states = int(data["max_states"])
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ServingFileError(f"{path.name} is malformed: {exc!r}") from exc
        if not states:
            raise ServingFileError(f"{path.name} records no states")
        return cls(states, max_states)


def disagreements(scorer: FastScorer, reference: ReferenceOutputs) -> list[str]:
    """Where the fast path's scores or choice differ from SB3's recorded ones (empty: none)."""
    found = []
    for state in reference.states:
        where = f"{state.instance} step {state.step}"
        try:
            scores = scorer.logits(state.table, state.candidates)
        except (ValueError, IndexError) as exc:
            found.append(f"{where}: the weights do not fit the recorded state ({exc})")
            continue
        gap = float(np.max(np.abs(scores - state.scores)))
        if gap > SCORE_TOLERANCE * max(1.0, float(np.max(np.abs(state.scores)))):
            found.append(f"{where}: scores differ from SB3's by {gap:.2g}")
            continue
        choice = int(np.argmax(scores))
        if not 0 <= state.choice < len(scores):
            found.append(f"{where}: the recorded choice {state.choice} is not a candidate")
        elif choice != state.choice and scores[choice] - scores[state.choice] > TIE_TOLERANCE:
            found.append(
                f"{where}: SB3 chose candidate {state.choice}, the fast path candidate {choice}"
            )
    return found


def check_reference(scorer: FastScorer, path: Path) -> None:
    """Replay `reference_outputs.npz` through ``scorer``; ServingFileError on a disagreement."""
    reference = ReferenceOutputs.read(path)
    found = disagreements(scorer, reference)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ServingFileError(
            f"the fast path disagrees with SB3's recorded outputs in {path.name}: {found[0]}{more}"
        )
