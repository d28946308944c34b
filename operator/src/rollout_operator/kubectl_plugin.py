"""``kubectl-schedrollout`` (also ``kubectl schedrollout`` once on PATH): see and steer rollouts.

``get`` and ``watch`` read the rollouts' status; ``approve``, ``abort``, ``retry`` and ``promote``
write the command annotation (`commands.py`) the operator acts on exactly once. ``approve
--role R`` instead signs off as role R in the caller's own name (`signoffs.py`): the name comes
from a SelfSubjectReview, the API server's own word for who is calling, because the chart's
admission policy admits a sign-off only in that name and only from a member of R's group. The
plugin only needs get/list/watch/patch on schedulerrollouts (and a SelfSubjectReview, which the
API server grants every authenticated user), nothing else.

``report`` writes a rollout's report (Markdown and PNG, `report/`) from its status and
Prometheus; it only reads.

Exit codes: 0 done, 1 the API server refused or the rollout does not exist (``report``: or the
PNG could not be drawn, the Markdown is still written), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rollout_operator import commands, signoffs
from rollout_operator.resource import GROUP, PLURAL, VERSION

COLUMNS = ("NAMESPACE", "NAME", "PHASE", "STEP", "WEIGHT", "CANDIDATE", "AGE", "MESSAGE")


class PluginError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _api(kubeconfig: str | None, context: str | None) -> Any:
    from kubernetes import client, config  # noqa: PLC0415 - keep --help fast

    try:
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except Exception as exc:
        if kubeconfig is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                return client.CustomObjectsApi()
            except Exception:
                pass
        raise PluginError(f"cannot load a kubeconfig: {exc}", code=2) from None
    return client.CustomObjectsApi(api_client)


def age(created: str | None, now: dt.datetime | None = None) -> str:
    """kubectl-style age: 42s, 5m, 3h, 2d."""
    if not created:
        return "-"
    then = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def row(item: Mapping[str, Any], now: dt.datetime | None = None) -> tuple[str, ...]:
    meta, spec = item.get("metadata", {}), item.get("spec", {})
    status = item.get("status") or {}
    candidate = spec.get("candidate", {})
    message = status.get("rollbackReason") or status.get("message") or ""
    steps = spec.get("steps") or []
    step = status.get("step")
    return (
        meta.get("namespace", ""),
        meta.get("name", ""),
        status.get("phase", "Pending"),
        f"{step + 1}/{len(steps)}" if isinstance(step, int) and steps else "-",
        f"{status['weight']}%" if "weight" in status else "-",
        candidate.get("image") or candidate.get("modelVersion") or "-",
        age(meta.get("creationTimestamp"), now),
        message[:80],
    )


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in (COLUMNS, *rows)
    )


def _list(api: Any, namespace: str | None, name: str | None) -> list[dict[str, Any]]:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        if name:
            return [api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)]
        if namespace:
            reply = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        else:
            reply = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    except ApiException as exc:
        what = f"schedulerrollout {namespace}/{name}" if name else "schedulerrollouts"
        raise PluginError(f"cannot read {what}: {exc.status} {exc.reason}") from None
    return list(reply.get("items", []))


def cmd_get(api: Any, args: argparse.Namespace) -> int:
    items = _list(api, None if args.all_namespaces else args.namespace, args.name)
    if not items:
        print("No schedulerrollouts found.", file=sys.stderr)
        return 0
    print(table([row(i) for i in items]))
    return 0


def cmd_watch(api: Any, args: argparse.Namespace) -> int:
    """Redraw ``get`` every ``--interval`` s until Ctrl-C (or every rollout ends, with --exit)."""
    while True:
        items = _list(api, None if args.all_namespaces else args.namespace, args.name)
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        print(f"\x1b[2J\x1b[H{stamp}\n{table([row(i) for i in items])}", flush=True)
        phases = {(i.get("status") or {}).get("phase") for i in items}
        if args.exit and items and phases <= {"Succeeded", "RolledBack", "Failed", "Invalid"}:
            return 0
        time.sleep(args.interval)


def cmd_command(api: Any, args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    patch = commands.patch_for(args.verb)
    try:
        api.patch_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name, patch)
    except ApiException as exc:
        raise PluginError(
            f"cannot {args.verb} schedulerrollout {args.namespace}/{args.name}: "
            f"{exc.status} {exc.reason}"
        ) from None
    value = patch["metadata"]["annotations"][commands.ANNOTATION]
    print(f"schedulerrollout {args.namespace}/{args.name}: {args.verb} requested ({value})")
    return 0


def whoami(api: Any) -> str:
    """The caller's user name as the API server knows it (authentication.k8s.io/v1)."""
    from kubernetes import client  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    review = client.V1SelfSubjectReview(
        api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
    )
    try:
        reply = client.AuthenticationV1Api(api.api_client).create_self_subject_review(review)
    except ApiException as exc:
        raise PluginError(f"cannot tell who you are: {exc.status} {server_message(exc)}") from None
    user = reply.status.user_info.username if reply.status and reply.status.user_info else None
    if not user:
        raise PluginError("the API server reports no user name for these credentials")
    return str(user)


def server_message(exc: Any) -> str:
    """The API server's own words (an admission policy's message) rather than the bare reason."""
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


def cmd_signoff(api: Any, args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    what = f"schedulerrollout {args.namespace}/{args.name}"
    try:
        signoffs.check_role(args.role)
    except signoffs.SignOffError as exc:
        raise PluginError(str(exc), code=2) from None
    user = whoami(api)
    note = _early_sign_off(api, args)  # read before the write, which may end the step at once
    patch = signoffs.patch_for(args.role, user)
    try:
        api.patch_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name, patch)
    except ApiException as exc:
        raise PluginError(
            f"cannot sign off {what} as {args.role}: {exc.status} {server_message(exc)}"
        ) from None
    value = patch["metadata"]["annotations"][signoffs.key(args.role)]
    print(f"{what}: {user} signed off as {args.role} ({value})")
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _early_sign_off(api: Any, args: argparse.Namespace) -> str:
    """Why the sign-off just written will not count ("" when it will, or when the rollout
    cannot be read): the operator counts only sign-offs made while the rollout waits at an
    approval step that lists the role, so nobody signs off results not yet seen."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        found = api.get_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name)
    except ApiException:
        return ""
    status, steps = found.get("status") or {}, (found.get("spec") or {}).get("steps") or []
    step = status.get("step")
    current = steps[step] if isinstance(step, int) and 0 <= step < len(steps) else {}
    roles = (current.get("approval") or {}).get("roles") or []
    if status.get("phase") == "AwaitingApproval" and args.role in roles:
        return ""
    return (
        f"the rollout is in phase {status.get('phase', 'Pending')}, not waiting for a sign-off "
        f"by {args.role}: this one does not count; sign off again once it waits for one"
    )


def cmd_report(api: Any, args: argparse.Namespace) -> int:
    from rollout_operator import report  # noqa: PLC0415 - keep the other commands light

    (rollout,) = _list(api, args.namespace, args.name)
    written = report.write(
        rollout, Path(args.out), prometheus=args.prometheus, step_s=args.step_resolution
    )
    print(f"schedulerrollout {args.namespace}/{args.name}: report in {written.markdown}")
    if written.png is None:
        raise PluginError(f"no PNG: {written.png_error}")
    print(f"schedulerrollout {args.namespace}/{args.name}: figures in {written.png}")
    return 0


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="write a rollout's report (Markdown + PNG)")
    p.add_argument("name", help="the rollout")
    p.add_argument("--prometheus", help="Prometheus URL (default: spec.analysis.prometheus.url)")
    p.add_argument("--out", default=".", help="folder for NAME.md and NAME.png (default: .)")
    p.add_argument(
        "--step-resolution",
        type=float,
        metavar="SECONDS",
        help="seconds between the PNG's points (default: the life / 240)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl-schedrollout",
        description="See and steer SchedulerRollouts (staged scheduler rollouts).",
    )
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-n", "--namespace", default="default", help="default: %(default)s")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (("get", "list rollouts"), ("watch", "list rollouts, redrawn")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("name", nargs="?", help="one rollout (default: all)")
        p.add_argument("-A", "--all-namespaces", action="store_true")
        if name == "watch":
            p.add_argument("--interval", type=float, default=2.0, help="seconds (default: 2)")
            p.add_argument("--exit", action="store_true", help="stop once all are finished")
    _add_report(sub)
    for verb, help_text in (
        ("approve", "pass the approval gate (with --role: sign off as that role)"),
        ("abort", "roll back now: all traffic to stable"),
        ("retry", "start a rolled-back or failed rollout again"),
        ("promote", "skip the remaining steps and promote the candidate"),
    ):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("name", help="the rollout")
        p.set_defaults(verb=verb)
        if verb == "approve":
            p.add_argument(
                "--role", help="sign off as this role, in your own name (approval.roles)"
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        api = _api(args.kubeconfig, args.context)
        read = {"get": cmd_get, "watch": cmd_watch, "report": cmd_report}.get(args.command)
        if read is not None:
            return read(api, args)
        if args.command == "approve" and args.role:
            return cmd_signoff(api, args)
        return cmd_command(api, args)
    except PluginError as exc:
        print(f"kubectl-schedrollout: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
