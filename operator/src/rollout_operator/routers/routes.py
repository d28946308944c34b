"""Read-modify-write of a route custom resource (GRPCRoute, VirtualService), conflict-safe.

A route is shared with people and other controllers, so the routers change only the entries
they own and write the object back with its ``resourceVersion``: a concurrent edit makes the API
server answer 409 and the change is redone on the fresh object instead of overwriting theirs.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, cast

from kubernetes import client

from rollout_operator.kube import none_if_missing, retry_on_conflict
from rollout_operator.mirror_config import AppMirror
from rollout_operator.model import RoutingSpec
from rollout_operator.routers.base import Router, RouterError, check_percent
from rollout_operator.routers.context import RouterContext

ROUTE_FIELD = "spec.routing.route"

Spec = dict[str, Any]


@dataclass(frozen=True)
class RouteKind:
    group: str
    version: str
    plural: str
    kind: str


class RouteObject:
    """One named route in one namespace."""

    def __init__(
        self, api: client.CustomObjectsApi, kind: RouteKind, namespace: str, name: str
    ) -> None:
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self._kept: dict[str, Any] | None = None  # see read(keep=True)

    def describe(self) -> str:
        return f"{self.kind.kind} {self.namespace}/{self.name}"

    def error(self, problem: str, field: str = ROUTE_FIELD) -> RouterError:
        return RouterError(f"{self.describe()} {problem}", resource=self.describe(), field=field)

    def read(self, *, keep: bool = False) -> dict[str, Any]:
        """The route as the API server has it now. ``keep``: the next `update` starts from this
        copy instead of reading the route again (one read per reconcile: `acceptance` reads it,
        `set_traffic` writes it); a copy that went stale meanwhile costs a 409 and a fresh read,
        never someone else's edit."""
        k = self.kind
        obj = none_if_missing(
            lambda: self.api.get_namespaced_custom_object(
                k.group, k.version, self.namespace, k.plural, self.name
            )
        )
        if obj is None:
            raise self.error(f"not found ({ROUTE_FIELD})")
        found = cast("dict[str, Any]", obj)
        self._kept = copy.deepcopy(found) if keep else None
        return found

    def read_spec(self) -> Spec:
        spec: Spec = self.read().get("spec") or {}
        return spec

    def update(self, mutate: Callable[[Spec], None]) -> None:
        """Apply ``mutate`` to the current spec and write it back; no write when nothing changed.
        A write conflict is a transient API error (never "Invalid"): the caller retries later."""
        k = self.kind

        def attempt() -> None:
            obj = self._kept if self._kept is not None else self.read()
            self._kept = None  # a retry after a 409 reads afresh
            spec: Spec = obj.setdefault("spec", {})
            before = copy.deepcopy(spec)
            mutate(spec)
            if spec != before:
                self.api.replace_namespaced_custom_object(
                    k.group, k.version, self.namespace, k.plural, self.name, obj
                )

        retry_on_conflict(attempt)


class RouteRouter(Router):
    """What the GRPCRoute and VirtualService routers share: weights go on the route, the mirror
    on the route or in the app-level ConfigMap (never both), and restore tolerates a vanished
    route. Subclasses name their route's ``kind`` and say how a spec is rewritten (`_apply`)
    and read back (`get_traffic`)."""

    kind: ClassVar[RouteKind]

    def __init__(
        self, route: RouteObject, routing: RoutingSpec, app_mirror: AppMirror, *, route_mirror: bool
    ) -> None:
        self.route = route
        self.routing = routing
        self.app_mirror = app_mirror
        self.route_mirror = route_mirror

    @classmethod
    def make(cls, context: RouterContext) -> Self:
        """The router of the route ``spec.routing.route`` names."""
        api = client.CustomObjectsApi(context.api_client)
        route = RouteObject(api, cls.kind, context.namespace, context.routing.route)
        return cls(route, context.routing, context.app_mirror, route_mirror=context.route_mirror)

    def _apply(self, spec: Spec, weight: int, mirror_percent: int) -> None:
        """Rewrite ``spec`` in place: the weights, and the route's own mirror."""
        raise NotImplementedError

    def set_traffic(self, weight: int, mirror_percent: int) -> None:
        check_percent("weight", weight)
        check_percent("mirror_percent", mirror_percent)
        on_route = mirror_percent if self.route_mirror else 0
        self.route.update(lambda spec: self._apply(spec, weight, on_route))
        self.app_mirror.set(0 if self.route_mirror else mirror_percent)

    def _drop_candidate(self, spec: Spec) -> None:
        """Rewrite ``spec`` in place without the candidate's backend (restore's last step)."""
        raise NotImplementedError

    def restore(self, *, drop_candidate: bool = False) -> None:
        """100 % stable, no mirror (and no candidate backend with ``drop_candidate``); a route
        that is gone has nothing left to restore."""

        def restored(spec: Spec) -> None:
            self._apply(spec, 0, 0)
            if drop_candidate:
                self._drop_candidate(spec)

        with contextlib.suppress(RouterError):
            self.route.update(restored)
        self.app_mirror.set(0)
