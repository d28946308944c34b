"""The one interface every traffic router implements, and the error it raises.

The interface is deliberately narrow (Flagger's ``SetRoutes/GetRoutes/Finalize``, Argo Rollouts'
``SetWeight/SetMirror/VerifyWeight/RemoveManagedRoutes``): the state machine's ``SetTraffic``
action becomes one ``set_traffic`` call (``set_promotion_traffic`` while Promoting),
``get_traffic`` reads the routing back from the API server, never from memory, and the finalizer
calls ``restore``. What differs between providers beyond that is a capability the router reports
(``sizes_candidate``) or a method with a default (``set_promotion_traffic``), so the reconciler
and the state machine never ask which provider they drive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class TrafficState:
    """What the routing does now: ``weight`` % of real traffic to the candidate, and
    ``mirror_percent`` % of the traffic copied to it (0: no mirror)."""

    weight: int
    mirror_percent: int


@dataclass(frozen=True)
class RouteAcceptance:
    """Whether the gateways that route by the object took its current spec, from the status
    they write (Gateway API: each parent's ``Accepted`` and ``ResolvedRefs`` conditions at the
    route's ``metadata.generation``). A weight counts as in force only once taken; a route that
    no gateway reports on is assumed in force (what Argo Rollouts and Flagger always assume)."""

    state: Literal["Accepted", "Pending", "Rejected", "NotReported"]
    message: str

    @property
    def in_force(self) -> bool:
        return self.state in ("Accepted", "NotReported")


NOT_REPORTED = RouteAcceptance(
    "NotReported", "no gateway reports a status for the route: its weights are assumed in force"
)


class RouterError(RuntimeError):
    """The routing cannot be set up as the spec says: the route, a rule or a Deployment it
    needs is missing. ``field`` names the spec field at fault (the handler turns this error into
    phase Invalid with that field in the condition message); ``resource`` names the object."""

    def __init__(self, message: str, *, resource: str, field: str) -> None:
        super().__init__(message)
        self.resource = resource
        self.field = field


class Router(Protocol):
    """Moves real traffic and mirrored copies between the stable and the candidate version.

    Routers subclass it to take the defaults below."""

    # True when the router's split *is* the candidate's replica count: it sizes the candidate
    # itself, and must be told the step's traffic even while the candidate is unavailable (its
    # pods come from that call). False: the candidate runs as many pods as the stable, and gets
    # traffic only once available.
    sizes_candidate: bool = False

    def set_traffic(self, weight: int, mirror_percent: int) -> None:
        """Send ``weight`` % (0-100) to the candidate and mirror ``mirror_percent`` % (0-100) to
        it. Idempotent: calling it again with the same numbers changes nothing."""
        ...

    def set_promotion_traffic(self, weight: int, mirror_percent: int) -> None:
        """The traffic while the stable Deployment rolls out the candidate's spec (Promoting):
        by default the split of the last step, as ``set_traffic`` sets it."""
        self.set_traffic(weight, mirror_percent)

    def get_traffic(self) -> TrafficState:
        """The routing as the API server has it now."""
        ...

    def restore(self, *, drop_candidate: bool = False) -> None:
        """All traffic to stable, no mirror: the finalizer calls this. ``drop_candidate``: the
        candidate's Service goes with the rollout, so a route stops naming it (a gateway would
        report the dangling backend as unresolved)."""
        ...

    def acceptance(self) -> RouteAcceptance:
        """Whether the routing as written is in force (see RouteAcceptance)."""
        return NOT_REPORTED


def check_percent(name: str, value: int) -> int:
    """``value`` if it is an integer percentage; a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{name} must be an integer from 0 to 100, got {value!r}")
    return value
