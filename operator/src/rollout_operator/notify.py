"""Webhook notifications: one JSON POST per ``Notify`` announcement, to ``spec.webhook.url``.

The payload: ``event`` (``phaseChanged`` or ``rollback``), ``message``, ``namespace``,
``rollout``, and the ``phase`` and ``weight`` the rollout has after the change. A webhook that is
down or slow never stops a rollout: a failed POST is logged and not retried.
"""

from __future__ import annotations

import json
import logging
import urllib.request

from rollout_operator.actions import Notify
from rollout_operator.status import RolloutStatus

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0


def send(url: str, note: Notify, *, namespace: str, rollout: str, status: RolloutStatus) -> None:
    """POST ``note`` about ``namespace/rollout``, now in ``status``, to ``url``."""
    payload = {
        "event": note.event, "message": note.message, "namespace": namespace,
        "rollout": rollout, "phase": status.phase.value, "weight": status.weight,
    }  # fmt: skip
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S):
            pass
    except OSError as exc:
        log.warning("webhook %s failed: %s", url, exc)
