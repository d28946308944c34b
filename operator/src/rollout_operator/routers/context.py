"""What a provider module's ``make`` gets to build its router."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from rollout_operator.mirror_config import AppMirror
from rollout_operator.model import RoutingSpec


@dataclass(frozen=True)
class RouterContext:
    """The routing spec, where the rollout runs, how to reach the API server, the application-
    level mirror switch every router drives, and whether the mirror goes on the route instead
    (``spec.routing.mirror: route``; the registry refuses it for a provider without a route)."""

    routing: RoutingSpec
    namespace: str
    api_client: client.ApiClient
    target: str  # the stable Deployment
    app_mirror: AppMirror
    route_mirror: bool

    @classmethod
    def create(
        cls,
        routing: RoutingSpec,
        namespace: str,
        api_client: client.ApiClient,
        *,
        target: str,
        route_mirror: bool,
    ) -> RouterContext:
        core = client.CoreV1Api(api_client)
        app_mirror = AppMirror.for_routing(core, namespace, routing, target)
        return cls(routing, namespace, api_client, target, app_mirror, route_mirror)
