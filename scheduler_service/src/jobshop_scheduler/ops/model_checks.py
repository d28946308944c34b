"""``verify-model``: every reason a shipped model could not be served, one verdict each.

``model_store.load_model`` stops at the first failed check (right for a server); before a
rollout the operator wants all of them: the file, the card, the checksums, feature and code
compatibility, that the serving files load and reproduce SB3's recorded outputs, that SB3
itself agrees with those files (where the train extra is installed), that it schedules a sample
request validly *by itself* (a fallback to the heuristic does not count), and that a verified
backup exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jobshop_scheduler
from jobshop_scheduler.checklist import Check, Status, failed, passed, skipped, warned
from jobshop_scheduler.domain.model import Problem
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.ops.backup import find_backup
from jobshop_scheduler.planner import Planner
from jobshop_scheduler.rl.model_store import (
    MODEL_NAME,
    LoadedModel,
    ModelCard,
    ModelError,
    checksum_problem,
    code_series,
    feature_schema,
    load_model,
)

MODEL_FILE = "model-file"
MODEL_CARD = "model-card"
CHECKSUM = "checksum"
FEATURES = "feature-schema"
CODE_VERSION = "code-version"
LOADS = "loads"
SB3 = "sb3-agrees"
SAMPLE = "sample-schedule"
BACKUP = "backup"


@dataclass(frozen=True)
class ModelCheckOptions:
    backup_dir: Path
    batch_size: int = 170
    require_backup: bool = False
    sample_jobs: int = 170


def _static(directory: Path) -> tuple[list[Check], ModelCard | None]:
    """File, card, checksum and compatibility: no weights loaded."""
    model = directory / MODEL_NAME
    checks = [
        passed(MODEL_FILE, f"{model} ({model.stat().st_size / 1e6:.2f} MB)")
        if model.is_file()
        else failed(MODEL_FILE, f"model file missing: {model}")
    ]
    try:
        card = ModelCard.read(directory)
    except ModelError as exc:
        checks.append(failed(MODEL_CARD, str(exc)))
        return checks + [
            skipped(n, "no model card") for n in (CHECKSUM, FEATURES, CODE_VERSION)
        ], None
    checks.append(passed(MODEL_CARD, f"version {card.version}, created {card.created_at}"))
    checks += [_checksum(model, card), _features(card), _code(card)]
    return checks, card


def _checksum(model: Path, card: ModelCard) -> Check:
    if not model.is_file():
        return skipped(CHECKSUM, "no model file")
    files = card.serving_files()
    problems = [
        p for name, sha in files.items() if (p := checksum_problem(model.parent / name, sha))
    ]
    if problems:
        return failed(CHECKSUM, "; ".join(problems))
    return passed(CHECKSUM, f"sha256 of {', '.join(files)} match the card")


def _sb3_agrees(directory: Path) -> Check:
    """The deep check: SB3 loads the zip and agrees with the arrays and the recorded outputs."""
    try:
        from jobshop_scheduler.rl.ship import prove_serving_files  # noqa: PLC0415 - SB3
    except ModuleNotFoundError as exc:
        return warned(SB3, f"not checked: {exc.name} is not installed (the train extra)")
    try:
        problems = prove_serving_files(directory)
    except ModelError as exc:
        return failed(SB3, str(exc))
    if problems:
        return failed(SB3, "; ".join(problems[:3]))
    return passed(
        SB3, "stable-baselines3 loads the zip; the arrays and recorded outputs are its own"
    )


def _features(card: ModelCard) -> Check:
    if card.feature_schema != feature_schema():
        return failed(
            FEATURES,
            f"trained on feature schema {card.feature_schema}; this code computes "
            f"{feature_schema()}: retrain the model",
        )
    return passed(FEATURES, f"feature schema {card.feature_schema}")


def _code(card: ModelCard) -> Check:
    if card.code_series != code_series():
        return failed(
            CODE_VERSION,
            f"incompatible: model {card.version} is for code {card.code_series}.x, this is "
            f"{jobshop_scheduler.__version__}",
        )
    return passed(
        CODE_VERSION, f"code {card.code_series}.x, this is {jobshop_scheduler.__version__}"
    )


def _sample(model: LoadedModel, options: ModelCheckOptions, sample: Problem) -> Check:
    try:
        plan = Planner(model, batch_size=options.batch_size).plan(sample, "ppo")
    except Exception as exc:  # any failure here is the verdict, not a crash of the checker
        return failed(SAMPLE, f"scheduling failed: {exc!r}")
    if plan.policy_used != "ppo":
        return failed(SAMPLE, f"the policy did not answer: {plan.fallback_reason}")
    size = f"{len(sample.jobs)} jobs"
    return passed(
        SAMPLE,
        f"{size} scheduled validly in {plan.latency_ms:.0f} ms, makespan {plan.report.makespan} "
        f"(legacy {plan.baseline_makespan})",
    )


def _backup(card: ModelCard, options: ModelCheckOptions) -> Check:
    found, problems = find_backup(options.backup_dir, card.sha256)
    if found is not None:
        return passed(BACKUP, f"{found} verified")
    note = f" ({len(problems)} unusable backup(s): {problems[0]})" if problems else ""
    message = f"no verified backup of {card.sha256[:12]}… in {options.backup_dir}{note}; " \
        "run schedctl backup-model"  # fmt: skip
    return failed(BACKUP, message) if options.require_backup else warned(BACKUP, message)


def verify_model(
    directory: Path, options: ModelCheckOptions, sample: Problem | None = None
) -> list[Check]:
    checks, card = _static(directory)
    if any(c.status is Status.FAIL for c in checks) or card is None:
        checks += [skipped(n, "an earlier check failed") for n in (LOADS, SB3, SAMPLE)]
    else:
        try:
            loaded = load_model(directory)
        except ModelError as exc:
            checks.append(failed(LOADS, str(exc)))
            checks += [_sb3_agrees(directory), skipped(SAMPLE, "the model did not load")]
        else:
            checks.append(passed(LOADS, "the arrays load and reproduce SB3's recorded outputs"))
            checks.append(_sb3_agrees(directory))
            problem = sample or production_like(options.sample_jobs, seed=0)
            checks.append(_sample(loaded, options, problem))
    checks.append(_backup(card, options) if card else skipped(BACKUP, "no model card"))
    return checks
