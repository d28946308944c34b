"""Provider name -> router. An unknown name is an error, never a silent default (Flagger once
fell back to Istio on a typo: its issue #1872)."""

from __future__ import annotations

from collections.abc import Callable

from kubernetes import client

from rollout_operator.mirror_config import AppMirror
from rollout_operator.model import Provider, RoutingSpec
from rollout_operator.routers.base import Router, RouterError
from rollout_operator.routers.gatewayapi import GRPCROUTE, GrpcRouteRouter
from rollout_operator.routers.istio import VIRTUAL_SERVICE, VirtualServiceRouter
from rollout_operator.routers.replicas import ReplicaRatioRouter
from rollout_operator.routers.routes import RouteObject

PROVIDER_FIELD = "spec.routing.provider"


class _Context:
    """What every factory gets: the spec, where, how to reach the API, and the mirror switch."""

    def __init__(
        self, routing: RoutingSpec, namespace: str, api_client: client.ApiClient, target: str
    ) -> None:
        self.routing = routing
        self.namespace = namespace
        self.api_client = api_client
        self.target = target
        core = client.CoreV1Api(api_client)
        self.app_mirror = AppMirror.for_routing(core, namespace, routing, target)

    def route(self, kind_name: str) -> RouteObject:
        kind = {"GRPCRoute": GRPCROUTE, "VirtualService": VIRTUAL_SERVICE}[kind_name]
        api = client.CustomObjectsApi(self.api_client)
        return RouteObject(api, kind, self.namespace, self.routing.route)


def _gateway_api(ctx: _Context, route_mirror: bool) -> Router:
    route = ctx.route("GRPCRoute")
    return GrpcRouteRouter(route, ctx.routing, ctx.app_mirror, route_mirror=route_mirror)


def _istio(ctx: _Context, route_mirror: bool) -> Router:
    route = ctx.route("VirtualService")
    return VirtualServiceRouter(route, ctx.routing, ctx.app_mirror, route_mirror=route_mirror)


def _replicas(ctx: _Context, route_mirror: bool) -> Router:
    if route_mirror:
        raise RouterError(
            "provider 'replicas' cannot mirror on a route: it mirrors through the stable pods",
            resource=f"Deployment {ctx.namespace}/{ctx.target}",
            field=PROVIDER_FIELD,
        )
    apps = client.AppsV1Api(ctx.api_client)
    return ReplicaRatioRouter(apps, ctx.namespace, ctx.target, ctx.app_mirror)


ROUTERS: dict[Provider, Callable[[_Context, bool], Router]] = {
    Provider.GATEWAY_API: _gateway_api,
    Provider.ISTIO: _istio,
    Provider.REPLICAS: _replicas,
}


def make_router(
    routing: RoutingSpec,
    namespace: str,
    api_client: client.ApiClient,
    *,
    target: str,
    route_mirror: bool = False,
) -> Router:
    """The router for ``routing.provider``; a RouterError naming the field for an unknown one.

    ``target`` is the stable Deployment. ``route_mirror`` puts the shadow mirror on the route
    (GRPCRoute filter, VirtualService ``mirror``) and switches the application-level mirror off;
    by default the stable pods mirror (``rollout_operator.mirror_config``) and the route carries
    weights only.
    """
    try:
        factory = ROUTERS[Provider(routing.provider)]
    except (ValueError, KeyError):
        known = ", ".join(p.value for p in ROUTERS)
        raise RouterError(
            f"unknown routing provider {routing.provider!r} (known: {known})",
            resource=f"routing of {namespace}/{target}",
            field=PROVIDER_FIELD,
        ) from None
    return factory(_Context(routing, namespace, api_client, target), route_mirror)
