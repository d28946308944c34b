"""API keys: generated once, shown once, stored only as hashes.

A key is ``<key_id>.<secret>``: ``key_id`` is 8 lowercase hex characters (public, it names the
client in logs and the audit trail) and ``secret`` is 32 random bytes, urlsafe-base64 (43 chars).

The server never holds a key, only a *keys file*: text, one entry per line, ``#`` comments and
blank lines allowed::

    # key_id:sha256-hex-of-the-full-key[:optional label]
    1a2b3c4d:5e88...(64 hex)...:plant-berlin

``KeyStore.from_file`` also accepts a *directory*, which is how a Kubernetes Secret is mounted:
every regular, non-hidden file in it (one per Secret data key; the ``..data`` bookkeeping entries
are hidden) is parsed as a keys file. Kubernetes swaps the mounted files atomically when the
Secret changes, so ``reload_if_changed`` picks up rotated keys without a restart.

Error messages name the file and line but never repeat a line's text: an operator who pasted a
plaintext key into the file by mistake must not find it again in a crash log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

KEY_ID_RE = re.compile(r"[0-9a-f]{8}")
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32): 43 chars, no padding
_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
_PLAINTEXT_KEY_RE = re.compile(r"[0-9a-f]{8}\.[A-Za-z0-9_-]{40,}")
_SECRET_BYTES = 32
_MAX_PRESENTED = 128  # longer input is rejected before hashing anything

Signature = tuple[tuple[str, int, int, int], ...]


class KeyFileError(Exception):
    """A keys file (or directory) that cannot be used; names the file and line, not its text."""


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    digest: bytes  # sha256 of the full key
    label: str
    source: str  # "file:line", for duplicate-id messages

    def __repr__(self) -> str:
        return f"KeyEntry(key_id={self.key_id!r}, label={self.label!r})"


def hash_key(key: str) -> bytes:
    """sha256 of the full key.

    A plain, unsalted fast hash is enough here (unlike for passwords) because keys carry 256
    bits of randomness: there is no dictionary to try and brute force is out of reach.
    """
    return hashlib.sha256(key.encode("utf-8")).digest()


def split_key(presented: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` when ``presented`` has the shape of a key, else None."""
    if len(presented) > _MAX_PRESENTED:
        return None
    key_id, dot, secret = presented.partition(".")
    if not dot or not KEY_ID_RE.fullmatch(key_id) or not SECRET_RE.fullmatch(secret):
        return None
    return key_id, secret


def generate_key(label: str = "", taken: Collection[str] = ()) -> tuple[str, str]:
    """A new key and the keys-file line that admits it: ``(key, line)``.

    ``taken`` holds key ids already in use, so a (1 in 4 billion) id collision is retried.
    """
    if any(ch in label for ch in "\r\n\0"):
        raise ValueError("label must be a single line")
    label = label.strip()
    while True:
        key_id = secrets.token_hex(4)
        if key_id not in taken:
            break
    key = f"{key_id}.{secrets.token_urlsafe(_SECRET_BYTES)}"
    line = f"{key_id}:{hash_key(key).hex()}"
    return key, f"{line}:{label}" if label else line


def _parse_line(line: str, where: str) -> KeyEntry:
    if _PLAINTEXT_KEY_RE.search(line):
        raise KeyFileError(
            f"{where}: looks like a plaintext API key; store only its hash "
            "(`schedctl keygen` prints the line to add)"
        )
    parts = line.split(":", 2)
    if len(parts) < 2:
        raise KeyFileError(f"{where}: expected key_id:sha256-hex[:label]")
    key_id, digest = parts[0].strip(), parts[1].strip()
    if not KEY_ID_RE.fullmatch(key_id):
        raise KeyFileError(f"{where}: key id must be 8 lowercase hex characters")
    if not _HASH_RE.fullmatch(digest):
        raise KeyFileError(f"{where}: hash must be 64 hex characters (sha256)")
    label = parts[2].strip() if len(parts) == 3 else ""
    return KeyEntry(key_id, bytes.fromhex(digest), label, where)


def parse_keys_text(text: str, source: str) -> list[KeyEntry]:
    """The entries of one keys file; ``source`` names it in errors."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append(_parse_line(line, f"{source}:{number}"))
    return entries


def _key_files(path: Path) -> list[Path]:
    """The files to parse: the path itself, or a directory's regular non-hidden files."""
    if path.is_dir():
        # is_file() follows symlinks: a mounted Secret's visible entries link into ..data/.
        return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
    return [path]


def _signature(path: Path) -> Signature:
    """What changes when the keys change: the path's own stat, and each key file's."""
    stats = [(path.name, *_stat(path))]
    if path.is_dir():
        stats += [(p.name, *_stat(p)) for p in _key_files(path)]
    return tuple(stats)


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


def _load(path: Path) -> tuple[dict[str, KeyEntry], Signature]:
    try:
        signature = _signature(path)
        files = _key_files(path)
        texts = [(f, f.read_text(encoding="utf-8")) for f in files]
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path}: no such keys file or directory") from exc
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{path}: keys file is not UTF-8 text") from exc
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read keys ({exc.strerror or 'I/O error'})") from exc
    entries: dict[str, KeyEntry] = {}
    for file, text in texts:
        for entry in parse_keys_text(text, str(file)):
            first = entries.setdefault(entry.key_id, entry)
            if first is not entry:
                raise KeyFileError(
                    f"{entry.source}: duplicate key id {entry.key_id} (first at {first.source})"
                )
    return entries, signature


class KeyStore:
    """The hashes of the keys that may call the service, reloadable while serving.

    An empty store is valid and admits nobody (fail closed).
    """

    def __init__(self, entries: Mapping[str, KeyEntry], path: Path | None = None) -> None:
        self._entries: Mapping[str, KeyEntry] = MappingProxyType(dict(entries))
        self._path = path
        self._signature: Signature = ()
        self._lock = threading.Lock()
        # Unknown ids are compared against this, so the time taken does not tell whether an id
        # exists. It is random, so no presented key can match it.
        self._dummy = secrets.token_bytes(hashlib.sha256().digest_size)

    @classmethod
    def from_file(cls, path: Path | str) -> KeyStore:
        """Load a keys file, or a directory of them (a mounted Secret); KeyFileError if invalid."""
        path = Path(path)
        entries, signature = _load(path)
        store = cls(entries, path)
        store._signature = signature
        return store

    def verify(self, presented: str) -> str | None:
        """The key id when ``presented`` is a valid key, else None. Constant time per key id."""
        parts = split_key(presented)
        if parts is None:
            return None  # the format is public: rejecting it early reveals nothing
        key_id = parts[0]
        entry = self._entries.get(key_id)
        expected = entry.digest if entry is not None else self._dummy
        matches = hmac.compare_digest(hash_key(presented), expected)
        return key_id if matches and entry is not None else None

    def label(self, key_id: str) -> str | None:
        """The label the key was created with ("" if none), or None for an unknown id."""
        entry = self._entries.get(key_id)
        return entry.label if entry is not None else None

    def reload_if_changed(self) -> bool:
        """Re-read the keys when the file (or a file in the directory) changed; True if reloaded.

        On an invalid or unreadable file the previous keys stay in force and KeyFileError is
        raised; the next call tries again, so a fixed file is picked up.
        """
        if self._path is None:
            return False
        with self._lock:
            try:
                current = _signature(self._path)
            except OSError as exc:
                raise KeyFileError(f"{self._path}: cannot read keys, keeping the old ones") from exc
            if current == self._signature:
                return False
            entries, signature = _load(self._path)
            self._entries = MappingProxyType(entries)  # one reference swap: readers need no lock
            self._signature = signature
            return True

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"KeyStore({len(self._entries)} keys)"


def append_to_keys_file(path: Path, line: str) -> None:
    """Append one entry, creating the file with mode 0600 (it lists who may call the service)."""
    flags = os.O_WRONLY | os.O_APPEND
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask
    except FileExistsError:
        fd = os.open(path, flags)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            out.write("\n")
        out.write(line + "\n")


def add_key(path: Path, label: str = "") -> tuple[str, str]:
    """Generate a key and append its hash line to ``path``: ``(key, key_id)``.

    An existing file is parsed first, so a broken file is never appended to and a new key id
    never collides with one already there.
    """
    if path.is_dir():
        raise KeyFileError(f"{path}: is a directory; name a keys file")
    taken: Collection[str] = set(_load(path)[0]) if path.exists() else ()
    key, line = generate_key(label, taken)
    append_to_keys_file(path, line)
    return key, line.split(":", 1)[0]
