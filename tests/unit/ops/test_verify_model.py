"""verify-model and backup-model on a copy of the shipped model: each failure named clearly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from jobshop_scheduler import __version__
from jobshop_scheduler.cli import main
from jobshop_scheduler.ops.backup import SUMS_NAME
from jobshop_scheduler.rl.model_store import MODEL_NAME, ModelCard, sha256_of
from jobshop_scheduler.rl.weights import WEIGHTS_NAME
from tests.tamper import tamper_reference, tamper_weights

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_settings")]


def verify(
    capsys: pytest.CaptureFixture[str], model: Path, *extra: str
) -> tuple[int, dict[str, Any]]:
    code = main(["verify-model", "--model-dir", str(model), "--backup-dir",
                 str(model.parent / "backups"), "--json", *extra])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in doc["checks"]}


def edit_card(directory: Path, **changes: str) -> None:
    dataclasses.replace(ModelCard.read(directory), **changes).write(directory)


def test_shipped_model_passes_then_backup_is_found(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = verify(capsys, model_copy)
    assert code == 0
    assert {n: c["status"] for n, c in checks.items()} == {
        "model-file": "PASS", "model-card": "PASS", "checksum": "PASS", "feature-schema": "PASS",
        "code-version": "PASS", "loads": "PASS", "sb3-agrees": "PASS", "sample-schedule": "PASS",
        "backup": "WARN",
    }  # fmt: skip
    assert "170 jobs scheduled validly" in checks["sample-schedule"]["message"]
    assert verify(capsys, model_copy, "--require-backup")[0] == 1

    backups = model_copy.parent / "backups"
    assert main(["backup-model", "--model-dir", str(model_copy), "--backup-dir", str(backups)]) == 0
    assert "verified after copying" in capsys.readouterr().out
    (made,) = backups.iterdir()
    card = ModelCard.read(model_copy)
    assert made.name.startswith(f"{card.version}-") and made.name.endswith("Z")
    assert sha256_of(made / MODEL_NAME) == card.sha256
    assert f"{card.sha256}  {MODEL_NAME}" in (made / SUMS_NAME).read_text()
    code, checks = verify(capsys, model_copy, "--require-backup")
    assert code == 0
    assert checks["backup"]["status"] == "PASS"


def test_missing_model_file_fails_and_skips_loading(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (model_copy / MODEL_NAME).unlink()
    code, checks = verify(capsys, model_copy)
    assert code == 1
    assert checks["model-file"]["status"] == "FAIL"
    assert f"model file missing: {model_copy / MODEL_NAME}" in checks["model-file"]["message"]
    assert checks["checksum"]["status"] == "SKIP"
    assert checks["loads"]["status"] == checks["sample-schedule"]["status"] == "SKIP"


def test_checksum_mismatch_fails(model_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (model_copy / MODEL_NAME).open("ab") as fh:
        fh.write(b"tampered")
    code, checks = verify(capsys, model_copy)
    assert code == 1
    assert checks["checksum"]["status"] == "FAIL"
    assert checks["checksum"]["message"].startswith(f"checksum mismatch for {model_copy}")
    assert checks["loads"]["status"] == "SKIP"


def test_tampered_weights_fail_the_serving_load_and_sb3s_check(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper_weights(model_copy)  # the card re-signed: only the content checks can tell
    code, checks = verify(capsys, model_copy)
    assert code == 1
    assert checks["checksum"]["status"] == "PASS"
    assert checks["loads"]["status"] == "FAIL"
    assert "disagrees with SB3's recorded outputs" in checks["loads"]["message"]
    assert checks["sb3-agrees"]["status"] == "FAIL"
    assert (
        "mlp_extractor.score.2.weight differs from the zip's tensor"
        in (checks["sb3-agrees"]["message"])
    )
    assert checks["sample-schedule"]["status"] == "SKIP"


def test_tampered_record_fails_and_unsigned_weights_fail_the_checksum(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper_reference(model_copy)
    code, checks = verify(capsys, model_copy)
    assert code == 1
    assert checks["loads"]["status"] == checks["sb3-agrees"]["status"] == "FAIL"
    assert "is not SB3's output" in checks["sb3-agrees"]["message"]
    tamper_weights(model_copy, resign_card=False)
    code, checks = verify(capsys, model_copy)
    assert checks["checksum"]["status"] == "FAIL"
    assert f"checksum mismatch for {model_copy / WEIGHTS_NAME}" in checks["checksum"]["message"]


def test_incompatible_code_version_fails(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_card(model_copy, code_series="9.9")
    code, checks = verify(capsys, model_copy)
    assert code == 1
    assert checks["code-version"]["status"] == "FAIL"
    assert "incompatible: model" in checks["code-version"]["message"]
    assert f"is for code 9.9.x, this is {__version__}" in checks["code-version"]["message"]
    assert checks["checksum"]["status"] == "PASS"  # the other checks still ran


def test_other_feature_schema_fails(model_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_card(model_copy, feature_schema="0123456789abcdef")
    code, checks = verify(capsys, model_copy)
    assert code == 1
    assert "feature schema 0123456789abcdef" in checks["feature-schema"]["message"]


def test_missing_card_fails(model_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (model_copy / "model_card.json").unlink()
    code, checks = verify(capsys, model_copy)
    assert code == 1
    assert "model card missing" in checks["model-card"]["message"]
    assert checks["backup"]["status"] == "SKIP"


def test_table_output(model_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (model_copy / MODEL_NAME).unlink()
    assert main(["verify-model", "--model-dir", str(model_copy)]) == 1
    out = capsys.readouterr().out
    assert "model-file       FAIL    model file missing" in out
    assert out.rstrip().splitlines()[-1].startswith("verify-model: FAIL (")


def test_backup_refuses_a_tampered_model_and_leaves_nothing(
    model_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (model_copy / MODEL_NAME).open("ab") as fh:
        fh.write(b"tampered")
    backups = tmp_path / "b"
    code = main(["backup-model", "--model-dir", str(model_copy), "--backup-dir", str(backups)])
    assert code == 1
    assert "refusing to back up" in capsys.readouterr().err
    assert not backups.exists() or not any(backups.iterdir())


def test_corrupted_backup_is_not_counted(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backups = model_copy.parent / "backups"
    assert main(["backup-model", "--model-dir", str(model_copy), "--backup-dir", str(backups)]) == 0
    capsys.readouterr()
    (made,) = backups.iterdir()
    (made / MODEL_NAME).write_bytes(b"bit rot")
    _, checks = verify(capsys, model_copy, "--require-backup")
    assert checks["backup"]["status"] == "FAIL"
    assert "unusable backup" in checks["backup"]["message"]
