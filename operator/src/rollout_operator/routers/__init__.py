"""Traffic routers: one module per provider behind ``base.Router``, chosen by ``registry``.

How the state machine's ``SetTraffic(weight, mirror_percent)`` is carried out, per provider
(``make_router(..., route_mirror=...)``; the reconciler sets ``route_mirror`` from
``spec.routing.mirror: route``):

- ``gatewayAPI``: weight = GRPCRoute backendRef weights; mirror = the stable pods (ConfigMap),
  or with ``route_mirror`` a ``RequestMirror`` filter on the route;
- ``istio``: weight = VirtualService destination weights; mirror = the stable pods (ConfigMap),
  or with ``route_mirror`` the route's ``mirror`` + ``mirrorPercentage``;
- ``replicas``: weight = candidate/stable replica ratio; mirror = the stable pods (ConfigMap),
  with one candidate pod kept running to receive the copies; ``route_mirror`` is refused.

A router also says whether its routing is in force (``acceptance``): for a GRPCRoute, the
``Accepted`` and ``ResolvedRefs`` conditions its parents' gateways wrote for its current
generation; the others report nothing, and their weights are assumed in force.

Exactly one mechanism mirrors at a time (the other is switched off by the same call), so the
shadow never receives a request twice. ``restore()`` switches both off.
"""

from rollout_operator.routers.base import Router, RouterError, TrafficState
from rollout_operator.routers.registry import make_router

__all__ = ["Router", "RouterError", "TrafficState", "make_router"]
