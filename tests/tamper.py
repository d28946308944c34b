"""Ways to break a model folder's serving files, shared by the verify-model and readiness tests.

Each edit re-signs the card (its sha256 fields follow the edited file) unless told not to, so
that what stops the model is the content check, not the checksum.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jobshop_scheduler.rl.model_store import ModelCard, sha256_of
from jobshop_scheduler.rl.weights import REFERENCE_NAME, WEIGHTS_NAME


def _edit_npz(path: Path, name: str, scale: float) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays[name] = arrays[name] * np.float32(scale)
    np.savez(path, **arrays)


def resign(directory: Path) -> None:
    card = ModelCard.read(directory)
    dataclasses.replace(
        card,
        weights_sha256=sha256_of(directory / WEIGHTS_NAME),
        reference_sha256=sha256_of(directory / REFERENCE_NAME),
    ).write(directory)


def tamper_weights(directory: Path, *, resign_card: bool = True) -> None:
    """The last layer's weights flipped: the policy now prefers what it was trained to avoid."""
    _edit_npz(directory / WEIGHTS_NAME, "mlp_extractor.score.2.weight", -1.0)
    if resign_card:
        resign(directory)


def tamper_reference(directory: Path) -> None:
    """SB3's recorded scores shifted: a record that is no longer SB3's output."""
    _edit_npz(directory / REFERENCE_NAME, "scores", 1.5)
    resign(directory)
