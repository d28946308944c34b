"""Shipped models: a zip written by stable-baselines3 plus a model card that vouches for it.

The card (model_card.json beside the zip) records the version, the sha256 of the zip, the feature
schema the policy was trained on and the code versions it works with, the training recipe and
budget, and the evaluation table. Loading refuses a model whose bytes, features or code version
disagree with its card: a scheduler must never serve a policy it cannot vouch for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jobshop_scheduler
from jobshop_scheduler.rl.fast_policy import FastScorer, warm_up
from jobshop_scheduler.rl.features import FEATURES

CARD_NAME = "model_card.json"
MODEL_NAME = "final_model.zip"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[4] / "models" / "full_production"


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


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    card: ModelCard
    scorer: FastScorer


def check_model(directory: Path) -> ModelCard:
    """Every check short of loading the weights: file, checksum, features, code version."""
    model = directory / MODEL_NAME
    if not model.is_file():
        raise ModelError(f"model file missing: {model}")
    card = ModelCard.read(directory)
    actual = sha256_of(model)
    if actual != card.sha256:
        raise ModelError(
            f"checksum mismatch for {model}: file {actual[:12]}…, card {card.sha256[:12]}…"
        )
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


def load_sb3(path: Path) -> Any:
    """The model as stable-baselines3 loads it (the source of truth for the weights)."""
    from sb3_contrib import MaskablePPO  # noqa: PLC0415 - torch only when a model is loaded

    return MaskablePPO.load(path, device="cpu")


def load_model(directory: Path = DEFAULT_MODEL_DIR) -> LoadedModel:
    card = check_model(directory)
    try:
        sb3_model = load_sb3(directory / MODEL_NAME)
    except Exception as exc:
        raise ModelError(f"stable-baselines3 cannot load {directory / MODEL_NAME}: {exc}") from exc
    scorer = FastScorer.from_state_dict(sb3_model.policy.state_dict())
    warm_up(scorer)
    return LoadedModel(directory / MODEL_NAME, card, scorer)
