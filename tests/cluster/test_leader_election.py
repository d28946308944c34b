"""Leader election on a Lease against the real kube-apiserver (``rollout_operator.leader``).

One candidate at a time holds the Lease; a standby takes over at once when the holder releases
it, and only after the lease duration (by its own clock) when the holder goes silent; the
``resourceVersion`` precondition makes a stale write lose; a holder that sees another holder or
cannot renew in time gives up; and two real ``rollout-operator --leader-elect`` processes lead
one after the other.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from rollout_operator.leader import LeaderElector, LeaseConfig
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

LEASE = "rollout-operator"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(cluster: Cluster, namespace: str, identity: str) -> LeaderElector:
    config = LeaseConfig(namespace, LEASE, identity)
    return LeaderElector(client.CoordinationV1Api(cluster.api), config)


def lease(cluster: Cluster, namespace: str) -> client.V1Lease:
    return client.CoordinationV1Api(cluster.api).read_namespaced_lease(LEASE, namespace)


def test_one_holder_and_an_immediate_handover_on_release(cluster: Cluster, namespace: str) -> None:
    a = elector(cluster, namespace, "a")
    b = elector(cluster, namespace, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()  # a renewal
    held = lease(cluster, namespace).spec
    assert (held.holder_identity, held.lease_duration_seconds, held.lease_transitions) == (
        "a", 15, 0,
    )  # fmt: skip
    assert held.renew_time is not None and held.acquire_time is not None
    assert held.renew_time >= held.acquire_time

    a.release()
    assert b.try_acquire_or_renew()  # no waiting for the lease duration
    taken = lease(cluster, namespace).spec
    assert (taken.holder_identity, taken.lease_transitions) == ("b", 1)
    assert not a.try_acquire_or_renew()


def test_a_silent_holder_loses_the_lease_after_its_duration_by_the_standby_clock(
    cluster: Cluster, namespace: str
) -> None:
    api = client.CoordinationV1Api(cluster.api)
    holder = LeaderElector(api, LeaseConfig(namespace, LEASE, "a", lease_s=15))
    clock = Clock()
    standby = LeaderElector(api, LeaseConfig(namespace, LEASE, "b", lease_s=15), clock=clock)
    assert holder.try_acquire_or_renew()
    assert not standby.try_acquire_or_renew()  # first sight of a's record: the clock starts
    clock.now += 14.9
    assert not standby.try_acquire_or_renew()
    assert holder.try_acquire_or_renew()  # a renews: a new record, the count starts again
    clock.now += 14.9
    assert not standby.try_acquire_or_renew()
    clock.now += 15.0
    assert standby.try_acquire_or_renew()  # a has been silent for 15 s as b saw it
    assert lease(cluster, namespace).spec.holder_identity == "b"
    assert not holder.try_acquire_or_renew()


def test_a_write_at_a_stale_version_loses(cluster: Cluster, namespace: str) -> None:
    a = elector(cluster, namespace, "a")
    assert a.try_acquire_or_renew()
    stale = lease(cluster, namespace).metadata.resource_version
    assert a.try_acquire_or_renew()  # the Lease moves on
    b = elector(cluster, namespace, "b")
    assert not b._write(stale, b._spec(1, None))  # 409 from the API server
    assert lease(cluster, namespace).spec.holder_identity == "a"


def test_a_holder_gives_up_when_another_one_took_over(cluster: Cluster, namespace: str) -> None:
    api = client.CoordinationV1Api(cluster.api)
    a = LeaderElector(api, LeaseConfig(namespace, LEASE, "a", lease_s=3, renew_s=2, retry_s=0.1))
    assert a.try_acquire_or_renew()
    lost = threading.Event()
    stop = threading.Event()
    a.keep(stop, lost.set)
    time.sleep(0.3)
    assert not lost.is_set()
    api.patch_namespaced_lease(LEASE, namespace, {"spec": {"holderIdentity": "intruder"}})
    assert lost.wait(5), "the holder kept working under another holder's Lease"
    stop.set()


def test_a_holder_that_cannot_renew_gives_up_within_the_renew_deadline(
    cluster: Cluster, namespace: str
) -> None:
    a = elector(cluster, namespace, "a")
    assert a.try_acquire_or_renew()
    cut_off = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))  # refused
    config = LeaseConfig(namespace, LEASE, "a", lease_s=3, renew_s=1, retry_s=0.1)
    orphan = LeaderElector(client.CoordinationV1Api(cut_off), config)
    lost = threading.Event()
    started = time.monotonic()
    orphan.keep(threading.Event(), lost.set)
    assert lost.wait(5)
    assert 1.0 <= time.monotonic() - started < 3.0  # after renew_s, before lease_s


def _operator(
    kubeconfig: Path, namespace: str, log: Path, health_port: int
) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "rollout-operator"
    argv = [
        str(exe), "--kubeconfig", str(kubeconfig), "-n", namespace, "--leader-elect",
        "--lease-namespace", namespace, "--metrics-port", "0", "--health-port", str(health_port),
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def _wait_log(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text(errors='replace')[-3000:]}")


def test_two_operator_processes_lead_one_after_the_other(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    from tests.operator.conftest import free_port  # noqa: PLC0415

    kubeconfig = cluster.plane.admin_kubeconfig
    logs = tmp_path / "first.log", tmp_path / "second.log"
    ports = free_port(), free_port()
    first = _operator(kubeconfig, namespace, logs[0], ports[0])
    second = None
    try:
        _wait_log(logs[0], "leading: holding Lease", 30)
        second = _operator(kubeconfig, namespace, logs[1], ports[1])
        _wait_log(logs[1], "standing by: Lease", 30)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/healthz", timeout=5) as resp:
            assert resp.status == 200  # a standby is alive, so the kubelet leaves it running
        first.terminate()
        assert first.wait(20) == 0
        _wait_log(logs[1], "leading: holding Lease", 10)  # released: no lease duration to wait
        holder = lease(cluster, namespace).spec.holder_identity
        assert f"as {holder}" in logs[1].read_text()
        assert f"as {holder}" not in logs[0].read_text()
        second.terminate()
        assert second.wait(20) == 0
        assert lease(cluster, namespace).spec.holder_identity is None  # released again
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
