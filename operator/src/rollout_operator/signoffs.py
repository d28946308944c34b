"""Sign-offs by role travel as annotations on the rollout, one per role.

``signoff.rollouts.scheduling.io/<role>: <username>@<stamp>-<id>``: one annotation per role, so
two approvers signing at once never overwrite each other, and a fresh value each time, so the
operator can tell a new sign-off from one it saw before. Who may write which value is not this
module's business: the chart's ValidatingAdmissionPolicy admits a sign-off only when the value
names the requesting user and that user belongs to the role's group, so the API server, not
the client, vouches for the identity.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "signoff.rollouts.scheduling.io/"
ROLE_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # an annotation name's part


class SignOffError(ValueError):
    """A role that cannot be an annotation name, or a value that is not ``user@id``."""


@dataclass(frozen=True)
class SignOff:
    role: str
    user: str
    value: str  # the whole annotation value: new value, new sign-off


def check_role(role: str) -> str:
    if not ROLE_PATTERN.match(role):
        raise SignOffError(
            f"role {role!r} is not a lower-case DNS label (a-z, 0-9 and '-', at most 63)"
        )
    return role


def key(role: str) -> str:
    return PREFIX + check_role(role)


def encode(user: str, now: dt.datetime | None = None) -> str:
    """A fresh annotation value signed by ``user``."""
    if not user:  # a user name may contain '@' (e-mail): parse splits at the last one
        raise SignOffError("an empty user name cannot sign off")
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{user}@{stamp}-{secrets.token_hex(3)}"


def patch_for(role: str, user: str) -> dict[str, Any]:
    """The merge patch the CLI sends for ``user`` signing off as ``role``."""
    return {"metadata": {"annotations": {key(role): encode(user)}}}


def parse(annotations: Mapping[str, str] | None) -> dict[str, SignOff]:
    """The sign-offs on a rollout by role; values that are not ``user@id`` are left out (the
    admission policy refuses them, so only an object written around it has one)."""
    found = {}
    for name, value in (annotations or {}).items():
        if not name.startswith(PREFIX):
            continue
        role = name[len(PREFIX) :]
        user, sep, ident = str(value).rpartition("@")
        if ROLE_PATTERN.match(role) and sep and user and ident:
            found[role] = SignOff(role, user, str(value))
    return found
