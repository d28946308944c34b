"""Settings: defaults, environment over .env, the password file, typo detection, masking."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from jobshop_scheduler.data.envfile import EnvFileError, parse_env_text
from jobshop_scheduler.data.secret import MASK, Secret
from jobshop_scheduler.data.settings import (
    SPECS,
    Settings,
    SettingsError,
    load_settings,
    with_overrides,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_settings")]

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "pa$$w0rd#with=odd'chars"


def test_defaults_without_any_source() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.batch_size == 170
    assert settings.snapshot_path == Path("data/real_production_snapshot.json")
    assert (settings.min_cpu_cores, settings.min_ram_gb, settings.min_disk_gb) == (4, 16.0, 10.0)
    assert not settings.db_configured
    assert not settings.db_password


def test_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# comment\nSCHEDULER_DB_HOST=filehost\nexport SCHEDULER_DB_PORT=3307\n"
        "SCHEDULER_BATCH_SIZE=50  # inline comment\nOTHER_TOOL_SETTING=ignored\n"
    )
    settings = load_settings({"SCHEDULER_DB_HOST": "envhost", "PATH": "/bin"})
    assert (settings.db_host, settings.db_port, settings.batch_size) == ("envhost", 3307, 50)
    assert settings.db_configured


def test_named_env_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({}, env_file=tmp_path / "missing.env")
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({"SCHEDULER_ENV_FILE": str(tmp_path / "missing.env")})


def test_env_file_syntax() -> None:
    text = (
        "\n  # full-line comment\nA=plain value # trailing\nexport B='single # kept'\n"
        'C="double = kept"\nD=\nE = spaced \n'
    )
    assert parse_env_text(text) == {
        "A": "plain value",
        "B": "single # kept",
        "C": "double = kept",
        "D": "",
        "E": "spaced",
    }


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("no equals sign", "expected KEY=VALUE"),
        ("1BAD=x", "expected KEY=VALUE"),
        (f'SCHEDULER_DB_PASSWORD="{PASSWORD}', "unterminated"),
        (f'SCHEDULER_DB_PASSWORD="{PASSWORD}" junk', "after the closing quote"),
    ],
)
def test_bad_env_line_is_named_without_its_value(line: str, problem: str) -> None:
    with pytest.raises(EnvFileError, match=problem) as err:
        parse_env_text(f"OK=1\n{line}\n", "x.env")
    assert "x.env:2" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    settings = load_settings({"SCHEDULER_DB_PASSWORD_FILE": str(secret)})
    assert settings.db_password.reveal() == PASSWORD
    assert settings.db_password_file == secret
    assert settings.db_configured


def test_password_in_env_file_keeps_odd_characters(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f'SCHEDULER_DB_PASSWORD="{PASSWORD}"\n')
    assert load_settings({}).db_password.reveal() == PASSWORD


def test_password_and_file_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    env = {"SCHEDULER_DB_PASSWORD": PASSWORD, "SCHEDULER_DB_PASSWORD_FILE": str(secret)}
    with pytest.raises(SettingsError, match="not both") as err:
        load_settings(env)
    assert PASSWORD not in str(err.value)


def test_unreadable_password_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SettingsError, match=r"SCHEDULER_DB_PASSWORD_FILE: cannot read .*nope"):
        load_settings({"SCHEDULER_DB_PASSWORD_FILE": str(missing)})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCHEDULER_DB_PORT": "abc"}, "SCHEDULER_DB_PORT: must be an integer, got 'abc'"),
        ({"SCHEDULER_DB_PORT": "0"}, "SCHEDULER_DB_PORT: must be at least 1"),
        ({"SCHEDULER_BATCH_SIZE": "0"}, "SCHEDULER_BATCH_SIZE: must be at least 1"),
        ({"SCHEDULER_PREFLIGHT_MIN_RAM_GB": "-1"}, "SCHEDULER_PREFLIGHT_MIN_RAM_GB: must be pos"),
        ({"SCHEDULER_DB_TIMEOUT": "3"}, "unknown setting SCHEDULER_DB_TIMEOUT"),
        ({"SCHEDULER_DB_HOTS": "x"}, "did you mean SCHEDULER_DB_HOST"),
    ],
)
def test_bad_values_and_unknown_names_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(env)


def test_typo_in_env_file_is_caught_but_other_tools_keys_are_not(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MARIADB_ROOT_PASSWORD=x\nSCHEDULER_SNAPSHOTT=a.json\n")
    with pytest.raises(SettingsError, match="did you mean SCHEDULER_SNAPSHOT"):
        load_settings({})
    (tmp_path / ".env").write_text("MARIADB_ROOT_PASSWORD=x\nSCHEDULER_TRACK=canary\n")
    assert load_settings({}) == Settings(configured=frozenset())


def test_overrides_ignore_flags_not_given() -> None:
    settings = with_overrides(Settings(), snapshot_path=None, batch_size=10)
    assert settings.snapshot_path == Settings().snapshot_path
    assert settings.batch_size == 10


def test_secret_never_shows_its_value() -> None:
    secret = Secret(PASSWORD)
    settings = Settings(db_password=secret)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret:>30}", repr(settings),
                  str(settings)):  # fmt: skip
        assert PASSWORD not in shown
    assert MASK in repr(settings)
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(secret)
    assert secret == Secret(PASSWORD) and secret != Secret("other")
    assert secret.reveal() == PASSWORD


def test_scrub_masks_raw_and_escaped_forms() -> None:
    secret = Secret("it's-a\\secret")
    text = f"driver said: it's-a\\secret / {'it' + chr(39) + 's-a'}\\\\secret"
    assert "secret" not in secret.scrub(text).replace(MASK, "")
    assert Secret("").scrub("unchanged") == "unchanged"


def test_every_setting_is_documented_and_in_the_example() -> None:
    docs = (ROOT / "docs" / "data.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for spec in SPECS:
        assert f"`{spec.env}`" in docs, spec.env
        assert spec.env in example, spec.env
    uncommented = "\n".join(
        line.lstrip("# ") for line in example.splitlines() if line.lstrip("# ").startswith("SCH")
    )
    assert set(parse_env_text(uncommented)) == {s.env for s in SPECS}
