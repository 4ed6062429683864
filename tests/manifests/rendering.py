"""The rendered Kubernetes manifests (kustomize build of every overlay), shared by the tests.

A plain module (not conftest.py, whose name the test folders share); conftest.py re-exports
the fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())
COMPONENTS = sorted(p.name for p in (MANIFESTS / "components").iterdir() if p.is_dir())
KUSTOMIZE_INSTALL = (
    "GOBIN=$PWD/.local/tools/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.0"
)
#: the processes of the one image, by the CLI subcommand in their `args:`
SERVICES = ("base", "main", "stream", "lock-keeper")
IMAGE = "kubescaler"

Doc = dict[str, Any]


def kustomize_binary() -> str:
    """.local/tools/bin/kustomize, else one on PATH; a clear failure (not a skip) when absent."""
    local = ROOT / ".local" / "tools" / "bin" / "kustomize"
    found = str(local) if os.access(local, os.X_OK) else shutil.which("kustomize")
    if found is None:
        pytest.fail(
            f"kustomize not found in {local} or on PATH: install it with `{KUSTOMIZE_INSTALL}`",
            pytrace=False,
        )
    return found


def kustomize_build(path: Path) -> list[Doc]:
    out = subprocess.run(
        [kustomize_binary(), "build", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"kustomize build {path.relative_to(ROOT)} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@dataclass
class Rendered:
    """One overlay's output, with look-ups the tests share."""

    overlay: str
    docs: list[Doc]

    @property
    def production(self) -> bool:
        """overlays/production, as written or on the local three-node cluster."""
        return self.overlay in ("production", "local-production")

    def of_kind(self, *kinds: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] in kinds]

    def get(self, kind: str, name: str) -> Doc:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[Doc]:
        return self.of_kind("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

    def pod_specs(self) -> Iterator[tuple[Doc, Doc]]:
        """(workload, pod spec) for every workload."""
        for w in self.workloads():
            template = w["spec"]["template"]
            if w["kind"] == "CronJob":
                template = w["spec"]["jobTemplate"]["spec"]["template"]
            yield w, template["spec"]

    def app_containers(self) -> Iterator[tuple[Doc, Doc]]:
        """(workload, container) for the kubescaler processes (the image's main containers; not
        the Cassandra pods' `cassandra-roles` sidecar, which test_manifests_cassandra checks)."""
        for w, spec in self.pod_specs():
            for c in spec["containers"]:
                if c["image"].split(":")[0] == IMAGE and c["args"][0] in SERVICES:
                    yield w, c

    def config(self) -> dict[str, str]:
        """The generated kubescaler-config ConfigMap's data."""
        found = [
            d
            for d in self.of_kind("ConfigMap")
            if d["metadata"]["name"].startswith("kubescaler-config")
        ]
        assert len(found) == 1
        return dict(found[0]["data"])


_cache: dict[str, Rendered] = {}


def render(overlay: str) -> Rendered:
    if overlay not in _cache:
        _cache[overlay] = Rendered(overlay, kustomize_build(MANIFESTS / "overlays" / overlay))
    return _cache[overlay]


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """Each overlay in turn, built once per session."""
    return render(request.param)


@pytest.fixture
def dev() -> Rendered:
    return render("dev")


@pytest.fixture
def classic() -> Rendered:
    return render("classic")
