"""Timestamped model backups whose every file is checked against a SHA256SUMS after copying.

A backup is only worth keeping if it can be restored byte for byte, so the copy goes to a hidden
``.partial`` folder, each copied file is hashed again and compared with its source, the model's
hash must equal its card's, and only then is the folder renamed into place. A model that does
not match its own card is refused: backing it up would preserve the corruption.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobshop_scheduler.rl.model_store import MODEL_NAME, ModelError, check_model, sha256_of

SUMS_NAME = "SHA256SUMS"


class BackupError(RuntimeError):
    """The backup could not be made or does not verify; nothing partial is left behind."""


@dataclass(frozen=True)
class Backup:
    path: Path
    version: str
    sha256: str  # of the model zip
    files: int


def _name(version: str, now: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version) or "model"
    return f"{safe}-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _free_target(backup_dir: Path, name: str) -> Path:
    target, n = backup_dir / name, 1
    while target.exists():
        target, n = backup_dir / f"{name}-{n}", n + 1
    return target


def _copy_verified(source: Path, partial: Path) -> dict[str, str]:
    """Copy every plain file of ``source``; their sha256, each checked on the copy."""
    sums: dict[str, str] = {}
    for item in sorted(source.iterdir()):
        if not item.is_file():
            continue
        expected = sha256_of(item)
        shutil.copy2(item, partial / item.name)
        actual = sha256_of(partial / item.name)
        if actual != expected:
            raise BackupError(
                f"{item.name}: the copy hashes to {actual[:12]}…, not {expected[:12]}…"
            )
        sums[item.name] = expected
    return sums


def backup_model(directory: Path, backup_dir: Path, now: datetime | None = None) -> Backup:
    try:
        card = check_model(directory)
    except ModelError as exc:
        raise BackupError(f"refusing to back up a model that fails its checks: {exc}") from exc
    backup_dir.mkdir(parents=True, exist_ok=True)
    target = _free_target(backup_dir, _name(card.version, now or datetime.now(UTC)))
    partial = backup_dir / f".{target.name}.partial"
    try:
        partial.mkdir()
        sums = _copy_verified(directory, partial)
        if sums.get(MODEL_NAME) != card.sha256:
            raise BackupError(f"{MODEL_NAME} changed while it was copied; try again")
        lines = "".join(f"{sha}  {name}\n" for name, sha in sums.items())
        (partial / SUMS_NAME).write_text(lines, encoding="utf-8")
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Backup(target, card.version, card.sha256, len(sums))


def verify_backup(path: Path) -> str:
    """Re-hash every file listed in the backup's SHA256SUMS; the model's sha256, or BackupError."""
    try:
        listed = (path / SUMS_NAME).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BackupError(f"{path}: no readable {SUMS_NAME} ({exc.strerror})") from None
    model_sha = ""
    for line in listed:
        sha, _, name = line.partition("  ")
        file = path / name
        if not file.is_file() or sha256_of(file) != sha:
            raise BackupError(f"{file}: missing or does not match {SUMS_NAME}")
        model_sha = sha if name == MODEL_NAME else model_sha
    if not model_sha:
        raise BackupError(f"{path}: {SUMS_NAME} does not list {MODEL_NAME}")
    return model_sha


def find_backup(backup_dir: Path, sha256: str) -> tuple[Path | None, list[str]]:
    """The newest verified backup of the model with ``sha256``, and problems met on the way."""
    problems: list[str] = []
    if not backup_dir.is_dir():
        return None, problems
    for path in sorted(backup_dir.iterdir(), reverse=True):
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            if verify_backup(path) == sha256:
                return path, problems
        except BackupError as exc:
            problems.append(str(exc))
    return None, problems
