"""`schedctl verify-candidate` against real servers on loopback: the rollout's verify gate.

Two servers with API keys on, from the same tiny model. The stable searches for 300 ms when a
request leaves the budget to it; the candidate answers greedily (its config lost the search
budget: a real way to plan worse) and has test fault injection on, so a test can make it drop
jobs (invalid answers) or answer slowly (a failed load test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobshop_scheduler.cli import main
from jobshop_scheduler.domain.codec import problem_to_dict
from jobshop_scheduler.instances.flexible import production_like
from jobshop_scheduler.rl.model_store import CARD_NAME
from jobshop_scheduler.service.faults import ENABLE_ENV
from testbed.pki import CertificateAuthority, CertPair
from testbed.process import free_port

from .conftest import ServerFactory, ServerThread, base_config

pytestmark = pytest.mark.grpc

SIZES = (12, 18, 25)


@dataclass
class Tracks:
    stable: ServerThread
    candidate: ServerThread
    faults_file: Path
    key_file: Path
    model_dir: Path

    def set_faults(self, **faults: float) -> None:
        """Write the candidate's faults file and make it read now (not at its next poll)."""
        self.faults_file.write_text(json.dumps(faults))
        injector = self.candidate.running.servicer.faults
        assert injector is not None
        self.candidate.loop.call_soon_threadsafe(injector.reload)
        self.candidate.call(_noop())  # the reload above ran before this returns


async def _noop() -> None:
    return None


@pytest.fixture(scope="module")
def tracks(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_dir: Path,
    api_key: tuple[str, Path],
    server_thread: ServerFactory,
) -> Iterator[Tracks]:
    root = tmp_path_factory.mktemp("verify")
    key, keys_path = api_key
    key_file = root / "api-key"
    key_file.write_text(key + "\n")
    faults = root / "faults.json"
    faults.write_text("{}")
    auth: dict[str, Any] = {"no_auth": False, "keys_path": keys_path}
    stable_config = base_config(tiny_model_dir, track="stable", time_budget_ms=300, **auth)
    candidate_config = base_config(tiny_model_dir, faults_file=faults, **auth)
    with (
        server_thread(stable_config) as stable,
        server_thread(candidate_config, environ={ENABLE_ENV: "1"}) as candidate,
    ):
        tracks = Tracks(stable, candidate, faults, key_file, tiny_model_dir)
        yield tracks


def write_requests(folder: Path, *, greedy: bool) -> Path:
    """Three recorded requests; ``greedy`` pins their budget to 0 (both tracks plan alike)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, jobs in enumerate(SIZES, start=1):
        doc = problem_to_dict(production_like(jobs, seed=40 + n))
        doc["request_id"] = f"replay-{n}"
        if greedy:
            doc["time_budget_ms"] = 0
        (folder / f"r{n}.json").write_text(json.dumps(doc))
    (folder / "notes.txt").write_text("not a request")  # only *.json counts
    return folder


def verify(tracks: Tracks, requests: Path, result: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """Run the command: its exit code and the result file's JSON."""
    argv = [
        "verify-candidate",
        "--candidate", tracks.candidate.address,
        "--stable", tracks.stable.address,
        "--requests", str(requests),
        "--api-key-file", str(tracks.key_file),
        "--model-dir", str(tracks.model_dir),
        "--result-file", str(result),
        "--timeout-seconds", "30",
        *extra,
    ]  # fmt: skip
    code = main(argv)
    return code, json.loads(result.read_text())


def test_same_model_both_sides_passes_replay_and_load(
    tracks: Tracks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracks.set_faults()
    requests = write_requests(tmp_path / "requests", greedy=True)
    result_file = tmp_path / "termination-log"
    load = ["--concurrency", "2", "--load-requests", "8", "--p99-limit-seconds", "30"]
    code, result = verify(tracks, requests, result_file, *load)
    out = capsys.readouterr().out.strip()
    assert code == 0, result
    assert json.loads(out) == result  # the same object on stdout
    assert len(result_file.read_bytes()) <= 4000
    assert result["passed"] is True and result["reason"] == ""
    card = json.loads((tracks.model_dir / CARD_NAME).read_text())
    assert result["model"] == {"version": card["version"], "sha256": card["sha256"]}
    assert result["replay"] == {
        "requests": 3, "invalid": 0, "longer": 0, "meanRatio": 1.0, "maxRatio": 1.0,
    }  # fmt: skip
    load_figures = result["load"]
    assert load_figures["requests"] == 8 and load_figures["concurrency"] == 2
    assert load_figures["errors"] == 0 and load_figures["limitSeconds"] == 30.0
    assert 0 < load_figures["p50Seconds"] <= load_figures["p99Seconds"] < 30


def test_a_candidate_that_drops_jobs_fails_the_replay(tracks: Tracks, tmp_path: Path) -> None:
    tracks.set_faults(drop_job_fraction=0.5)
    try:
        requests = write_requests(tmp_path / "requests", greedy=True)
        code, result = verify(tracks, requests, tmp_path / "result", "--concurrency", "2")
    finally:
        tracks.set_faults()
    assert code == 1
    assert result["passed"] is False
    assert result["reason"].startswith("replay: 3 of 3 answers invalid (r1: missing "), result
    assert result["replay"]["invalid"] == 3 and result["replay"]["requests"] == 3
    assert "load" not in result  # stopped at the first failing part


def test_a_candidate_with_longer_plans_fails_the_makespan_ratio(
    tracks: Tracks, tmp_path: Path
) -> None:
    """Requests that leave the budget to the server: the stable searches, the candidate not."""
    tracks.set_faults()
    requests = write_requests(tmp_path / "requests", greedy=False)
    code, result = verify(tracks, requests, tmp_path / "result")
    assert code == 1, result
    replay = result["replay"]
    assert replay["invalid"] == 0 and replay["longer"] >= 1
    assert replay["meanRatio"] > 1.0 and replay["maxRatio"] >= replay["meanRatio"]
    assert result["reason"].startswith(f"replay: mean makespan ratio {replay['meanRatio']:.4f}")
    # the same plans pass a gate that allows them to be 50% longer
    code, result = verify(tracks, requests, tmp_path / "result", "--max-makespan-ratio", "1.5")
    assert code == 0 and result["passed"] is True, result


def test_a_slow_candidate_fails_the_load_test(tracks: Tracks, tmp_path: Path) -> None:
    tracks.set_faults(latency_ms=300)
    try:
        requests = write_requests(tmp_path / "requests", greedy=True)
        load = ["--concurrency", "2", "--load-requests", "4", "--p99-limit-seconds", "0.2"]
        code, result = verify(tracks, requests, tmp_path / "result", *load)
    finally:
        tracks.set_faults()
    assert code == 1, result
    assert result["replay"]["invalid"] == 0  # the replay passed; the load test did not
    load_figures = result["load"]
    assert load_figures["errors"] == 0 and load_figures["p99Seconds"] >= 0.3
    assert load_figures["limitSeconds"] == 0.2
    assert result["reason"].startswith("load: p99 ") and "> limit 0.2 s" in result["reason"]


def test_a_candidate_serving_another_model_fails_the_model_check(
    tracks: Tracks, tmp_path: Path
) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    card = json.loads((tracks.model_dir / CARD_NAME).read_text())
    (shipped / CARD_NAME).write_text(json.dumps({**card, "version": "other-2"}))
    requests = write_requests(tmp_path / "requests", greedy=True)
    tracks.set_faults()
    code, result = verify(tracks, requests, tmp_path / "result", "--model-dir", str(shipped))
    assert code == 1
    assert result["model"]["version"] == "other-2"
    assert result["reason"] == (
        f"model: the candidate serves model {card['version']}, this pod template ships "
        f"other-2 (sha256 {card['sha256'][:12]})"
    )
    assert "replay" not in result


def test_an_unreachable_candidate_fails_and_an_unwritable_result_file_does_not_crash(
    tracks: Tracks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = write_requests(tmp_path / "requests", greedy=True)
    argv = [
        "verify-candidate", "--candidate", f"127.0.0.1:{free_port()}",
        "--stable", tracks.stable.address, "--requests", str(requests),
        "--timeout-seconds", "1", "--result-file", str(tmp_path / "no-such-dir" / "result"),
    ]  # fmt: skip
    assert main(argv) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["passed"] is False and set(result) == {"passed", "reason", "model"}
    assert result["reason"].startswith("model: candidate 127.0.0.1:")
    assert "unreachable (UNAVAILABLE" in result["reason"]
    assert "cannot write" in captured.err and "no-such-dir" in captured.err


def test_tls_on_both_tracks_with_the_load_test(
    tmp_path: Path,
    tiny_model_dir: Path,
    pki: tuple[CertificateAuthority, CertPair],
    server_thread: ServerFactory,
) -> None:
    ca, cert = pki
    config = base_config(tiny_model_dir, tls_cert=cert.cert, tls_key=cert.key)
    requests = write_requests(tmp_path / "requests", greedy=True)
    with server_thread(config) as server:
        argv = [
            "verify-candidate", "--candidate", f"localhost:{server.running.port}",
            "--stable", server.address, "--requests", str(requests),
            "--tls-ca", str(ca.cert_path), "--concurrency", "2", "--load-requests", "4",
            "--p99-limit-seconds", "30", "--result-file", str(tmp_path / "result"),
            "--model-dir", str(tiny_model_dir),
        ]  # fmt: skip
        assert main(argv) == 0
        result = json.loads((tmp_path / "result").read_text())
        assert result["passed"] is True and result["load"]["errors"] == 0
        plain = [
            "verify-candidate", "--candidate", server.address, "--stable", server.address,
            "--requests", str(requests), "--timeout-seconds", "1",
            "--result-file", str(tmp_path / "plain"),
        ]  # fmt: skip
        assert main(plain) == 1  # the same server without TLS: never reachable
    assert "unreachable" in json.loads((tmp_path / "plain").read_text())["reason"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such folder"),
        ("empty", "no *.json request files"),
        ("bad-json", "r2.json: not valid JSON"),
        ("bad-field", "r1.json: jobs[0].operations[0].alternatives[0].duration"),
        ("bad-flag", "--load-requests needs --concurrency"),
    ],
)
def test_bad_usage_exits_2_naming_the_file_or_field(
    setup: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "requests"
    extra: list[str] = []
    if setup != "missing":
        folder.mkdir()
    if setup in ("bad-json", "bad-field", "bad-flag"):
        write_requests(folder, greedy=True)
    if setup == "bad-json":
        (folder / "r2.json").write_text("{not json")
    if setup == "bad-field":
        doc = json.loads((folder / "r1.json").read_text())
        doc["jobs"][0]["operations"][0]["alternatives"][0]["duration"] = "ten"
        (folder / "r1.json").write_text(json.dumps(doc))
    if setup == "bad-flag":
        extra = ["--load-requests", "5"]
    result_file = tmp_path / "result"
    argv = [
        "verify-candidate", "--candidate", "127.0.0.1:9", "--stable", "127.0.0.1:9",
        "--requests", str(folder), "--result-file", str(result_file), *extra,
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    result = json.loads(result_file.read_text())
    assert result["passed"] is False and result["reason"].startswith("usage: ")
    assert message in result["reason"]


def test_a_missing_key_file_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_requests(tmp_path / "requests", greedy=True)
    missing = tmp_path / "no-key"
    argv = [
        "verify-candidate", "--candidate", "127.0.0.1:9", "--stable", "127.0.0.1:9",
        "--requests", str(folder), "--api-key-file", str(missing),
    ]  # fmt: skip
    assert main(argv) == 2
    assert f"API key file not found: {missing}" in capsys.readouterr().err
