"""What the cluster tool is doing, one line at a time, with the time since it started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: what a first build on a fresh machine writes: Go modules (~8 GB) and build cache (~11 GB),
#: the cluster cache (~2 GB) and podman's images (~1 GB), measured in a cold run here
COLD_BUILD_DISK_GB = 25


class ClusterError(RuntimeError):
    """Something the cluster needs is missing or failed; the message says what and how to fix.

    ``output`` is the whole output of the command that failed, when one did.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class Progress:
    """Prints ``[cluster 1m05s] message`` lines, so a long cold build is visibly working."""

    def __init__(self, out: Callable[[str], None] | None = None) -> None:
        self.started = time.monotonic()
        self._out = out or (lambda line: print(line, file=sys.stderr, flush=True))

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

    def say(self, message: str) -> None:
        self._out(f"[cluster {self.elapsed():>6}] {message}")


def run(
    argv: Sequence[str],
    what: str,
    progress: Progress | None = None,
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600,
    heartbeat_s: float = 30.0,
    count_lines: str = "",
) -> str:
    """Run a command to completion and return its output; raise ClusterError naming ``what``.

    While it runs, a line every ``heartbeat_s`` says it is still going (with how many output
    lines it has printed, labelled ``count_lines``, e.g. the packages ``go build -v`` compiled).
    The output also goes to ``log`` when given.
    """
    lines: list[str] = []
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise ClusterError(f"{what}: cannot run {argv[0]}: {exc}") from exc
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            if progress is not None:
                counted = f", {len(lines)} {count_lines}" if count_lines else ""
                progress.say(f"  ... {what} ({int(time.monotonic() - started)}s{counted})")

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
        proc.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired as exc:
        _kill(proc)
        raise ClusterError(f"{what}: no result after {timeout:.0f}s") from exc
    except BaseException:  # Ctrl-C or a signal: the child (its own session) goes too
        _kill(proc)
        raise
    finally:
        stop.set()
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("\n".join(lines) + "\n")
    output = "\n".join(lines)
    if proc.returncode != 0:
        tail = "\n".join(lines[-25:])
        where = f" (whole output: {log})" if log is not None else ""
        if "no space left on device" in output.lower():
            free = shutil.disk_usage(cwd or Path.cwd()).free / 1e9
            raise ClusterError(
                f"{what} failed: the disk is full ({free:.1f} GB free); a first build of the "
                f"local cluster needs about {COLD_BUILD_DISK_GB} GB for the Go module and build "
                f"caches and the images{where}:\n{tail}",
                output,
            )
        raise ClusterError(
            f"{what} failed with exit status {proc.returncode}{where}:\n{tail}", output
        )
    return output


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
