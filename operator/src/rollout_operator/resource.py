"""Where SchedulerRollouts live in the API (crds/schedulerrollouts.yaml defines them), and the
label the operator puts on every object it creates."""

from __future__ import annotations

GROUP = "rollouts.scheduling.io"
VERSION = "v1alpha1"
PLURAL = "schedulerrollouts"
KIND = "SchedulerRollout"
FINALIZER = f"{GROUP}/restore-routing"
MANAGED_BY = {"app.kubernetes.io/managed-by": "rollout-operator"}
