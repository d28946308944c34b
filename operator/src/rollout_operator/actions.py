"""What the state machine asks the world to do: frozen values, executed by the handlers.

Two kinds. **Effects** change the cluster and are idempotent ("ensure", not "create"): the handler
applies them *before* it writes the new status, so a crash in between only makes the next
reconcile compute and apply them again. **Announcements** (events, webhook notifications) are
sent *after* the status write succeeded, so a failed write never announces a change that did not
happen. The state machine repeats the effects that hold a steady state (the candidate's track,
the traffic split, the promotion) on every reconcile of a phase, which also repairs drift; the
one-off effects and all announcements come only with the transition that causes them. The
reconciler applies a repeated track and split again at least every 5 s, not at every analysis
round (`reconcile.SteadyEffects`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Track = Literal["shadow", "canary"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class EnsureCandidate:
    """The candidate Deployment exists with the candidate's spec, scaled up, labelled ``track``."""

    track: Track


@dataclass(frozen=True)
class SetTraffic:
    """``weight`` % of real traffic to the candidate, ``mirror_percent`` % mirrored to it."""

    weight: int
    mirror_percent: int = 0


@dataclass(frozen=True)
class PromoteStable:
    """The stable Deployment takes the candidate's spec (image, model, env)."""


@dataclass(frozen=True)
class ScaleDownCandidate:
    """Scale the candidate to zero but keep it (root-cause analysis after a rollback)."""


@dataclass(frozen=True)
class RemoveCandidate:
    """Delete the candidate Deployment (after a successful promotion)."""


@dataclass(frozen=True)
class RunVerification:
    """Create the verify step's Job (``job``: its name, unique per attempt) from the candidate's
    pod template; the status records that it was created."""

    job: str
    step: int


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes Event on the rollout."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Notify:
    """A webhook notification; ``event`` is ``phaseChanged`` or ``rollback``."""

    event: str
    message: str


Effect = (
    EnsureCandidate
    | SetTraffic
    | RunVerification
    | PromoteStable
    | ScaleDownCandidate
    | RemoveCandidate
)
Announcement = EmitEvent | Notify
Action = Effect | Announcement


def split(actions: Iterable[Action]) -> tuple[list[Effect], list[Announcement]]:
    """Effects (apply before the status write) and announcements (send after it), in order."""
    effects: list[Effect] = []
    announcements: list[Announcement] = []
    for action in actions:
        if isinstance(action, EmitEvent | Notify):
            announcements.append(action)
        else:
            effects.append(action)
    return effects, announcements
