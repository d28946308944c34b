"""Istio ``VirtualService``: route destination weights, and ``mirror`` + ``mirrorPercentage``.

The router owns, in every ``http`` route with a destination whose host is the stable Service
(short name or ``<svc>.<ns>[.svc[.cluster.local]]``): the stable and the candidate destinations'
``weight`` (the candidate's destination is added when missing, its host written in the same form
as the stable one's, with ``port.number`` when the stable one names a port), and ``mirror`` /
``mirrorPercentage`` while they point at the candidate (Istio allows one ``mirror`` per route; one
that points elsewhere is replaced only while the rollout mirrors). Other routes and fields are
left alone. Uses ``networking.istio.io/v1`` (served since Istio 1.22).
"""

from __future__ import annotations

from typing import Any

from rollout_operator.routers.base import TrafficState
from rollout_operator.routers.routes import RouteKind, RouteRouter, Spec

VIRTUAL_SERVICE = RouteKind("networking.istio.io", "v1", "virtualservices", "VirtualService")

Destination = dict[str, Any]


def host_suffix(host: str, service: str, namespace: str) -> str | None:
    """What follows ``service`` in ``host`` ("" for the short name); None for another service."""
    for suffix in ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local"):
        if host == service + suffix:
            return suffix
    return None


def _weight(dest: Destination, count: int) -> int:
    # Istio: a lone destination takes everything; otherwise an unset weight is 0.
    return int(dest.get("weight", 100 if count == 1 else 0))


class VirtualServiceRouter(RouteRouter):
    """Weights and mirror on one VirtualService; see the module docstring for what it owns."""

    kind = VIRTUAL_SERVICE

    def get_traffic(self) -> TrafficState:
        http = self._managed_routes(self.route.read_spec())[0]
        dests = http.get("route") or []
        stable = sum(_weight(d, len(dests)) for d in dests if self._is(d, "stable"))
        canary = sum(_weight(d, len(dests)) for d in dests if self._is(d, "canary"))
        weight = round(100 * canary / (stable + canary)) if stable + canary else 0
        if not self.route_mirror:
            mirror = self.app_mirror.percent()
        elif self._own_mirror(http):
            mirror = round(float((http.get("mirrorPercentage") or {}).get("value", 100)))
        else:
            mirror = 0
        return TrafficState(weight=weight, mirror_percent=mirror)

    # --- the owned parts of the spec ----------------------------------------------------------

    def _suffix(self, host: str, which: str) -> str | None:
        service = self.routing.stable_service if which == "stable" else self.routing.canary_service
        return host_suffix(host, service, self.route.namespace)

    def _is(self, dest: Destination, which: str) -> bool:
        return self._suffix((dest.get("destination") or {}).get("host", ""), which) is not None

    def _own_mirror(self, http: dict[str, Any]) -> bool:
        return self._suffix((http.get("mirror") or {}).get("host", ""), "canary") is not None

    def _managed_routes(self, spec: Spec) -> list[dict[str, Any]]:
        routes = [
            http
            for http in spec.get("http") or []
            if any(self._is(d, "stable") for d in http.get("route") or [])
        ]
        if not routes:
            raise self.route.error(
                f"has no http route with a destination host {self.routing.stable_service!r} "
                "(spec.routing.stableService)",
                field="spec.routing.stableService",
            )
        return routes

    def _canary_destination(self, stable: Destination) -> dict[str, Any]:
        suffix = self._suffix(stable["host"], "stable") or ""
        dest: dict[str, Any] = {"host": self.routing.canary_service + suffix}
        if "port" in stable:
            dest["port"] = {"number": self.routing.port}
        return dest

    def _apply(self, spec: Spec, weight: int, mirror_percent: int) -> None:
        for http in self._managed_routes(spec):
            dests = http["route"]
            stables = [d for d in dests if self._is(d, "stable")]
            canaries = [d for d in dests if self._is(d, "canary")]
            for i, dest in enumerate(stables):
                dest["weight"] = 100 - weight if i == 0 else 0
            for i, dest in enumerate(canaries):
                dest["weight"] = weight if i == 0 else 0
            target = self._canary_destination(stables[0]["destination"])
            if not canaries:
                dests.append({"destination": target, "weight": weight})
            if mirror_percent:
                http["mirror"] = target
                http["mirrorPercentage"] = {"value": float(mirror_percent)}
            elif self._own_mirror(http):
                http.pop("mirror")
                http.pop("mirrorPercentage", None)

    def _drop_candidate(self, spec: Spec) -> None:
        for http in self._managed_routes(spec):
            http["route"] = [d for d in http["route"] if not self._is(d, "canary")]


# The registry builds routers through this (routers/registry.py).
make = VirtualServiceRouter.make
