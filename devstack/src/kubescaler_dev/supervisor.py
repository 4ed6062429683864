"""`./dev up` keeps its processes running the way Kubernetes keeps a pod's containers.

A process that exits, whatever the reason (a crash, SIGKILL, a stream instance that finished
draining after SIGTERM), is started again with the same argv, so on the same port, after a
back-off that doubles with each restart that did not lead to a stable run (1 s, 2 s, 4 s, ...
up to 30 s; Kubernetes' CrashLoopBackOff does the same from 10 s to 5 min). A restarted process
counts as back once its readiness check passes. One that keeps exiting, or never gets ready,
before it is back is reported once with the end of its log, and retried at the capped back-off
while the rest keeps running. Every step is one line of ``up``'s output.

The supervisor is a small state machine stepped by :meth:`Supervisor.tick`, with the clock
passed in, so its rules are tested without processes.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


class Child(Protocol):
    """What the supervisor needs of a process (devstack's Proc has it)."""

    name: str

    @property
    def running(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def kill(self) -> None: ...

    def tail(self, lines: int = 20) -> str: ...


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``first_s`` doubling to ``cap_s``; a run of ``stable_s`` resets them."""

    first_s: float = 1.0
    cap_s: float = 30.0
    stable_s: float = 60.0

    def delay(self, restarts: int) -> float:
        """The wait before restart number ``restarts`` (1 = the first) since a stable run."""
        return min(self.cap_s, self.first_s * 2.0 ** max(0, restarts - 1))


#: Start-up failures in a row after which a process is reported as failing at start-up.
FAILING_AFTER = 3


def exit_status(returncode: int | None) -> str:
    """``exit status 1``, ``signal SIGKILL``: how a process ended, in words.

    A stream instance that finished draining after SIGTERM ends with ``signal SIGTERM``:
    uvicorn re-raises the signal it handled once it has shut down.
    """
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


State = Literal["running", "waiting", "starting"]


class Supervised:
    """One process under supervision: running, waiting out its back-off, or starting."""

    def __init__(
        self,
        proc: Child,
        ready: Callable[[], bool],
        ready_timeout_s: float,
        now: float,
        backoff: Backoff,
        say: Callable[[str], None],
    ) -> None:
        self.proc = proc
        self.ready = ready
        self.ready_timeout_s = ready_timeout_s
        self.backoff = backoff
        self.say = say
        self.state: State = "running"
        self.since = now  # running/starting: when the process started; waiting: until when
        self.restarts = 0  # restarts since the last stable run
        self.failed_starts = 0  # start-ups in a row that ended before the process was ready
        self.reported_failing = False

    @property
    def name(self) -> str:
        return self.proc.name

    def step(self, now: float) -> None:
        if self.state == "running":
            if not self.proc.running:
                self._exited(now)
        elif self.state == "waiting":
            if now >= self.since:
                self.proc.start()
                self.state, self.since = "starting", now
        elif not self.proc.running:
            self._failed_start(now, exit_status(self.proc.returncode))
        elif self._is_ready():
            self.say(
                f"{self.name} is back (pid {self.proc.pid}), "
                f"ready {now - self.since:.1f} s after its restart"
            )
            self.state = "running"  # since its start: a run counts from there, as at first
            self.failed_starts, self.reported_failing = 0, False
        elif now - self.since > self.ready_timeout_s:
            self.proc.kill()
            self._failed_start(now, f"not ready after {self.ready_timeout_s:.0f} s, killed")

    def _is_ready(self) -> bool:
        with contextlib.suppress(Exception):
            return self.ready()
        return False

    def _exited(self, now: float) -> None:
        ran = now - self.since
        if ran >= self.backoff.stable_s:
            self.restarts = 0
        self.restarts += 1
        delay = self.backoff.delay(self.restarts)
        self.say(
            f"{self.name} exited ({exit_status(self.proc.returncode)}) after {ran:.1f} s; "
            f"restarting in {delay:.0f} s (restart {self.restarts})"
        )
        self.state, self.since = "waiting", now + delay

    def _failed_start(self, now: float, how: str) -> None:
        self.failed_starts += 1
        self.restarts += 1
        delay = self.backoff.delay(self.restarts)
        if self.failed_starts >= FAILING_AFTER and not self.reported_failing:
            self.reported_failing = True
            tail = "\n".join(f"    {line}" for line in self.proc.tail(15).splitlines())
            self.say(
                f"{self.name} keeps failing at start-up ({self.failed_starts} tries in a row, "
                f"last: {how}); the rest keeps running, and it is retried every "
                f"{self.backoff.cap_s:.0f} s at most. The end of its log:\n{tail}"
            )
        self.say(
            f"{self.name} failed to start ({how}); retrying in {delay:.0f} s "
            f"(restart {self.restarts})"
        )
        self.state, self.since = "waiting", now + delay


class Supervisor:
    """Every supervised process, stepped together."""

    def __init__(self, children: Sequence[Supervised]) -> None:
        self.children = list(children)

    def tick(self, now: float) -> None:
        for child in self.children:
            child.step(now)
