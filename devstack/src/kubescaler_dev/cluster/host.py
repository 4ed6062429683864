"""What the local cluster changes on this machine, recorded when made and undone on stop.

Every change (a network link, a mount, a cgroup, an nftables table, a folder outside the
cluster's own) is written to a journal in the cluster folder *before* it is made, so ``down``
- or the next ``up`` after a crash - undoes exactly what a run did, in reverse order, even when
the process that made it is gone. Undo steps are idempotent: undoing what is already gone is
not an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubescaler_dev.cluster.progress import ClusterError, Progress

#: the cgroup v1 hierarchies the kubelet makes ``kubepods`` in (and cgroup v2 when mounted)
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Change:
    kind: str  # link | netns | mount | cgroup | nft-table | dir
    what: str

    def line(self) -> str:
        return json.dumps({"kind": self.kind, "what": self.what})


def _quiet(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (the order to unmount them)."""
    found = []
    prefix = str(root.resolve()).rstrip("/")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return sorted(set(found), key=lambda t: t.count("/"), reverse=True)


def unmount_tree(root: Path) -> None:
    """Unmount everything at or below ``root`` (lazily, so busy mounts go once released)."""
    for _ in range(5):  # stacked mounts on one target come off one per pass
        targets = mounts_under(root)
        if not targets:
            return
        for target in targets:
            _quiet(["umount", "-l", target])


def remove_cgroup(rel: str) -> None:
    """rmdir ``rel`` (e.g. ``kubepods``) and every cgroup below it, in every hierarchy."""
    for hierarchy in [CGROUP_ROOT, *sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir())]:
        top = hierarchy / rel
        if not top.is_dir() or top.is_symlink():
            continue
        for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


class Journal:
    """The changes a cluster run made to the machine, in ``<dir>/host-changes.jsonl``."""

    def __init__(self, dir: Path) -> None:
        self.path = dir / "host-changes.jsonl"

    def entries(self) -> list[Change]:
        if not self.path.is_file():
            return []
        return [Change(**json.loads(line)) for line in self.path.read_text().splitlines() if line]

    def record(self, kind: str, what: str) -> None:
        """Note a change before making it (so a crash in between still gets it undone)."""
        change = Change(kind, what)
        if change in self.entries():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(change.line() + "\n")
            out.flush()
            os.fsync(out.fileno())

    def undo(self, progress: Progress) -> list[str]:
        """Undo every recorded change, newest first; return what could not be undone."""
        problems = []
        for change in reversed(self.entries()):
            try:
                _UNDO[change.kind](change.what)
            except (OSError, subprocess.SubprocessError, ClusterError) as exc:
                problems.append(f"{change.kind} {change.what}: {exc}")
        leftover = [c for c in self.entries() if _still_there(c)]
        problems += [f"{c.kind} {c.what} is still there" for c in leftover]
        if not problems:
            self.path.unlink(missing_ok=True)
        else:
            for problem in problems:
                progress.say(f"could not undo: {problem}")
        return problems


def _undo_link(name: str) -> None:
    # ports of a bridge (pods' veths left by a killed runtime) go with it
    ports = _quiet(["ip", "-o", "link", "show", "master", name]).stdout
    for line in ports.splitlines():
        port = line.split(":")[1].strip().split("@")[0]
        _quiet(["ip", "link", "delete", port])
    _quiet(["ip", "link", "delete", name])


def _undo_netns(name: str) -> None:
    """Delete a node's namespace; what still runs in it (a crash's leftovers) is killed first."""
    pids = _quiet(["ip", "netns", "pids", name]).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    _quiet(["ip", "netns", "delete", name])


def _undo_nft(table: str) -> None:
    family, name = table.split(" ", 1)
    if _quiet(["nft", "list", "table", family, name]).returncode == 0:
        done = _quiet(["nft", "delete", "table", family, name])
        if done.returncode != 0:
            raise ClusterError(done.stderr.strip())


def _undo_dir(path: str) -> None:
    unmount_tree(Path(path))
    shutil.rmtree(path, ignore_errors=True)


_UNDO = {
    "link": _undo_link,
    "netns": _undo_netns,
    "mount": lambda target: unmount_tree(Path(target)),
    "cgroup": remove_cgroup,
    "nft-table": _undo_nft,
    "dir": _undo_dir,
}


def _still_there(change: Change) -> bool:  # noqa: PLR0911 - one answer per kind
    if change.kind == "link":
        return Path(f"/sys/class/net/{change.what}").exists()
    if change.kind == "netns":
        return Path(f"/run/netns/{change.what}").exists()
    if change.kind == "mount":
        return bool(mounts_under(Path(change.what)))
    if change.kind == "cgroup":
        return any((h / change.what).is_dir() for h in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()])
    if change.kind == "nft-table":
        family, name = change.what.split(" ", 1)
        return _quiet(["nft", "list", "table", family, name]).returncode == 0
    if change.kind == "dir":
        return Path(change.what).exists()
    return False
