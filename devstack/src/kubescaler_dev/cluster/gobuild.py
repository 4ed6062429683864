"""Build the cluster's binaries from Go modules into a cache kept between runs.

Each :class:`~kubescaler_dev.cluster.versions.GoBuild` gets a wrapper module under
``<cache>/modules/<key>`` and its binaries under ``<cache>/bin/<key>``; the folder appears only
once every binary built, so an interrupted build is never taken for a finished one. Go's own
build and module caches (outside the checkout) make a rebuild after a version change cheap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kubescaler_dev.cluster.progress import ClusterError, Progress, run
from kubescaler_dev.cluster.versions import GoBuild

MIN_GO = (1, 26)


#: how the go command reports a module version the module proxy will not serve
_REFUSED = re.compile(r"([\w./~-]+@v[\w.+-]+): reading \S+: (403|404|410)")


def _go(argv: list[str], what: str, progress: Progress, **kwargs: Any) -> str:
    """A go command; a module version the proxy refuses becomes one line saying which."""
    try:
        return run(argv, what, progress, **kwargs)
    except ClusterError as exc:
        refused = _REFUSED.search(exc.output)
        if refused is None:
            raise
        raise ClusterError(
            f"{what}: the Go module proxy does not serve {refused.group(1)}; pin versions it "
            "serves in devstack/src/kubescaler_dev/cluster/versions.py"
        ) from exc


def go_binary() -> str:
    """The machine's ``go``, at least MIN_GO, or a ClusterError that says how to get it."""
    found = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(p).is_file()), None
    )
    want = ".".join(map(str, MIN_GO))
    if found is None:
        raise ClusterError(
            f"go not found: the cluster's binaries are built from Go modules; install Go {want} "
            "or newer (https://go.dev/doc/install) and put it on PATH"
        )
    version = run([found, "env", "GOVERSION"], "go env GOVERSION").strip()
    parsed = re.match(r"go(\d+)\.(\d+)", version)
    if parsed is None or (int(parsed.group(1)), int(parsed.group(2))) < MIN_GO:
        raise ClusterError(f"{found} is {version}; the cluster's modules need Go {want} or newer")
    return found


def go_env(go: str) -> dict[str, str]:
    """The environment of every go command: the machine's toolchain, no VCS stamping."""
    return {
        **os.environ,
        "PATH": f"{Path(go).parent}:{os.environ.get('PATH', '')}",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=mod -buildvcs=false",
    }


def wrapper_go_mod(build: GoBuild, edit: dict[str, Any]) -> str:
    """go.mod of the wrapper: require the module, copy its replaces (local paths made remote).

    ``edit`` is the module's own go.mod as ``go mod edit -json`` prints it.
    """
    lines = [
        f"module {build.wrapper}",
        "",
        f"go {edit.get('Go') or '1.26'}",
        "",
    ]
    if build.fork_of:
        # the fork's go.mod names the original: require that, and replace it with the fork
        lines += [
            f"require {build.fork_of} {build.version.split('-')[0]}",
            "",
            f"replace {build.fork_of} => {build.module} {build.version}",
        ]
    else:
        lines += [f"require {build.module} {build.version}", ""]
    for rep in edit.get("Replace") or []:
        old, new = rep["Old"]["Path"], rep["New"]
        if old in build.skip_replace:
            continue
        if new.get("Version"):
            lines.append(f"replace {old} => {new['Path']} {new['Version']}")
        elif build.local_replace_version:
            lines.append(f"replace {old} => {old} {build.local_replace_version}")
        else:
            raise ClusterError(
                f"{build.module}@{build.version} replaces {old} with the local folder "
                f"{new['Path']}, which a module download does not carry"
            )
    return "\n".join(lines) + "\n"


def _prepare(build: GoBuild, src: Path, go: str, env: dict[str, str], progress: Progress) -> None:
    if (src / "go.sum").is_file():
        return
    progress.say(f"fetching {build.module}@{build.version} and its dependencies")
    src.mkdir(parents=True, exist_ok=True)
    module_go_mod = _download(build.module, build.version, go, env, src, progress) / "go.mod"
    edit = json.loads(run([go, "mod", "edit", "-json", str(module_go_mod)], "go mod edit", env=env))
    (src / "go.mod").write_text(wrapper_go_mod(build, edit))
    for path, source in build.sources:
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(source)
    external = sorted({p for p in build.binaries.values() if not p.startswith(build.wrapper)})
    imports = "\n".join(f'\t_ "{pkg}"' for pkg in external)
    (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    sum_file = src / "go.sum"
    try:
        _go([go, "mod", "tidy"], f"go mod tidy for {build.name}", progress, env=env, cwd=src)
    except ClusterError:
        sum_file.unlink(missing_ok=True)
        raise


def ensure_built(build: GoBuild, cache: Path, progress: Progress) -> Path:
    """The folder holding every binary of ``build``, building them first if they are not there."""
    out = cache / "bin" / build.key
    if all((out / name).is_file() for name in build.binaries):
        return out
    go = go_binary()
    env = {**go_env(go), **build.env}
    src = cache / "modules" / build.key
    _prepare(build, src, go, env, progress)
    (cache / "bin").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{build.key}-", dir=cache / "bin"))
    try:
        for name, pkg in build.binaries.items():
            progress.say(f"building {name} {build.version} (Go; minutes on a cold cache)")
            argv = [go, "build", "-v", "-trimpath", "-p", str(max(1, os.cpu_count() or 1))]
            if build.tags:
                argv += ["-tags", ",".join(build.tags)]
            argv += ["-ldflags", build.ldflags, "-o", str(staging / name), pkg]
            _go(
                ["nice", "-n", "10", *argv],
                f"go build {name}",
                progress,
                env=env,
                cwd=src,
                log=cache / "logs" / f"{build.key}-{name}.log",
                count_lines="packages compiled",
            )
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress.say(f"built {', '.join(build.binaries)} {build.version}")
    return out


def _download(
    module: str, version: str, go: str, env: dict[str, str], cwd: Path, progress: Progress
) -> Path:
    """``module@version`` into Go's module cache; its (read-only) folder there."""
    info = json.loads(
        _go(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            f"go mod download {module}@{version}",
            progress,
            env=env,
            cwd=cwd,
        )
    )
    if info.get("Error"):
        raise ClusterError(f"cannot download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def module_source(module: str, version: str, cache: Path, progress: Progress) -> Path:
    """The read-only folder of ``module@version`` in Go's module cache (downloaded if needed)."""
    go = go_binary()
    scratch = cache / "modules" / "download"
    scratch.mkdir(parents=True, exist_ok=True)
    return _download(module, version, go, go_env(go), scratch, progress)
