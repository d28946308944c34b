"""Where SchedulerRollouts live in the API (crds/schedulerrollouts.yaml defines them)."""

from __future__ import annotations

GROUP = "rollouts.scheduling.io"
VERSION = "v1alpha1"
PLURAL = "schedulerrollouts"
KIND = "SchedulerRollout"
SHORT_NAME = "sro"
FINALIZER = f"{GROUP}/restore-routing"
