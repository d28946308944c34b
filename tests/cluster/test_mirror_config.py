"""The mirror ConfigMap against the real kube-apiserver, read back with the scheduler's own
parser: the operator writes exactly the format ``jobshop_scheduler.service.mirror`` reads."""

from __future__ import annotations

import pytest

from jobshop_scheduler.service.mirror_config import parse_mirror_config
from rollout_operator.mirror_config import MIRROR_KEY, get_mirror, set_mirror
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster


def text(cluster: Cluster, namespace: str) -> str:
    data = cluster.core.read_namespaced_config_map("scheduler-mirror", namespace).data or {}
    return data[MIRROR_KEY]


def test_written_updated_and_turned_off(cluster: Cluster, namespace: str) -> None:
    core = cluster.core
    assert get_mirror(core, namespace, "scheduler-mirror") is None
    set_mirror(core, namespace, "scheduler-mirror", "scheduler-canary:50051", 10)
    written = text(cluster, namespace)
    assert written == '{"target": "scheduler-canary:50051", "percent": 10, "timeout_ms": 30000}'
    config = parse_mirror_config(written)
    assert config is not None
    assert (config.target, config.percent, config.timeout_ms) == (
        "scheduler-canary:50051",
        10,
        30000,
    )

    set_mirror(core, namespace, "scheduler-mirror", "scheduler-canary:50051", 100)
    config = parse_mirror_config(text(cluster, namespace))
    assert config is not None and config.percent == 100

    set_mirror(core, namespace, "scheduler-mirror", "scheduler-canary:50051", 0)
    off = text(cluster, namespace)
    assert off == '{"target": null, "percent": 0, "timeout_ms": 30000}'
    assert parse_mirror_config(off) is None
    set_mirror(core, namespace, "scheduler-mirror", None, 50)  # no target: off as well
    assert text(cluster, namespace) == off


def test_unchanged_config_is_not_rewritten_and_other_keys_stay(
    cluster: Cluster, namespace: str
) -> None:
    core = cluster.core
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "scheduler-mirror"}, "data": {"notes": "kept"}}
    )
    set_mirror(
        core,
        namespace,
        "scheduler-mirror",
        "scheduler-canary:50051",
        25,
        timeout_ms=500,
        tls_ca_file="/etc/mirror-tls/ca.crt",
        api_key_file="/etc/mirror-key/key",
    )
    cm = core.read_namespaced_config_map("scheduler-mirror", namespace)
    data = cm.data or {}
    assert data["notes"] == "kept"
    config = parse_mirror_config(data[MIRROR_KEY])
    assert config is not None
    assert str(config.tls_ca_file) == "/etc/mirror-tls/ca.crt"
    assert str(config.api_key_file) == "/etc/mirror-key/key"
    assert config.timeout_ms == 500
    set_mirror(
        core,
        namespace,
        "scheduler-mirror",
        "scheduler-canary:50051",
        25,
        timeout_ms=500,
        tls_ca_file="/etc/mirror-tls/ca.crt",
        api_key_file="/etc/mirror-key/key",
    )
    again = core.read_namespaced_config_map("scheduler-mirror", namespace)
    assert again.metadata.resource_version == cm.metadata.resource_version


def test_bad_values_are_refused_before_writing(cluster: Cluster, namespace: str) -> None:
    for target, percent in (("no-port", 10), ("host:99999", 10), ("h:1", 101), ("h:1", -5)):
        with pytest.raises(ValueError):
            set_mirror(cluster.core, namespace, "scheduler-mirror", target, percent)
    assert get_mirror(cluster.core, namespace, "scheduler-mirror") is None
