"""Gateway API ``GRPCRoute``: weighted backendRefs, and a ``RequestMirror`` filter for shadow.

The router owns, in every rule whose backendRefs include the stable Service: the stable and the
candidate backendRefs' ``weight`` (the candidate's ref is added, with ``spec.routing.port``, when
missing, and kept with weight 0 by ``restore`` — the route's author may have written it — unless
the candidate's Service is the operator's, which goes with the rollout), and
its own ``RequestMirror`` filter (the one whose backendRef is the candidate Service). Other
rules, other backendRefs and other filters are left as they are. Weights are written as
``100 - weight`` and ``weight``, so they read back as exact percentages.

Mirroring on the route (GEP-3171: ``percent`` is standard since Gateway API v1.2, omitted here at
100 %) is an Extended feature that many gateways do not implement — and an implementation that
does not support a filter may reject the whole rule. So it is opt-in (``route_mirror``); by
default the shadow copy comes from the stable pods (``rollout_operator.mirror_config``).
"""

from __future__ import annotations

from typing import Any

from rollout_operator.routers.base import NOT_REPORTED, RouteAcceptance, TrafficState
from rollout_operator.routers.routes import RouteKind, RouteRouter, Spec

GRPCROUTE = RouteKind("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute")
MIRROR_FILTER = "RequestMirror"
DEFAULT_WEIGHT = 1  # Gateway API: a backendRef without weight has weight 1

Ref = dict[str, Any]


def is_service_ref(ref: Ref, name: str, namespace: str) -> bool:
    """Whether ``ref`` (a backendRef) points at Service ``name`` in ``namespace``."""
    return (
        ref.get("name") == name
        and ref.get("group", "") == ""
        and ref.get("kind", "Service") == "Service"
        and ref.get("namespace", namespace) == namespace
    )


def set_ref_weight(refs: list[Ref], name: str, namespace: str, weight: int) -> bool:
    """Give the first ref to ``name`` ``weight`` (any further one 0); False when there is none."""
    found = False
    for ref in refs:
        if is_service_ref(ref, name, namespace):
            ref["weight"] = 0 if found else weight
            found = True
    return found


def _ref_weight(refs: list[Ref], name: str, namespace: str) -> int:
    return sum(
        int(r.get("weight", DEFAULT_WEIGHT)) for r in refs if is_service_ref(r, name, namespace)
    )


def _mirror_percent(request_mirror: dict[str, Any]) -> int:
    if "percent" in request_mirror:
        return round(float(request_mirror["percent"]))
    fraction = request_mirror.get("fraction")
    if fraction:
        numerator, denominator = fraction["numerator"], fraction.get("denominator", 100)
        return round(100 * float(numerator) / float(denominator))
    return 100


def parents_acceptance(generation: int, parents: list[dict[str, Any]]) -> RouteAcceptance:
    """One verdict from every parent's status: Rejected when a gateway refused the current
    generation (Accepted or ResolvedRefs False), Pending while one has not seen it yet,
    Accepted when all took it."""
    if not parents:
        return NOT_REPORTED
    rejected, pending, accepted = [], [], []
    for parent in parents:
        who = (
            f"{parent.get('controllerName', 'a gateway')} "
            f"(parent {(parent.get('parentRef') or {}).get('name', '?')})"
        )
        conditions = {c.get("type"): c for c in parent.get("conditions") or []}
        taken = conditions.get("Accepted")
        if taken is None or int(taken.get("observedGeneration") or 0) < generation:
            pending.append(f"{who} has not reported generation {generation} yet")
            continue
        refused = [
            c
            for c in (taken, conditions.get("ResolvedRefs"))
            if c is not None
            and c.get("status") == "False"
            and int(c.get("observedGeneration") or 0) >= generation
        ]
        if refused:
            rejected += [
                f"{who}: {c['type']} False ({c.get('reason', '')}: {c.get('message', '')})"
                for c in refused
            ]
        elif taken.get("status") == "True":
            accepted.append(who)
        else:
            pending.append(f"{who}: Accepted {taken.get('status')}")
    if rejected:
        return RouteAcceptance("Rejected", "; ".join(rejected))
    if pending:
        return RouteAcceptance("Pending", "; ".join(pending))
    return RouteAcceptance("Accepted", f"generation {generation} accepted by {', '.join(accepted)}")


class GrpcRouteRouter(RouteRouter):
    """Weights and mirror on one GRPCRoute; see the module docstring for what it owns."""

    kind = GRPCROUTE

    def get_traffic(self) -> TrafficState:
        rule = self._managed_rules(self.route.read_spec())[0]
        refs = rule.get("backendRefs") or []
        ns, r = self.route.namespace, self.routing
        stable = _ref_weight(refs, r.stable_service, ns)
        canary = _ref_weight(refs, r.canary_service, ns)
        weight = round(100 * canary / (stable + canary)) if stable + canary else 0
        if self.route_mirror:
            mirrors = [f for f in rule.get("filters") or [] if self._is_own_mirror(f)]
            mirror = _mirror_percent(mirrors[0]["requestMirror"]) if mirrors else 0
        else:
            mirror = self.app_mirror.percent()
        return TrafficState(weight=weight, mirror_percent=mirror)

    def acceptance(self) -> RouteAcceptance:
        """What the gateways of the route's parents report for its current generation (the
        read is kept for the `set_traffic` that follows in the same reconcile)."""
        route = self.route.read(keep=True)
        return parents_acceptance(
            int((route.get("metadata") or {}).get("generation") or 0),
            ((route.get("status") or {}).get("parents")) or [],
        )

    # --- the owned parts of the spec ----------------------------------------------------------

    def _managed_rules(self, spec: Spec) -> list[dict[str, Any]]:
        stable, ns = self.routing.stable_service, self.route.namespace
        rules = [
            rule
            for rule in spec.get("rules") or []
            if any(is_service_ref(ref, stable, ns) for ref in rule.get("backendRefs") or [])
        ]
        if not rules:
            raise self.route.error(
                f"has no rule with a backendRef to Service {stable!r} (spec.routing.stableService)",
                field="spec.routing.stableService",
            )
        return rules

    def _is_own_mirror(self, flt: dict[str, Any]) -> bool:
        ref = (flt.get("requestMirror") or {}).get("backendRef") or {}
        return flt.get("type") == MIRROR_FILTER and is_service_ref(
            ref, self.routing.canary_service, self.route.namespace
        )

    def _apply(self, spec: Spec, weight: int, mirror_percent: int) -> None:
        r, ns = self.routing, self.route.namespace
        for rule in self._managed_rules(spec):
            refs = rule.setdefault("backendRefs", [])
            set_ref_weight(refs, r.stable_service, ns, 100 - weight)
            if not set_ref_weight(refs, r.canary_service, ns, weight):
                refs.append({"name": r.canary_service, "port": r.port, "weight": weight})
            old = rule.get("filters") or []
            new = [f for f in old if not self._is_own_mirror(f)]
            if mirror_percent:
                mirror: dict[str, Any] = {"backendRef": {"name": r.canary_service, "port": r.port}}
                if mirror_percent < 100:
                    mirror["percent"] = mirror_percent
                new.append({"type": MIRROR_FILTER, "requestMirror": mirror})
            if new != old:
                if new:
                    rule["filters"] = new
                else:
                    del rule["filters"]

    def _drop_candidate(self, spec: Spec) -> None:
        r, ns = self.routing, self.route.namespace
        for rule in self._managed_rules(spec):
            rule["backendRefs"] = [
                ref for ref in rule["backendRefs"] if not is_service_ref(ref, r.canary_service, ns)
            ]


# The registry builds routers through this (routers/registry.py).
make = GrpcRouteRouter.make
