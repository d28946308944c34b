"""Human commands (approve, abort, retry, promote) travel as one annotation on the rollout.

The CLI writes ``rollouts.scheduling.io/command: <verb>@<id>`` with a fresh id; the operator acts
on a value it has not handled yet and records it as ``status.lastCommand``. So a command is acted
on exactly once, survives an operator restart (the annotation stays until the next command), and
needs neither a subresource nor write access to anything but the rollout. Keeping the value in
the annotation also leaves an audit trail in the object's managed fields: who asked, and when.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

from rollout_operator.model import Commands

ANNOTATION = "rollouts.scheduling.io/command"
VERBS = ("approve", "abort", "retry", "promote")


class CommandError(ValueError):
    """An annotation value that is not ``<verb>@<id>`` with a known verb."""


def encode(verb: str, now: dt.datetime | None = None) -> str:
    """A fresh annotation value for ``verb``: time-ordered and unique."""
    if verb not in VERBS:
        raise CommandError(f"unknown command {verb!r}; expected one of {', '.join(VERBS)}")
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{verb}@{stamp}-{secrets.token_hex(3)}"


def decode(value: str) -> str:
    """The verb of an annotation value."""
    verb, sep, ident = value.partition("@")
    if not sep or not ident or verb not in VERBS:
        raise CommandError(
            f"annotation {ANNOTATION}={value!r} is not <verb>@<id> with verb one of "
            f"{', '.join(VERBS)}"
        )
    return verb


def pending(annotations: Mapping[str, str] | None, status: Mapping[str, Any] | None) -> str | None:
    """The annotation value not yet handled (to record as ``status.lastCommand``), or None."""
    value = (annotations or {}).get(ANNOTATION)
    if not value or value == (status or {}).get("lastCommand"):
        return None
    return value


def to_commands(value: str | None) -> Commands:
    """``Commands`` for the state machine; None (nothing pending) gives no command."""
    if value is None:
        return Commands()
    verb = decode(value)
    return Commands(
        approve=verb == "approve", abort=verb == "abort", retry=verb == "retry",
        promote=verb == "promote",
    )  # fmt: skip


def patch_for(verb: str) -> dict[str, Any]:
    """The merge patch the CLI sends."""
    return {"metadata": {"annotations": {ANNOTATION: encode(verb)}}}
