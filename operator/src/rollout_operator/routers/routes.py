"""Read-modify-write of a route custom resource (GRPCRoute, VirtualService), conflict-safe.

A route is shared with people and other controllers, so the routers change only the entries
they own and write the object back with its ``resourceVersion``: a concurrent edit makes the API
server answer 409 and the change is redone on the fresh object instead of overwriting theirs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout_operator.routers.base import RouterError

CONFLICT_RETRIES = 5
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

    def describe(self) -> str:
        return f"{self.kind.kind} {self.namespace}/{self.name}"

    def error(self, problem: str, field: str = ROUTE_FIELD) -> RouterError:
        return RouterError(f"{self.describe()} {problem}", resource=self.describe(), field=field)

    def read(self) -> dict[str, Any]:
        k = self.kind
        try:
            obj = cast(
                "dict[str, Any]",
                self.api.get_namespaced_custom_object(
                    k.group, k.version, self.namespace, k.plural, self.name
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise self.error(f"not found ({ROUTE_FIELD})") from None
            raise
        return obj

    def read_spec(self) -> Spec:
        spec: Spec = self.read().get("spec") or {}
        return spec

    def update(self, mutate: Callable[[Spec], None]) -> None:
        """Apply ``mutate`` to the current spec and write it back; no write when nothing changed."""
        k = self.kind
        for attempt in range(1, CONFLICT_RETRIES + 1):
            obj = self.read()
            spec: Spec = obj.setdefault("spec", {})
            before = copy.deepcopy(spec)
            mutate(spec)
            if spec == before:
                return
            try:
                self.api.replace_namespaced_custom_object(
                    k.group, k.version, self.namespace, k.plural, self.name, obj
                )
                return
            except ApiException as exc:
                if exc.status != 409 or attempt == CONFLICT_RETRIES:
                    raise  # a transient API error, never "Invalid": the caller retries later
