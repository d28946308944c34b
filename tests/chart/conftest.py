"""Fixtures for the chart, its monitoring rules and the images' Dockerfiles.

``helm`` and ``promtool`` are the real binaries (helm built from its Go module by
``scripts/test-deps``, promtool from Debian's prometheus package); like the servers, a missing
one skips its tests locally and fails them under ``CI=true``. ``Chart.render`` runs
``helm template`` and returns the objects, loaded strictly (a key twice in one mapping, which
YAML parsers otherwise resolve silently, is an error).

The fixtures of the cluster and operator tiers are re-exported here for the RBAC tests that run
the real operator under the chart's ServiceAccount.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed import MissingBinaryError, binaries
from tests.cluster.conftest import cluster, namespace, route_crds  # noqa: F401 - fixtures
from tests.operator.conftest import (  # noqa: F401 - fixtures
    bed,
    flow_metrics,
    make_bed,
    readiness,
    sro_crd,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "scheduler-rollouts"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
RULES = CHART / "files" / "prometheus-rules.yaml"

Obj = dict[str, Any]


def tool(name: str) -> Path:
    """A binary the tests need; skipped locally when missing, a failure under CI."""
    try:
        return binaries.find(name)
    except MissingBinaryError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and a required tool is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {sorted(map(str, duplicates))}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def load_all(text: str) -> list[Obj]:
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc]


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its output."""


@dataclass(frozen=True)
class Chart:
    helm: Path
    home: Path

    def run(self, *args: str) -> str:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [str(self.helm), *args], capture_output=True, text=True, env=env, timeout=120,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise HelmError(f"helm {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def lint(self, *values: Path, sets: tuple[str, ...] = ()) -> str:
        return self.run("lint", "--strict", str(CHART), *_values_args(values, sets))

    def template(
        self,
        *values: Path,
        sets: tuple[str, ...] = (),
        namespace: str = "ops",  # noqa: F811 - the argument, not the fixture
        release: str = "sr",
        show_only: tuple[str, ...] = (),
    ) -> str:
        only = [arg for path in show_only for arg in ("--show-only", path)]
        return self.run(
            "template", release, str(CHART), "--namespace", namespace,
            *_values_args(values, sets), *only,
        )  # fmt: skip

    def render(self, *values: Path, sets: tuple[str, ...] = (), **kw: Any) -> list[Obj]:
        return load_all(self.template(*values, sets=sets, **kw))


def _values_args(values: tuple[Path, ...], sets: tuple[str, ...]) -> list[str]:
    return [*(a for v in values for a in ("-f", str(v))), *(a for s in sets for a in ("--set", s))]


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Chart:
    return Chart(tool("helm"), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def promtool() -> Path:
    return tool("promtool")


def kinds(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in kinds(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]
