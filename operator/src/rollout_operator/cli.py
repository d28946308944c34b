"""``rollout-operator``: run the SchedulerRollout controller (kopf) with the project's settings.

Exit codes: 0 stopped by a signal, 2 bad options or no usable kubeconfig.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rollout_operator import __version__


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
        help="seconds between timer reconciles of each rollout (default: %(default)s); analysis "
        "still runs at each rollout's own spec.analysis.interval",
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
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tick <= 0:
        print("rollout-operator: --tick must be positive", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # kopf logs every handler and timer success at INFO: one line a tick
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import kopf  # noqa: PLC0415 - keep --help fast
    from kubernetes import config  # noqa: PLC0415

    from rollout_operator.handlers import build_registry, post_event  # noqa: PLC0415
    from rollout_operator.metrics import OperatorMetrics  # noqa: PLC0415
    from rollout_operator.reconcile import Reconciler  # noqa: PLC0415

    try:
        api_client = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    except Exception as exc:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            from kubernetes import client  # noqa: PLC0415

            api_client = client.ApiClient()
        except Exception:
            print(f"rollout-operator: no usable kubeconfig: {exc}", file=sys.stderr)
            return 2
    metrics = OperatorMetrics()
    port = metrics.serve(args.metrics_port)
    logging.getLogger("rollout_operator").info("operator metrics on :%d/metrics", port)
    reconciler = Reconciler(
        api_client, metrics, post_event, progress_deadline_s=args.progress_deadline
    )
    registry = build_registry(reconciler, args.tick)
    health = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    try:
        kopf.run(
            registry=registry,
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=health,
        )
    finally:
        metrics.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
