"""The classic overlay's stand-in metrics adapter, without a cluster: its build is keyed by its
own sources and pinned in the version table, and the add-on that runs it serves the APIs the
overlay's HPAs read, configured from the overlay's rule file."""

from __future__ import annotations

import dataclasses
import re

from kubescaler_dev.cluster.versions import (
    BUILDS,
    CUSTOM_METRICS_APISERVER,
    IMAGES,
    METRICS_ADAPTER_DIR,
)


def test_the_adapter_build_carries_its_go_files_but_not_its_tests() -> None:
    build = BUILDS["metrics-adapter"]
    on_disk = sorted(
        p.name for p in METRICS_ADAPTER_DIR.glob("*.go") if not p.name.endswith("_test.go")
    )
    assert [path.rsplit("/", 1)[-1] for path, _ in build.sources] == on_disk
    for path, text in build.sources:
        assert text == (METRICS_ADAPTER_DIR / path.rsplit("/", 1)[-1]).read_text()
    assert list(build.binaries.values()) == [f"{build.wrapper}/cmd/metrics-adapter"]
    assert build.static  # it runs in a FROM scratch image


def test_a_change_of_the_adapter_sources_changes_its_cache_key() -> None:
    build = BUILDS["metrics-adapter"]
    (first, text), *rest = build.sources
    edited = dataclasses.replace(build, sources=((first, text + "\n// edited\n"), *rest))
    assert edited.key != build.key


def test_the_library_version_is_pinned_once_for_the_build_and_the_go_tests() -> None:
    """devstack/metrics-adapter/go.mod (for go test and go vet in place) requires the version
    the build uses, and the image is tagged with it."""
    go_mod = (METRICS_ADAPTER_DIR / "go.mod").read_text()
    required = re.search(r"sigs\.k8s\.io/custom-metrics-apiserver (v\S+)", go_mod)
    assert required is not None
    assert required.group(1) == CUSTOM_METRICS_APISERVER == BUILDS["metrics-adapter"].version
    assert IMAGES["metrics-adapter"].startswith(
        f"kubescaler.local/metrics-adapter:{CUSTOM_METRICS_APISERVER}-"
    )
