"""kubectl with the cluster's admin kubeconfig, and what a user needs when pods do not come up."""

from __future__ import annotations

import contextlib
import json
import subprocess

from kubescaler_dev.cluster.layout import Layout
from kubescaler_dev.cluster.progress import Progress, run


class Kubectl:
    def __init__(self, lay: Layout, progress: Progress) -> None:
        self.argv = [str(lay.bin("kubernetes", "kubectl")), f"--kubeconfig={lay.kubeconfig}"]
        self.progress = progress

    def __call__(self, *args: str, what: str = "", timeout: float = 300) -> str:
        return run(
            [*self.argv, *args],
            what or f"kubectl {' '.join(args[:3])}",
            self.progress,
            timeout=timeout,
        )

    def apply(self, folder: str, what: str) -> str:
        return self("apply", "--server-side", "--force-conflicts", "-k", folder, what=what)

    def rollout(self, namespace: str, workload: str, timeout: float = 180) -> str:
        return self(
            "-n", namespace, "rollout", "status", workload, f"--timeout={int(timeout)}s",
            what=f"{workload.rsplit('/', maxsplit=1)[-1]} to be ready", timeout=timeout + 30,
        )  # fmt: skip

    def diagnose(self, namespace: str) -> str:
        """The pods' state, the latest warnings, and the last log lines of each container that
        is not ready."""

        def get(*args: str) -> str:
            done = subprocess.run(
                [*self.argv, "-n", namespace, *args],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            return done.stdout or done.stderr

        warnings = get("get", "events", "--field-selector=type=Warning", "--sort-by=.lastTimestamp")
        out = [get("get", "pods", "-o", "wide"), *warnings.splitlines()[-10:]]
        with contextlib.suppress(ValueError):
            for pod in json.loads(get("get", "pods", "-o", "json"))["items"]:
                for status in pod["status"].get("containerStatuses", []):
                    if not status.get("ready"):
                        name = pod["metadata"]["name"]
                        logs = get("logs", "--tail=15", name, "-c", status["name"])
                        out.append(f"--- {name}/{status['name']} (not ready) ---\n{logs}")
        return "\n".join(out)
