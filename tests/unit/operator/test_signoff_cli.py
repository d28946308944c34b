"""``approve --role``: the parser, and how a refusal's words reach the user (the calls against
the real API server are in tests/chart/test_signoff_policy.py)."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from rollout_operator.kubectl_plugin import build_parser, server_message

pytestmark = pytest.mark.unit


def test_only_approve_takes_a_role() -> None:
    parse = build_parser().parse_args
    assert parse(["approve", "r", "--role", "ops-manager"]).role == "ops-manager"
    assert parse(["approve", "r"]).role is None  # the command annotation
    with pytest.raises(SystemExit):
        parse(["abort", "r", "--role", "ops-manager"])


def test_a_refusal_shows_the_servers_message_else_its_reason() -> None:
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = json.dumps({"kind": "Status", "message": "user 'mallory' may not sign off"})
    assert server_message(refused) == "user 'mallory' may not sign off"
    assert server_message(ApiException(status=502, reason="Bad Gateway")) == "Bad Gateway"
    garbled = ApiException(status=500, reason="Internal Server Error")
    garbled.body = "<html>"
    assert server_message(garbled) == "Internal Server Error"
