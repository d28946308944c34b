"""Shipped models: a zip written by stable-baselines3, its serving files, and a card for both.

The card (model_card.json beside the zip) records the version, the sha256 of the zip and of the
serving files (`rl.weights`: the actor's arrays and SB3's recorded outputs), the feature schema
the policy was trained on and the code versions it works with, the training recipe and budget,
and the evaluation table. Loading refuses a model whose bytes, features or code version disagree
with its card, or whose arrays do not reproduce SB3's recorded outputs: a scheduler must never
serve a policy it cannot vouch for. Loading needs NumPy only; SB3 proves the files (`rl.ship`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jobshop_scheduler
from jobshop_scheduler.defaults import DEFAULT_MODEL_DIR
from jobshop_scheduler.rl.fast_policy import FastScorer, warm_up
from jobshop_scheduler.rl.features import FEATURES
from jobshop_scheduler.rl.weights import (
    REFERENCE_NAME,
    WEIGHTS_NAME,
    ServingFileError,
    check_reference,
    load_scorer,
)

CARD_NAME = "model_card.json"
MODEL_NAME = "final_model.zip"


class ModelError(RuntimeError):
    """The model cannot be served; the message says which check failed."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def feature_schema() -> str:
    """Fingerprint of the observation columns; a model is only valid with the same columns."""
    return hashlib.sha256(",".join(FEATURES).encode()).hexdigest()[:16]


def code_series(version: str = jobshop_scheduler.__version__) -> str:
    """Major.minor of the code: models are compatible within one series."""
    return ".".join(version.split(".")[:2])


@dataclass(frozen=True)
class ModelCard:
    version: str
    sha256: str
    feature_schema: str
    code_series: str
    created_at: str
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    weights_sha256: str = ""  # of WEIGHTS_NAME; empty on cards older than the serving files
    reference_sha256: str = ""  # of REFERENCE_NAME

    def write(self, directory: Path) -> Path:
        path = directory / CARD_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> ModelCard:
        path = directory / CARD_NAME
        if not path.is_file():
            raise ModelError(f"model card missing: {path}")
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ModelError(f"model card {path} is malformed: {exc}") from exc

    def serving_files(self) -> dict[str, str]:
        """File name -> the sha256 the card vouches for, for every file serving reads."""
        return {MODEL_NAME: self.sha256, WEIGHTS_NAME: self.weights_sha256,
                REFERENCE_NAME: self.reference_sha256}  # fmt: skip


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    card: ModelCard
    scorer: FastScorer


def checksum_problem(path: Path, expected: str) -> str | None:
    """Why ``path`` is not the file the card vouches for, or None."""
    if not path.is_file():
        return f"model file missing: {path}" if path.name == MODEL_NAME else \
            f"{path.name} missing: {path} (write it with schedctl export-model)"  # fmt: skip
    if not expected:
        return f"the model card has no checksum for {path.name} (run schedctl export-model)"
    actual = sha256_of(path)
    if actual != expected:
        return f"checksum mismatch for {path}: file {actual[:12]}…, card {expected[:12]}…"
    return None


def check_model(directory: Path) -> ModelCard:
    """Every check short of loading the weights: files, checksums, features, code version."""
    model = directory / MODEL_NAME
    if not model.is_file():
        raise ModelError(f"model file missing: {model}")
    card = ModelCard.read(directory)
    for name, expected in card.serving_files().items():
        problem = checksum_problem(directory / name, expected)
        if problem:
            raise ModelError(problem)
    if card.feature_schema != feature_schema():
        raise ModelError(
            f"model {card.version} was trained on feature schema {card.feature_schema}; "
            f"this code computes {feature_schema()}"
        )
    if card.code_series != code_series():
        raise ModelError(
            f"model {card.version} is for code {card.code_series}.x; "
            f"this is {jobshop_scheduler.__version__}"
        )
    return card


def load_model(directory: Path = DEFAULT_MODEL_DIR) -> LoadedModel:
    """The checked model, its scorer replaying SB3's recorded outputs; no torch, no SB3."""
    card = check_model(directory)
    try:
        scorer = load_scorer(directory / WEIGHTS_NAME)
        check_reference(scorer, directory / REFERENCE_NAME)
    except ServingFileError as exc:
        raise ModelError(str(exc)) from exc
    warm_up(scorer)
    return LoadedModel(directory / MODEL_NAME, card, scorer)
