"""The two Dockerfiles, checked without a Docker engine.

What can be known without building: both are multi-stage and run as a numeric non-root user;
each installs exactly its own workspace member with ``uv sync --locked --no-dev``; every COPY
source exists in a clean checkout and is let through by ``.dockerignore`` (and nothing secret
is); and neither the operator's nor the scheduler's serving closure has torch. The build stages'
uv steps are then replayed for real, offline from uv's cache, on a copy of exactly what the COPY
lines bring in: the operator's environment must install, run ``rollout-operator --help`` and
lack torch; the scheduler's must install without torch, SB3 or matplotlib, compile its numba
kernels into the seed cache as its build step does, and start from that seed without compiling.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chart.conftest import ROOT

pytestmark = pytest.mark.unit

OPERATOR = ROOT / "operator" / "Dockerfile"
SCHEDULER = ROOT / "scheduler_service" / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of the stage's COPY lines that read the build context."""
    out = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(w.startswith("--from") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        out.append((paths[:-1], paths[-1]))
    return out


# --- .dockerignore, as the Docker builder reads it ------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out += ".*"
            i += 2
        elif glob[i] == "*":
            out += "[^/]*"
            i += 1
        elif glob[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(glob[i])
            i += 1
    return re.compile(out + "$")


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((keep, _pattern(line.lstrip("!").strip("/"))))
    return rules


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``path`` reaches the build: the last rule matching it or a parent decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for keep, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            included = keep
    return included


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [f for f in out.split("\0") if f]


# --- the checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "package"), [(OPERATOR, "rollout-operator"), (SCHEDULER, "jobshop-scheduler")]
)
def test_multi_stage_non_root_and_only_its_own_package(dockerfile: Path, package: str) -> None:
    stages = parse(dockerfile)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the image"
    final = stages[-1]
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER {user}: numeric and not root"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    assert not final.all("RUN"), "the runtime stage runs nothing as root"
    assert any("--from=build /opt/venv" in c for c in final.all("COPY"))
    syncs = [r for s in stages for r in s.all("RUN") if r.startswith("uv sync")]
    assert syncs
    for command in syncs:
        words = shlex.split(command)
        assert {"--locked", "--no-dev"} <= set(words), command
        assert words[words.index("--package") + 1] == package, command
    assert not any(kw == "ADD" for s in stages for kw, _ in s.instructions), "COPY, never ADD"


def test_every_copy_source_is_in_a_clean_checkout_and_the_context() -> None:
    rules = ignore_rules()
    files = tracked_files()
    for dockerfile in (OPERATOR, SCHEDULER):
        for stage in parse(dockerfile):
            for sources, _ in copies(stage):
                for source in sources:
                    under = [f for f in files if f == source or f.startswith(source + "/")]
                    assert under, f"{dockerfile.name}: COPY {source}: not in the repository"
                    let_through = [f for f in under if in_context(f, rules)]
                    assert let_through, f"{dockerfile.name}: COPY {source}: all .dockerignored"
                    dropped = [f for f in under if f not in let_through]
                    assert all("__pycache__" in f or f.endswith(".pyc") for f in dropped), dropped


def test_the_context_leaves_out_what_must_not_be_in_an_image() -> None:
    rules = ignore_rules()
    for path in (".env", ".git/config", ".venv/bin/python", "data/real_production_snapshot.json",
                 "models/backups/x/final_model.zip", "tests/conftest.py", "out/demo.log",
                 "scheduler_service/src/jobshop_scheduler/_generated/scheduler/v1/x_pb2.py",
                 "operator/src/rollout_operator/__pycache__/cli.cpython-311.pyc"):  # fmt: skip
        assert not in_context(path, rules), path
    assert in_context("operator/src/rollout_operator/cli.py", rules)
    assert in_context("models/full_production/final_model.zip", rules)


def locked_closure(package: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Every package ``uv sync --package`` installs (with ``extras`` of the member itself)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    optional = packages[package].get("optional-dependencies", {})
    seen: set[str] = set()
    todo = [package, *(d["name"] for e in extras for d in optional[e])]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(d["name"] for d in packages.get(name, {}).get("dependencies", []))
    return seen


TRAINING_STACK = {"torch", "stable-baselines3", "sb3-contrib", "gymnasium", "matplotlib"}


def test_neither_image_locks_the_training_stack() -> None:
    operator = locked_closure("rollout-operator")
    assert "kopf" in operator and "kubernetes" in operator
    assert not (TRAINING_STACK | {"jobshop-scheduler", "numba"}) & operator
    serving = locked_closure("jobshop-scheduler")
    assert {"numpy", "numba", "grpcio"} <= serving
    assert not TRAINING_STACK & serving
    assert locked_closure("jobshop-scheduler", ("train",)) >= TRAINING_STACK  # it can see them


def build_context(dockerfile: Path, destination: Path) -> None:
    """What the build stage's COPY lines bring in, copied from the checkout into ``destination``
    (tracked files only, .dockerignore applied), with COPY's rules for files and folders."""
    rules = ignore_rules()
    files = [f for f in tracked_files() if in_context(f, rules)]
    for sources, target in copies(parse(dockerfile)[0]):
        into_folder = target.endswith("/") or len(sources) > 1
        for source in sources:
            if source in files:  # a file
                out = (
                    destination / target / Path(source).name
                    if into_folder
                    else (destination / target)
                )
                pairs = [(source, out)]
            else:  # a folder: its contents go under the target
                pairs = [
                    (f, destination / target / Path(f).relative_to(source))
                    for f in files if f.startswith(source + "/")
                ]  # fmt: skip
            for f, out in pairs:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, out)


def uv_env(venv: Path) -> dict[str, str]:
    return {
        **os.environ, "UV_OFFLINE": "1", "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
    }  # fmt: skip


def run_stage_syncs(dockerfile: Path, src: Path, venv: Path) -> None:
    """The build stage's ``uv sync`` lines, in order, each after the COPY lines before it."""
    for keyword, args in parse(dockerfile)[0].instructions:
        if keyword == "RUN" and args.startswith("uv sync"):
            result = subprocess.run(
                shlex.split(args), cwd=src, env=uv_env(venv), capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"{args}:\n{result.stderr}"


def test_the_operator_build_stage_installs_a_working_operator_without_torch(
    tmp_path: Path,
) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv not on PATH")
    src, venv = tmp_path / "src", tmp_path / "venv"
    build_context(OPERATOR, src)
    assert not (src / "scheduler_service" / "src").exists()
    run_stage_syncs(OPERATOR, src, venv)
    python = venv / "bin" / "python"
    probe = "import importlib.util as u, rollout_operator; print(u.find_spec('torch'))"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "None"
    assert (
        "site-packages"
        in subprocess.run(
            [python, "-c", "import rollout_operator; print(rollout_operator.__file__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )  # not an editable link back into the source tree
    usage = subprocess.run([venv / "bin" / "rollout-operator", "--help"], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert "--leader-elect" in usage.stdout


def test_the_scheduler_build_stage_serves_without_torch_from_its_kernel_seed(
    tmp_path: Path,
) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv not on PATH")
    src, venv = tmp_path / "src", tmp_path / "venv"
    build_context(SCHEDULER, src)
    run_stage_syncs(SCHEDULER, src, venv)
    python = str(venv / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import jobshop_scheduler; print(jobshop_scheduler.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "site-packages" in where  # the wheel (stubs generated by the build), not the tree
    probe = "import importlib.util as u; print([m for m in ('torch', 'stable_baselines3', " \
        "'matplotlib') if u.find_spec(m)])"  # fmt: skip
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"  # fmt: skip
    # The build step that compiles the kernels, as the Dockerfile runs it (paths made local).
    (warm,) = [r for r in parse(SCHEDULER)[0].all("RUN") if "load_checked_model" in r]
    model = ROOT / "models" / "full_production"
    warm = (
        warm.replace("/opt/numba-cache", str(tmp_path / "seed"))
        .replace("/opt/venv/bin/python", python)
        .replace("/opt/scheduler/models/full_production", str(model))
    )
    env = {**os.environ, "NUMBA_CPU_NAME": "generic"}
    subprocess.run(["sh", "-c", warm], env=env, check=True, timeout=600)
    assert list((tmp_path / "seed").rglob("*.nbc")), "the build step cached no kernel"
    # The runtime: a read-only seed copied into NUMBA_CACHE_DIR, and nothing compiled.
    runtime = {**env, "SCHEDULER_NUMBA_CACHE_SEED": str(tmp_path / "seed"),
               "NUMBA_CACHE_DIR": str(tmp_path / "tmp-numba"), "NUMBA_DEBUG_CACHE": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    request = ROOT / "examples" / "requests" / "small.json"
    done = subprocess.run(
        [str(venv / "bin" / "schedctl"), "schedule", str(request), "--local", "--model-dir",
         str(model), "--time-budget-ms", "50"],
        env=runtime, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "policy      ppo" in done.stdout
    assert "data loaded from" in done.stdout + done.stderr
    assert "data saved to" not in done.stdout + done.stderr, "a kernel was compiled at start"


def test_the_scheduler_build_context_builds_its_wheel(tmp_path: Path) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv not on PATH")
    src = tmp_path / "src"
    build_context(SCHEDULER, src)
    build = ["uv", "build", "--wheel", "--package", "jobshop-scheduler"]
    result = subprocess.run(
        [*build, "--out-dir", str(tmp_path / "dist")],
        cwd=src, env=uv_env(tmp_path / "venv"), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("jobshop_scheduler-*.whl")
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert "jobshop_scheduler/_generated/scheduler/v1/scheduler_pb2_grpc.py" in names
