"""Provider name -> router module, and what the spec check needs to know of each provider.

A provider is a module of this package with ``make(context: RouterContext) -> Router`` and one
line in ``PROVIDERS``. The module is imported when a router is made, so the spec parser reads
this table without loading the Kubernetes client. An unknown name is an error, never a silent
default (Flagger once fell back to Istio on a typo: its issue #1872).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rollout_operator.model import Provider, RoutingSpec
from rollout_operator.routers.base import Router, RouterError

if TYPE_CHECKING:
    from kubernetes import client

PROVIDER_FIELD = "spec.routing.provider"


@dataclass(frozen=True)
class ProviderEntry:
    module: str  # rollout_operator.routers.<module>, which defines make(context)
    # It rewrites the route ``spec.routing.route`` names, so it needs one, and can put the
    # shadow mirror on it (``spec.routing.mirror: route``).
    has_route: bool = True


PROVIDERS: dict[Provider, ProviderEntry] = {
    Provider.GATEWAY_API: ProviderEntry("gatewayapi"),
    Provider.ISTIO: ProviderEntry("istio"),
    Provider.REPLICAS: ProviderEntry("replicas", has_route=False),
}


def has_route(provider: Provider) -> bool:
    """Whether ``provider`` routes through ``spec.routing.route`` (see ``ProviderEntry``)."""
    return PROVIDERS[provider].has_route


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
    weights only. A provider without a route refuses it.
    """
    resource = f"routing of {namespace}/{target}"
    try:
        provider = Provider(routing.provider)
        entry = PROVIDERS[provider]
    except (ValueError, KeyError):
        known = ", ".join(p.value for p in PROVIDERS)
        raise RouterError(
            f"unknown routing provider {routing.provider!r} (known: {known})",
            resource=resource,
            field=PROVIDER_FIELD,
        ) from None
    if route_mirror and not entry.has_route:
        raise RouterError(
            f"provider {provider.value!r} cannot mirror on a route: it has none, the stable pods "
            "mirror",
            resource=resource,
            field=PROVIDER_FIELD,
        )
    # Imported here, with the router module: they load the Kubernetes client.
    from rollout_operator.routers.context import RouterContext  # noqa: PLC0415

    module = importlib.import_module(f"rollout_operator.routers.{entry.module}")
    make: Callable[[RouterContext], Router] = module.make
    context = RouterContext.create(
        routing, namespace, api_client, target=target, route_mirror=route_mirror
    )
    return make(context)
