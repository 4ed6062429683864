"""The product wheel holds the product only: installed alone in a fresh virtual environment, the
local tooling cannot be imported and `kubescaler --help` offers no tooling command."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_COMMANDS = ("base", "main", "stream", "lock-keeper", "replay", "token", "config")


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".local" / "tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is needed (./dev installs it into .local/tools)"
    return found


def _run(*argv: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    argv_ = [str(a) for a in argv]
    return subprocess.run(
        argv_, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_product_wheel_alone_has_no_tooling(tmp_path: Path) -> None:
    """Built from the repository and installed alone: only `kubescaler` is in it, importing the
    tooling fails, and the CLI lists the processes and tools of the product, nothing else."""
    uv = _uv()
    built = _run(uv, "build", "--wheel", "--package", "kubescaler", "--out-dir", tmp_path / "dist")
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("kubescaler-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"kubescaler"}, tops

    venv = tmp_path / "venv"
    assert _run(uv, "venv", "--quiet", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = _run(uv, "pip", "install", "--quiet", "--python", python, wheel)
    assert installed.returncode == 0, installed.stderr

    for module in ("kubescaler_dev", "kubescaler.devstack"):
        tried = _run(python, "-c", f"import {module}", cwd=tmp_path)
        assert tried.returncode != 0
        assert "ModuleNotFoundError" in tried.stderr, tried.stderr
    assert _run(python, "-c", "import kubescaler.cli", cwd=tmp_path).returncode == 0

    helped = _run(venv / "bin" / "kubescaler", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    listed = helped.stdout.split("{", 1)[-1]
    for command in PRODUCT_COMMANDS:
        assert command in listed
    for tooling in ("up", "cluster"):
        assert f"    {tooling} " not in helped.stdout, helped.stdout
    refused = _run(venv / "bin" / "kubescaler", "cluster", "status", cwd=tmp_path)
    assert refused.returncode == 2
    assert "invalid choice: 'cluster'" in refused.stderr
