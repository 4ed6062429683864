"""Cassandra's jars (cassandra-all and its runtime dependencies, fetched with Maven) and the
Java that runs them: Debian's OpenJDK 17, or a 17 or 11 on PATH (Cassandra 5.0's only JDKs).

A module of its own only for size; :mod:`kubescaler_dev.cassandra` re-exports it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from kubescaler_dev.cluster.versions import CASSANDRA
from kubescaler_dev.proc import StartError

CASSANDRA_VERSION = CASSANDRA
CASSANDRA_JAR = f"cassandra-all-{CASSANDRA_VERSION}.jar"
SUPPORTED_JAVA = (17, 11)
DEBIAN_JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kubescaler</groupId><artifactId>cassandra-local</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId>
      <version>{CASSANDRA_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()[-lines:])


def ensure_jars(lib_dir: Path) -> None:
    """Fetch cassandra-all and its runtime dependencies into ``lib_dir`` with Maven, once.

    The jars land in a sibling temporary folder that is renamed into place only when Maven
    succeeded, so an interrupted download is never taken for a complete one.
    """
    if (lib_dir / CASSANDRA_JAR).is_file():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StartError(
            "mvn not found: run `./dev setup` (it installs Debian's maven) to fetch "
            f"Cassandra {CASSANDRA_VERSION}'s jars into {lib_dir}"
        )
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{lib_dir.name}-", dir=lib_dir.parent))
    try:
        (staging / "pom.xml").write_text(_POM)
        jars = staging / "lib"
        try:
            done = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-Dstyle.color=never",
                    "-f",
                    str(staging / "pom.xml"),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={jars}",
                ],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StartError(
                f"mvn did not finish fetching Cassandra's jars in {exc.timeout:.0f}s"
            ) from exc
        if done.returncode != 0 or not (jars / CASSANDRA_JAR).is_file():
            raise StartError(
                f"mvn failed ({done.returncode}) fetching Cassandra "
                f"{CASSANDRA_VERSION}'s jars:\n{_tail(done.stdout + done.stderr)}"
            )
        if lib_dir.exists():  # a folder without the marker jar is incomplete: replace it
            shutil.rmtree(lib_dir)
        try:
            jars.rename(lib_dir)
        except OSError:
            if not (lib_dir / CASSANDRA_JAR).is_file():  # not a concurrent fetch that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def java_major(java: str) -> int | None:
    """The feature release of ``java`` (17 for 17.0.15), or None if it cannot be run."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """Debian's OpenJDK 17, else a ``java`` on PATH that is 17 or 11 (Cassandra 5.0's only JDKs)."""
    if DEBIAN_JAVA_17.is_file():
        return str(DEBIAN_JAVA_17)
    other_arch = next(iter(sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*/bin/java"))), None)
    if other_arch is not None:
        return str(other_arch)
    on_path = shutil.which("java")
    if on_path is not None and java_major(on_path) in SUPPORTED_JAVA:
        return on_path
    seen = f"`{on_path}` is Java {java_major(on_path)}" if on_path else "no java on PATH"
    raise StartError(
        f"Cassandra {CASSANDRA_VERSION} needs Java 17 or 11 and {seen}: "
        "run `./dev setup` (it installs Debian's openjdk-17-jre-headless)"
    )


__all__ = ["CASSANDRA_JAR", "CASSANDRA_VERSION", "ensure_jars", "find_java", "java_major"]
