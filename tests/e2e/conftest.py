"""One end-to-end platform for the drills (testbed.e2e): its own kube-apiserver + etcd and
Prometheus, since drills restart and kill them; every drill gets fresh plant namespaces."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.e2e import E2EPlatform, Plant
from tests.conftest import start_server

MakePlant = Callable[..., Plant]


def until(what: Callable[[], Any], timeout: float, label: str) -> Any:
    """Poll ``what`` every 0.2 s until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{label} not reached in {timeout:.0f}s")


@pytest.fixture(scope="module")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2EPlatform]:
    yield from start_server(request, E2EPlatform, tmp_path_factory.mktemp("e2e"))


@pytest.fixture()
def make_plant(platform: E2EPlatform, request: pytest.FixtureRequest) -> Iterator[MakePlant]:
    """``make_plant()``: a new namespace with a stable legacy scheduler and clients calling it.
    A failing drill gets its operators' logs in the report."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    plants: list[Plant] = []

    def make(**options: Any) -> Plant:
        plant = platform.add_plant(f"{stem}-{uuid.uuid4().hex[:5]}", seed=len(plants), **options)
        plants.append(plant)
        return plant

    try:
        yield make
    finally:
        report = getattr(request.node, "rep_call", None)
        for plant in plants:
            if report is not None and report.failed:
                for operator in plant.operators:
                    print(f"--- {operator.log} ---\n{operator.tail(150)}")
                for log in sorted(Path(platform.workdir, "pods", plant.namespace).glob("*.log")):
                    print(f"--- {log} (tail) ---\n{log.read_text(errors='replace')[-2000:]}")
            platform.remove_plant(plant)
