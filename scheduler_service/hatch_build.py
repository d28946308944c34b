"""Hatch build hook: generate the gRPC stubs from protos/ so they are never edited by hand.

Runs for wheel, editable and sdist-to-wheel builds. protoc emits absolute imports rooted at the
proto path (``from scheduler.v1 import scheduler_pb2``); they are rewritten to live under
``jobshop_scheduler._generated`` so the stubs need no sys.path tricks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = "jobshop_scheduler._generated"


def _proto_root(project_root: Path) -> Path:
    for candidate in (project_root / "protos", project_root.parent / "protos"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no protos/ folder next to or above {project_root}")


def _rewrite_imports(out_dir: Path, packages: set[str]) -> None:
    pattern = re.compile(rf"^from ({'|'.join(map(re.escape, sorted(packages)))}) import", re.M)
    for path in out_dir.rglob("*.py*"):
        text = path.read_text()
        path.write_text(pattern.sub(rf"from {PACKAGE}.\1 import", text))


class ProtoStubsHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        from grpc_tools import protoc  # noqa: PLC0415 - only installed in the build environment

        root = Path(self.root)
        proto_root = _proto_root(root)
        out_dir = root / "src" / "jobshop_scheduler" / "_generated"
        out_dir.mkdir(parents=True, exist_ok=True)
        protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {protos}")
        packages: set[str] = set()
        for proto in protos:
            parent = Path(proto).parent
            packages.add(".".join(parent.parts))
            for depth in range(len(parent.parts) + 1):
                init = out_dir.joinpath(*parent.parts[:depth], "__init__.py")
                init.touch()
        _rewrite_imports(out_dir, packages)
