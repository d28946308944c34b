"""Writing and proving a model's serving files with stable-baselines3 (the train extra).

`export_serving_files` is the last step of training (and `schedctl export-model` for a zip that
has none): it writes the actor's arrays and SB3's recorded outputs (`rl.weights`) and puts their
checksums in the card. `prove_serving_files` is `verify-model`'s deep check: SB3 loads the zip,
and the arrays must equal its tensors bit for bit and a fresh walk must reproduce the record.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from jobshop_scheduler.rl.features import scorer_view
from jobshop_scheduler.rl.model_store import MODEL_NAME, ModelCard, ModelError, sha256_of
from jobshop_scheduler.rl.parity import DEFAULT_MAX_STATES, record_reference
from jobshop_scheduler.rl.policy import SCHEME_KEYS
from jobshop_scheduler.rl.weights import (
    REFERENCE_NAME,
    SCORE_TOLERANCE,
    WEIGHTS_NAME,
    ReferenceOutputs,
    ServingFileError,
    actor_arrays,
    read_weights,
    write_weights,
)


def load_sb3(path: Path) -> Any:
    """The model as stable-baselines3 loads it (the source of truth for the weights)."""
    from sb3_contrib import MaskablePPO  # noqa: PLC0415 - torch only when a model is loaded

    try:
        return MaskablePPO.load(path, device="cpu")
    except Exception as exc:
        raise ModelError(f"stable-baselines3 cannot load {path}: {exc}") from exc


def sb3_actor_arrays(sb3_model: Any) -> dict[str, np.ndarray]:
    state = sb3_model.policy.state_dict()
    return actor_arrays({k: v.detach().cpu().numpy() for k, v in state.items()})


def export_serving_files(directory: Path, max_states: int = DEFAULT_MAX_STATES) -> ModelCard:
    """Write the arrays and the record beside ``final_model.zip``; return the updated card."""
    sb3_model = load_sb3(directory / MODEL_NAME)
    write_weights(directory / WEIGHTS_NAME, sb3_actor_arrays(sb3_model))
    record_reference(sb3_model, max_states=max_states).write(directory / REFERENCE_NAME)
    card = dataclasses.replace(
        ModelCard.read(directory),
        weights_sha256=sha256_of(directory / WEIGHTS_NAME),
        reference_sha256=sha256_of(directory / REFERENCE_NAME),
    )
    card.write(directory)
    return card


def _compare_weights(arrays: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> list[str]:
    # a dispatch setting added after the files were written is absent there, and the fast path
    # reads it as 0 (`FastScorer.from_state_dict`): the same model where the zip holds 0 too
    unset = {
        name
        for name in set(expected) - set(arrays)
        if name in SCHEME_KEYS and not expected[name].any()
    }
    expected = {name: value for name, value in expected.items() if name not in unset}
    if set(arrays) != set(expected):
        return [f"{WEIGHTS_NAME} holds {sorted(arrays)}, the zip's actor {sorted(expected)}"]
    return [
        f"{WEIGHTS_NAME}: {name} differs from the zip's tensor"
        for name, value in expected.items()
        if arrays[name].shape != value.shape or not np.array_equal(arrays[name], value)
    ]


def _compare_reference(recorded: ReferenceOutputs, fresh: ReferenceOutputs) -> list[str]:
    if len(recorded.states) != len(fresh.states):
        return [f"{REFERENCE_NAME} records {len(recorded.states)} states, SB3 walks "
                f"{len(fresh.states)}"]  # fmt: skip
    found = []
    for old, new in zip(recorded.states, fresh.states, strict=True):
        same = (
            old.table.shape == new.table.shape
            # as the scorers read them: files recorded while the `window` column held 1 for
            # every window stay proof of the same choices
            and np.allclose(scorer_view(old.table), scorer_view(new.table), atol=1e-6)
            and np.array_equal(old.candidates, new.candidates)
            and np.allclose(old.scores, new.scores, atol=SCORE_TOLERANCE)
            and old.choice == new.choice
        )
        if not same:
            found.append(f"{REFERENCE_NAME}: {old.instance} step {old.step} is not SB3's output")
    return found


def prove_serving_files(directory: Path) -> list[str]:
    """Every way the serving files disagree with what SB3 makes of the zip (empty: none)."""
    sb3_model = load_sb3(directory / MODEL_NAME)
    try:
        arrays = read_weights(directory / WEIGHTS_NAME)
        recorded = ReferenceOutputs.read(directory / REFERENCE_NAME)
    except ServingFileError as exc:
        return [str(exc)]
    fresh = record_reference(sb3_model, max_states=recorded.max_states)
    return _compare_weights(arrays, sb3_actor_arrays(sb3_model)) + _compare_reference(
        recorded, fresh
    )
