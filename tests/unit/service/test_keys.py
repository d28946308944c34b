"""API keys: generation, constant-time verification, keys files and Secret dirs, reload, keygen."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from jobshop_scheduler.cli import main
from jobshop_scheduler.service.keys import (
    KeyFileError,
    KeyStore,
    add_key,
    generate_key,
    hash_key,
    split_key,
)

pytestmark = pytest.mark.unit


def write_store(path: Path, *lines: str) -> KeyStore:
    path.write_text("\n".join(lines) + "\n")
    return KeyStore.from_file(path)


def test_generated_key_has_the_documented_shape_and_line() -> None:
    key, line = generate_key("plant-berlin")
    key_id, secret = key.split(".")
    assert len(key_id) == 8 and int(key_id, 16) >= 0 and key_id == key_id.lower()
    assert len(secret) == 43
    assert line == f"{key_id}:{hashlib.sha256(key.encode()).hexdigest()}:plant-berlin"
    assert secret not in line
    assert generate_key()[1].count(":") == 1  # no label, no trailing colon


def test_roundtrip_and_rejections(tmp_path: Path) -> None:
    key, line = generate_key("a")
    other, other_line = generate_key("b")
    store = write_store(tmp_path / "keys", "# clients", "", line, other_line)
    assert len(store) == 2
    assert store.verify(key) == key.split(".")[0]
    assert store.verify(other) == other.split(".")[0]
    assert store.label(key.split(".")[0]) == "a"

    key_id, secret = key.split(".")
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert store.verify(f"{key_id}.{wrong_secret}") is None  # known id, wrong secret
    assert store.verify(f"{other.split('.')[0]}.{secret}") is None  # secret under another id
    unknown, _ = generate_key()
    assert store.verify(unknown) is None  # unknown id
    for malformed in ("", key_id, f"{key_id}.", key + "x", key.upper(), f" {key}", "a" * 10_000):
        assert store.verify(malformed) is None, malformed


def test_split_key() -> None:
    key, _ = generate_key()
    assert split_key(key) == tuple(key.split("."))
    assert split_key("nothex00." + "a" * 43) is None


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("# ok\n\n12345678\n", 3, "expected key_id:sha256-hex"),
        ("ABCDEF12:" + "0" * 64 + "\n", 1, "8 lowercase hex"),
        ("1234567:" + "0" * 64 + "\n", 1, "8 lowercase hex"),
        ("12345678:" + "0" * 63 + "\n", 1, "64 hex characters"),
        ("12345678:" + "z" * 64 + "\n", 1, "64 hex characters"),
        ("12345678:" + "0" * 64 + "\n12345678:" + "1" * 64 + "\n", 2, "duplicate key id"),
    ],
)
def test_file_errors_name_the_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(KeyFileError) as err:
        KeyStore.from_file(path)
    assert f"{path}:{line}:" in str(err.value)
    assert reason in str(err.value)
    assert "0" * 63 not in str(err.value)  # the line's text is not repeated


def test_a_plaintext_key_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key, _ = generate_key()
    path = tmp_path / "keys"
    path.write_text(f"{key}\n")
    with pytest.raises(KeyFileError, match="plaintext") as err:
        KeyStore.from_file(path)
    assert key.split(".")[1] not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such keys file"):
        KeyStore.from_file(tmp_path / "absent")


def test_uppercase_hash_is_accepted_and_labels_may_hold_colons(tmp_path: Path) -> None:
    key, line = generate_key()
    key_id, digest = line.split(":")
    store = write_store(tmp_path / "keys", f"{key_id}:{digest.upper()}:site: a:b")
    assert store.verify(key) == key_id
    assert store.label(key_id) == "site: a:b"


def test_secret_style_directory(tmp_path: Path) -> None:
    """Kubernetes mounts each Secret data key as a symlink into a hidden ..data directory."""
    mount = tmp_path / "secret"
    data = mount / "..2025_01_01_00_00_00.1"
    data.mkdir(parents=True)
    (mount / "..data").symlink_to(data.name)
    key_a, line_a = generate_key("a")
    key_b, line_b = generate_key("b")
    (data / "team-a").write_text(line_a + "\n")
    (data / "team-b").write_text(line_b + "\n")
    (data / ".hidden").write_text("not a keys file\n")
    for name in ("team-a", "team-b"):
        (mount / name).symlink_to(Path("..data") / name)
    (mount / "subdir").mkdir()

    store = KeyStore.from_file(mount)
    assert len(store) == 2
    assert store.verify(key_a) == key_a.split(".")[0]
    assert store.verify(key_b) == key_b.split(".")[0]


def test_the_same_id_in_two_secret_files_is_an_error(tmp_path: Path) -> None:
    _, line = generate_key()
    (tmp_path / "one").write_text(line + "\n")
    (tmp_path / "two").write_text(line + "\n")
    with pytest.raises(KeyFileError, match="duplicate key id"):
        KeyStore.from_file(tmp_path)


def test_reload_on_change(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    old_key, old_line = generate_key()
    store = write_store(path, old_line)
    assert store.reload_if_changed() is False

    new_key, new_line = generate_key()
    path.write_text(new_line + "\n")
    os.utime(path, ns=(0, 10**18))  # a distinct mtime even on coarse-clock filesystems
    assert store.reload_if_changed() is True
    assert store.verify(new_key) is not None
    assert store.verify(old_key) is None
    assert store.reload_if_changed() is False


def test_a_broken_reload_keeps_the_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    key, line = generate_key()
    store = write_store(path, line)
    path.write_text("garbage\n")
    os.utime(path, ns=(0, 10**18))
    with pytest.raises(KeyFileError, match=":1:"):
        store.reload_if_changed()
    assert store.verify(key) is not None
    path.unlink()
    with pytest.raises(KeyFileError):
        store.reload_if_changed()
    assert store.verify(key) is not None


def test_reload_of_a_rotated_secret_directory(tmp_path: Path) -> None:
    mount = tmp_path / "secret"
    old_data, new_data = mount / "..v1", mount / "..v2"
    old_data.mkdir(parents=True)
    new_data.mkdir()
    old_key, old_line = generate_key()
    new_key, new_line = generate_key()
    (old_data / "keys").write_text(old_line + "\n")
    (new_data / "keys").write_text(new_line + "\n")
    (mount / "..data").symlink_to("..v1")
    (mount / "keys").symlink_to("..data/keys")
    store = KeyStore.from_file(mount)
    assert store.verify(old_key) is not None

    (mount / "..data_tmp").symlink_to("..v2")  # the kubelet's atomic swap
    (mount / "..data_tmp").rename(mount / "..data")
    assert store.reload_if_changed() is True
    assert store.verify(new_key) is not None
    assert store.verify(old_key) is None


def test_repr_shows_only_the_count(tmp_path: Path) -> None:
    key, line = generate_key("secret-label")
    store = write_store(tmp_path / "keys", line)
    text = repr(store)
    assert text == "KeyStore(1 keys)"
    assert line.split(":")[1] not in text and key not in text


def test_add_key_refuses_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("broken\n")
    with pytest.raises(KeyFileError, match=":1:"):
        add_key(path)
    assert path.read_text() == "broken\n"


def test_add_key_adds_a_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    _, line = generate_key()
    path.write_text(line)  # no trailing newline
    key, key_id = add_key(path, "second")
    store = KeyStore.from_file(path)
    assert len(store) == 2
    assert store.verify(key) == key_id


def test_keygen_writes_a_0600_file_and_the_printed_key_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys"
    assert main(["keygen", "--label", "plant-a", "--keys-file", str(path)]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "only" in err.lower() and "hash" in err
    assert key not in path.read_text() and key.split(".")[1] not in err
    assert KeyStore.from_file(path).verify(key) == key.split(".")[0]
    assert KeyStore.from_file(path).label(key.split(".")[0]) == "plant-a"

    assert main(["keygen", "--keys-file", str(path)]) == 0
    second = capsys.readouterr().out.strip()
    store = KeyStore.from_file(path)
    assert len(store) == 2 and store.verify(second) is not None and store.verify(key) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_without_a_file_prints_the_line_to_add(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--label", "ops"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    line = next(ln for ln in err.splitlines() if ln.startswith(key.split(".")[0] + ":"))
    assert line == f"{key.split('.')[0]}:{hash_key(key).hex()}:ops"
    assert out.count(key) == 1 and key not in err


def test_keygen_refuses_a_multiline_label(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--label", "a\nb"]) == 2
    assert "single line" in capsys.readouterr().err
