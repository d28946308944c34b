"""A minimal ``.env`` reader: ``KEY=VALUE`` lines, so no dependency is needed for twelve settings.

Accepted: blank lines, ``#`` comments, an optional ``export`` prefix, and values in single or
double quotes (kept verbatim inside, so a password may contain ``#`` or ``=``). An unquoted value
ends at `` #``. Anything else is an error naming the line: a silently skipped line would leave a
setting at its default without anyone noticing.
"""

from __future__ import annotations

import re
from pathlib import Path

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvFileError(ValueError):
    """A line of the .env file that cannot be read; the message names file and line."""


def _value(raw: str, where: str) -> str:
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        if end < 0:
            raise EnvFileError(f"{where}: unterminated {quote} quote")
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise EnvFileError(f"{where}: unexpected text after the closing quote")
        return raw[1:end]
    return raw.split(" #", 1)[0].strip()


def parse_env_text(text: str, source: str = ".env") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{number}"
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise EnvFileError(f"{where}: expected KEY=VALUE")
        values[key] = _value(raw, where)
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """The file's settings; an absent file is no settings (the .env file is optional)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return parse_env_text(text, str(path))
