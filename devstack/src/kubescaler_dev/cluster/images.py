"""Container images without a registry: built with podman, loaded into each node's containerd.

**Root filesystems from Debian packages** (``mmdebstrap --variant=minbase``) are imported into
podman as the bases of the stand-in images (catalog.py lists every image). Each image is saved
as an archive once and imported into every node's containerd (``k8s.io`` namespace) under the
exact reference the manifests use, so nothing is ever pulled. A record per store of what was
imported (by podman image ID) skips an unchanged image next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.progress import ClusterError, Progress, run
from kubescaler_dev.cluster.versions import DEBIAN_SUITE

ROOT = Path(__file__).resolve().parents[4]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

#: podman's settings for this machine: its default ulimits exceed the hard limits here, crun
#: refuses this cgroup hybrid, and there is no systemd for cgroups or the event log
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@dataclass(frozen=True)
class Rootfs:
    """A Debian root filesystem: minbase plus ``packages``, imported into podman as ``ref``."""

    name: str
    packages: tuple[str, ...]
    remove: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        recipe = repr((DEBIAN_SUITE, sorted(self.packages), self.remove))
        return f"{self.name}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"

    @property
    def ref(self) -> str:
        return f"kubescaler.local/rootfs-{self.name}:{self.key.rsplit('-', 1)[1]}"


ROOTFS = {
    fs.name: fs
    for fs in (
        Rootfs("minbase", ("ca-certificates",)),
        # stand-in for python:3.11-slim-bookworm (Debian's 3.11, with `python` and pip)
        Rootfs(
            "python",
            ("ca-certificates", "python3", "python3-pip", "python3-venv", "python-is-python3"),
            remove=("usr/lib/python3.11/EXTERNALLY-MANAGED",),
        ),
        Rootfs("redis", ("redis-server",)),
        Rootfs("cassandra", ("openjdk-17-jre-headless", "procps")),
    )
}


@dataclass
class Image:
    """One image: a build context made by ``context(dir)``, a Containerfile, a reference."""

    ref: str
    containerfile: str
    context: Callable[[Path], None] = lambda _: None
    rootfs: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # a Containerfile of the project, used as is
    #: False for the base images of a build, which no pod runs
    load: bool = True


class Images:
    """Builds images with podman and loads them into containerd."""

    def __init__(self, lay: Layout, progress: Progress) -> None:
        self.lay = lay
        self.progress = progress
        self.dir = lay.cache / "images"
        self.conf = lay.cache / "containers.conf"

    # ---- podman ----

    def podman_env(self) -> dict[str, str]:
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        if not self.conf.is_file() or self.conf.read_text() != CONTAINERS_CONF:
            self.conf.write_text(CONTAINERS_CONF)
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def podman(self, *args: str, what: str, timeout: float = 1800) -> str:
        return run(
            ["podman", *args], what, self.progress, env=self.podman_env(), timeout=timeout
        ).strip()

    def image_id(self, ref: str) -> str | None:
        try:
            return self.podman(
                "image", "inspect", "--format", "{{.Id}}", ref, what="podman inspect"
            )
        except ClusterError:
            return None

    # ---- root filesystems ----

    def ensure_rootfs(self, fs: Rootfs) -> str:
        """``fs`` as a podman image (made with mmdebstrap the first time); its reference."""
        if self.image_id(fs.ref):
            return fs.ref
        tar = self.dir / f"{fs.key}.tar"
        if not tar.is_file():
            self.progress.say(f"making the {fs.name} root filesystem from Debian packages")
            self.dir.mkdir(parents=True, exist_ok=True)
            # a name of its own, renamed into place when whole: never a half-written tar
            partial = Path(tempfile.mktemp(prefix=f".{fs.key}-", suffix=".tar", dir=self.dir))
            argv = [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(fs.packages)}",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                # update-alternatives (Java's) links man pages into this folder; it must exist
                '--setup-hook=mkdir -p "$1/usr/share/man/man1"',
                "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*",
            ]
            argv += [f"--customize-hook=rm -f $1/{path}" for path in fs.remove]
            argv += ["--format=tar", DEBIAN_SUITE, str(partial)]
            # the machine's own Debian sources (mirror and security updates), when it has them
            sources = Path("/etc/apt/sources.list.d/debian.sources")
            if sources.is_file():
                argv.append(str(sources))
            try:
                run(argv, f"mmdebstrap {fs.name}", self.progress, timeout=1800)
                partial.rename(tar)
            finally:
                partial.unlink(missing_ok=True)
        self.podman(
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "CMD /bin/sh",
            str(tar),
            fs.ref,
            what=f"podman import {fs.name}",
        )
        return fs.ref

    # ---- images ----

    def build(self, image: Image) -> str:
        """Build ``image`` (podman's layer cache makes an unchanged one instant); its ID."""
        for name in image.rootfs:
            self.ensure_rootfs(ROOTFS[name])
        with tempfile.TemporaryDirectory(prefix="kubescaler-image-") as tmp:
            ctx = Path(tmp)
            if image.file is None:
                (ctx / "Containerfile").write_text(image.containerfile)
                image.context(ctx)
                context, containerfile = ctx, ctx / "Containerfile"
            else:
                context, containerfile = ROOT, image.file
            args = ["build", "--pull=never", "--network=host", "--layers", "-t", image.ref]
            args += ["-f", str(containerfile)]
            for key, value in image.build_args.items():
                args += ["--build-arg", f"{key}={value}"]
            if HOST_CA_BUNDLE.is_file():
                # registries are reached through this machine's CA bundle; mounted for the
                # build's RUN steps only, never baked into the image
                args += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
            self.progress.say(f"building image {image.ref}")
            self.podman(*args, str(context), what=f"podman build {image.ref}")
        found = self.image_id(image.ref)
        if found is None:
            raise ClusterError(f"podman built {image.ref} but cannot find it")
        return found

    def load(self, built: dict[str, str], stores: list[Store]) -> list[str]:
        """Import every image of ``built`` (reference -> podman ID) into each containerd store
        that does not hold that ID yet, saving each image once; the references imported."""
        loaded = []
        for ref, image_id in built.items():
            behind = [s for s in stores if not s.holds(ref, image_id)]
            if not behind:
                continue
            self.progress.say(f"loading {ref} into {', '.join(s.name for s in behind)}")
            archive = self.dir / "archive.tar"
            archive.unlink(missing_ok=True)
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                self.podman(
                    "save", "--format", "docker-archive", "-o", str(archive), ref,
                    what="podman save",
                )  # fmt: skip
                for store in behind:
                    run(
                        [*store.ctr, "images", "import", "--no-unpack=false", str(archive)],
                        f"ctr import {ref}",
                        self.progress,
                    )
                    store.note(ref, image_id)
            finally:
                archive.unlink(missing_ok=True)
            loaded.append(ref)
        return loaded


@dataclass(frozen=True)
class Store:
    """One node's containerd image store, and the record of what was imported into it."""

    name: str
    ctr: list[str]
    record: Path

    def _imported(self) -> dict[str, str]:
        return json.loads(self.record.read_text()) if self.record.is_file() else {}

    def holds(self, ref: str, image_id: str) -> bool:
        if self._imported().get(ref) != image_id:
            return False
        return _normal(ref) in run([*self.ctr, "images", "ls", "-q"], "ctr images ls").split()

    def note(self, ref: str, image_id: str) -> None:
        imported = self._imported()
        imported[ref] = image_id
        self.record.write_text(json.dumps(imported, indent=2, sort_keys=True) + "\n")


def _normal(ref: str) -> str:
    """containerd's full name of ``ref`` (``redis:7`` -> ``docker.io/library/redis:7``)."""
    name = ref
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name
