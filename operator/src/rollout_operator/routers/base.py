"""The one interface every traffic router implements, and the error it raises.

The interface is deliberately narrow (Flagger's ``SetRoutes/GetRoutes/Finalize``, Argo Rollouts'
``SetWeight/SetMirror/VerifyWeight/RemoveManagedRoutes``): the state machine's ``SetTraffic``
action becomes one ``set_traffic`` call, the handler verifies it with ``get_traffic`` (read back
from the API server, never from memory), and rollback and the finalizer call ``restore``. How a
provider realises a weight or a mirror is its own business, so no provider ``if`` leaks into the
handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TrafficState:
    """What the routing does now: ``weight`` % of real traffic to the candidate, and
    ``mirror_percent`` % of the traffic copied to it (0: no mirror)."""

    weight: int
    mirror_percent: int


STABLE_ONLY = TrafficState(weight=0, mirror_percent=0)


class RouterError(RuntimeError):
    """The routing cannot be set up as the spec says: the route, a rule or a Deployment it
    needs is missing. ``field`` names the spec field at fault (the handler turns this error into
    phase Invalid with that field in the condition message); ``resource`` names the object."""

    def __init__(self, message: str, *, resource: str, field: str) -> None:
        super().__init__(message)
        self.resource = resource
        self.field = field


class Router(Protocol):
    """Moves real traffic and mirrored copies between the stable and the candidate version."""

    def set_traffic(self, weight: int, mirror_percent: int) -> None:
        """Send ``weight`` % (0-100) to the candidate and mirror ``mirror_percent`` % (0-100) to
        it. Idempotent: calling it again with the same numbers changes nothing."""
        ...

    def get_traffic(self) -> TrafficState:
        """The routing as the API server has it now."""
        ...

    def restore(self) -> None:
        """All traffic to stable, no mirror: rollback and the finalizer call this."""
        ...


def check_percent(name: str, value: int) -> int:
    """``value`` if it is an integer percentage; a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{name} must be an integer from 0 to 100, got {value!r}")
    return value
