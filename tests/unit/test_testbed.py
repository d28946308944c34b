"""The harness itself: binary lookup, certificates, process supervision, CI fail-not-skip."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from testbed import MissingBinaryError, ServerStartError, binaries
from testbed.node import MAX_MESSAGE_BYTES, TERMINATION_PATH, termination_message, translate
from testbed.pki import CertificateAuthority
from testbed.process import ManagedProcess

pytestmark = pytest.mark.unit

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def test_env_override_must_point_at_an_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETCD_BIN", "/nonexistent/etcd")
    with pytest.raises(MissingBinaryError, match="ETCD_BIN=/nonexistent/etcd"):
        binaries.find("etcd")


def test_missing_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOBSHOP_TESTBED_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingBinaryError, match="scripts/test-deps"):
        binaries.find("definitely-not-a-server")


def test_cache_dir_wins_over_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cached = tmp_path / "bin" / "kube-apiserver"
    cached.parent.mkdir()
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    monkeypatch.delenv("KUBE_APISERVER_BIN", raising=False)
    monkeypatch.setenv("JOBSHOP_TESTBED_CACHE", str(tmp_path))
    assert binaries.find("kube-apiserver") == cached


def test_certificates_carry_sans_groups_and_chain_to_the_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    serving = ca.issue("srv", "kube-apiserver", ip_sans=("127.0.0.1",), server=True)
    user = ca.issue("u", "alice", organizations=("system:masters", "team"))
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    srv_cert = x509.load_pem_x509_certificate(serving.cert.read_bytes())
    srv_cert.verify_directly_issued_by(ca_cert)
    sans = srv_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    user_cert = x509.load_pem_x509_certificate(user.cert.read_bytes())
    orgs = [a.value for a in user_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters", "team"]
    assert oct(serving.key.stat().st_mode & 0o777) == "0o600"


def test_process_that_dies_reports_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "crasher",
        [sys.executable, "-c", "print('bad flag --x'); raise SystemExit(3)"],
        tmp_path / "crasher.log",
    )
    proc.start()
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*bad flag --x"):
        proc.wait_ready(lambda: False, timeout=10)


def test_process_never_ready_is_stopped(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
    proc.start()
    with pytest.raises(ServerStartError, match="not ready after"):
        proc.wait_ready(lambda: False, timeout=0.5)
    assert not proc.running()


@pytest.mark.parametrize(("ci", "outcome"), [("true", "errors"), ("", "skipped")])
def test_missing_server_fails_under_ci_and_skips_locally(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("def test_needs_cluster(kube):\n    assert kube\n")
    monkeypatch.setenv("KUBE_APISERVER_BIN", "/nonexistent/kube-apiserver")
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(**{outcome: 1})
    expected = "CI=true and a required test server is missing" if ci else "scripts/test-deps"
    result.stdout.fnmatch_lines([f"*{expected}*"])


def test_termination_message_is_the_file_or_a_failed_containers_log_tail(tmp_path: Path) -> None:
    """The node's stand-in for the kubelet's terminationMessagePath handling."""
    message, log = tmp_path / "pod.termination-log", tmp_path / "pod.log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(200)))
    message.write_bytes(b'{"passed": true}' + b"x" * 5000)
    text = termination_message(message, log, failed=False, policy="File")
    assert text.startswith('{"passed": true}') and len(text) == MAX_MESSAGE_BYTES
    message.write_bytes(b"")
    assert termination_message(message, log, failed=True, policy="File") == ""
    tail = termination_message(message, log, failed=True, policy="FallbackToLogsOnError")
    assert tail.endswith("line 199\n") and "line 119\n" not in tail  # the last 80 lines
    assert termination_message(message, log, failed=False, policy="FallbackToLogsOnError") == ""
    mounts = [(TERMINATION_PATH, str(message))]
    assert translate(f"--result-file={TERMINATION_PATH}", mounts) == f"--result-file={message}"
    assert translate(TERMINATION_PATH, mounts) == str(message)
