"""``rollout-operator``: run the SchedulerRollout controller (kopf) with the project's settings.

Exit codes: 0 stopped by a signal, 1 leadership lost (``--leader-elect``), 2 bad options or no
usable kubeconfig.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from rollout_operator import __version__
from rollout_operator.drain import DEFAULT_DRAIN_S

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from rollout_operator.leader import LeaderElector


DEFAULT_WORKERS = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollout-operator",
        description="Roll out new scheduler versions in stages (shadow, 10/25/50 %, approval, "
        "100 %) and roll back on Prometheus triggers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch this namespace (repeatable; default: all namespaces)",
    )  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, in-cluster")
    parser.add_argument(
        "--tick", type=float, default=5.0,
        help="seconds between reconciles of a rollout that waits on the cluster (candidate or "
        "promoted stable availability, the gateway taking the route; default: %(default)s); "
        "step ends, analysis rounds and deadlines are reconciled when due, any other rollout "
        "at least every max(tick, 5) seconds",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS,
        help="reconciles run at once, in threads (default: %(default)s): each mostly waits on "
        "the API server and Prometheus, so many rollouts need more than kopf's default of "
        "CPUs + 4",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port", type=int, default=9200, help="operator /metrics port (default: 9200)"
    )
    parser.add_argument(
        "--health-port", type=int, default=8080,
        help="liveness probe at http://0.0.0.0:PORT/healthz (default: 8080; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--progress-deadline", type=float, metavar="SECONDS",
        help="how long a candidate may stay unavailable before the rollout fails (default: the "
        "state machine's)",
    )  # fmt: skip
    parser.add_argument(
        "--drain-seconds", type=float, default=DEFAULT_DRAIN_S, metavar="SECONDS",
        help="after a rollback, promotion or deletion routes everything back to stable, wait "
        "for the gateway to accept that route (at most 10 s), then this long for its data "
        "plane to load it, before the candidate's pods go (default: %(default)s, Traefik's "
        "default provider throttle)",
    )  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    election = parser.add_argument_group("leader election (for more than one replica)")
    election.add_argument(
        "--leader-elect", action="store_true",
        help="reconcile only while holding a coordination.k8s.io Lease; standbys wait",
    )  # fmt: skip
    election.add_argument(
        "--lease-name", default="rollout-operator", help="the Lease (default: %(default)s)"
    )
    election.add_argument(
        "--lease-namespace", default=os.environ.get("POD_NAMESPACE"),
        help="the Lease's namespace (default: $POD_NAMESPACE)",
    )  # fmt: skip
    return parser


def _exit_now() -> None:
    """Leadership lost: stop at once (as client-go does), before a standby takes over; every
    reconcile is safe to cut short (status is one patch), and the pod restarts as a standby."""
    logging.getLogger("rollout_operator").error("exiting: leadership lost")
    os._exit(1)


def _elect(
    args: argparse.Namespace, api_client: ApiClient, stop: threading.Event
) -> LeaderElector | None:
    """Wait for the Lease (a standby /healthz meanwhile); the elector, or None on a signal."""
    from kubernetes import client  # noqa: PLC0415

    from rollout_operator.leader import LeaderElector, LeaseConfig, standby_health  # noqa: PLC0415

    identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    config = LeaseConfig(args.lease_namespace, args.lease_name, identity)
    elector = LeaderElector(client.CoordinationV1Api(api_client), config)
    with standby_health(args.health_port):
        leading = elector.acquire(stop)
    if not leading:
        return None
    elector.keep(stop, _exit_now)
    return elector


def _stop_on_signals() -> tuple[threading.Event, concurrent.futures.Future[int]]:
    """SIGTERM/SIGINT before kopf installs its own handlers (a standby waiting for the Lease, a
    slow start) stop the process cleanly instead of killing it. Two flags: an Event for the
    election's threads, and a Future for kopf.run, which waits on an Event in an executor thread
    that would keep the process from ever exiting."""
    stop = threading.Event()
    kopf_stop: concurrent.futures.Future[int] = concurrent.futures.Future()

    def handle(signum: int, _frame: object) -> None:
        stop.set()
        if not kopf_stop.done():
            kopf_stop.set_result(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    return stop, kopf_stop


def _releasing(kopf_stop: concurrent.futures.Future[int]) -> Callable[..., None]:
    """A cleanup handler that sets ``kopf_stop`` if nothing did. Once kopf runs, its own signal
    handlers replace ours, so a SIGTERM stops kopf without setting the flag, and the thread in
    which kopf waits for it would keep the process from exiting (until SIGKILL, the Lease not
    released)."""

    def release(**_: object) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            kopf_stop.set_result(0)

    return release


def _usage_problem(args: argparse.Namespace) -> str:
    """What is wrong with the flags together, or ""."""
    if args.tick <= 0:
        return "--tick must be positive"
    if args.workers < 1:
        return "--workers must be at least 1"
    if args.drain_seconds < 0:
        return "--drain-seconds must not be negative"
    if args.leader_elect and not args.lease_namespace:
        return "--leader-elect needs --lease-namespace (or $POD_NAMESPACE)"
    return ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _usage_problem(args)
    if problem:
        print(f"rollout-operator: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # kopf logs every handler and timer success at INFO: one line a tick
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import kopf  # noqa: PLC0415 - keep --help fast
    from kubernetes import client, config  # noqa: PLC0415

    from rollout_operator.handlers import build_registry, post_event  # noqa: PLC0415
    from rollout_operator.metrics import OperatorMetrics  # noqa: PLC0415
    from rollout_operator.reconcile import Reconciler  # noqa: PLC0415

    # One pooled connection per reconcile thread (urllib3 drops what exceeds the pool).
    configuration = client.Configuration()
    configuration.connection_pool_maxsize = args.workers + 4
    try:
        api_client = config.new_client_from_config(
            config_file=args.kubeconfig, client_configuration=configuration
        )  # type: ignore[no-untyped-call]
    except Exception as exc:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            api_client = client.ApiClient(configuration)
        except Exception:
            print(f"rollout-operator: no usable kubeconfig: {exc}", file=sys.stderr)
            return 2
    metrics = OperatorMetrics()
    port = metrics.serve(args.metrics_port)
    logging.getLogger("rollout_operator").info("operator metrics on :%d/metrics", port)
    stop, kopf_stop = _stop_on_signals()
    elector = _elect(args, api_client, stop) if args.leader_elect else None
    if args.leader_elect and elector is None:
        metrics.close()
        return 0  # stopped by a signal while standing by
    reconciler = Reconciler(
        api_client,
        metrics,
        post_event,
        progress_deadline_s=args.progress_deadline,
        drain_s=args.drain_seconds,
    )
    registry = build_registry(reconciler, args.tick)
    kopf.on.cleanup(registry=registry)(_releasing(kopf_stop))
    health = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    settings = kopf.OperatorSettings()
    settings.execution.max_workers = args.workers
    # Namespace-scoped: serve the named namespaces as they are. Scanning would list namespaces
    # and watch CRDs cluster-wide, and under namespace-scoped RBAC (the chart's) kopf retries
    # each 403 for about a minute before it starts watching rollouts.
    settings.scanning.disabled = bool(args.namespace)
    try:
        kopf.run(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=health,
            stop_flag=kopf_stop,
        )
    finally:
        stop.set()
        if elector is not None:
            elector.release()
        metrics.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
