"""`./dev up`'s supervision rules, stepped with a fake clock and fake processes."""

from __future__ import annotations

import signal

from kubescaler_dev.supervisor import Backoff, Supervised, Supervisor, exit_status


class FakeProc:
    """A process that exits when told to; ``fail_starts`` start-ups exit before being ready."""

    def __init__(self, name: str = "stream-0") -> None:
        self.name = name
        self.alive = True
        self.code: int | None = None
        self.starts = 0
        self.next_pid = 100
        self.pid: int | None = self.next_pid
        self.fail_starts = 0
        self.ready_now = True

    @property
    def running(self) -> bool:
        return self.alive

    @property
    def returncode(self) -> int | None:
        return None if self.alive else self.code

    def start(self) -> None:
        self.starts += 1
        self.next_pid += 1
        self.pid = self.next_pid
        self.alive, self.code = True, None
        if self.fail_starts > 0:  # exits at once, before it is ready
            self.fail_starts -= 1
            self.exit(1)

    def exit(self, code: int) -> None:
        self.alive, self.code = False, code

    def kill(self) -> None:
        self.exit(-signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        return "OSError: [Errno 98] address already in use"

    def ready(self) -> bool:
        return self.ready_now


def supervised(proc: FakeProc, lines: list[str], timeout: float = 60) -> Supervised:
    return Supervised(proc, proc.ready, timeout, 0.0, Backoff(1, 30, 60), lines.append)


def test_an_exited_process_is_started_again_after_the_back_off_and_reported_back() -> None:
    """SIGKILL: `exited (signal SIGKILL)`, a restart 1 s later, then `is back` with its pid."""
    proc, lines = FakeProc(), []
    child = supervised(proc, lines)
    proc.kill()
    child.step(10.0)
    assert lines == ["stream-0 exited (signal SIGKILL) after 10.0 s; restarting in 1 s (restart 1)"]
    child.step(10.5)
    assert proc.starts == 0  # still waiting out the back-off
    child.step(11.0)
    child.step(11.2)
    assert proc.starts == 1
    assert lines[-1] == "stream-0 is back (pid 101), ready 0.2 s after its restart"


def test_the_back_off_doubles_and_resets_after_a_stable_run() -> None:
    """Quick exits wait 1, 2, 4 s; after a run of 60 s the next restart waits 1 s again."""
    proc, lines = FakeProc(), []
    child = supervised(proc, lines)
    now = 0.0
    waits = []
    for ran in (5.0, 5.0, 5.0, 61.0):
        now += ran
        proc.exit(0)
        child.step(now)
        waits.append(child.since - now)
        now = child.since
        child.step(now)  # starts
        child.step(now)  # ready
        assert child.state == "running"
    assert waits == [1, 2, 4, 1]


def test_a_process_failing_at_start_up_is_reported_once_and_retried() -> None:
    """Three start-ups that exit before ready: one clear report with its log, retries go on."""
    proc, lines = FakeProc("stream-1"), []
    child = supervised(proc, lines)
    proc.fail_starts = 5
    proc.exit(0)
    now = 1.0
    child.step(now)
    for _ in range(5):
        now = child.since
        child.step(now)  # start
        child.step(now)  # exits before ready
    reports = [line for line in lines if "keeps failing at start-up" in line]
    assert len(reports) == 1
    assert "3 tries in a row, last: exit status 1" in reports[0]
    assert "address already in use" in reports[0]
    assert "the rest keeps running" in reports[0]
    assert proc.starts == 5
    now = child.since
    child.step(now)
    child.step(now + 0.5)
    assert lines[-1].startswith("stream-1 is back (pid")
    assert child.failed_starts == 0


def test_a_process_never_ready_is_killed_after_its_timeout() -> None:
    proc, lines = FakeProc(), []
    child = supervised(proc, lines, timeout=5)
    proc.ready_now = False
    proc.exit(1)
    child.step(0.0)
    child.step(1.0)  # started
    child.step(6.5)
    assert not proc.running
    assert "failed to start (not ready after 5 s, killed)" in lines[-1]


def test_supervisor_steps_every_child() -> None:
    procs, lines = [FakeProc("a"), FakeProc("b")], []
    sup = Supervisor([supervised(p, lines) for p in procs])
    for p in procs:
        p.exit(0)
    sup.tick(1.0)
    assert [line.split()[0] for line in lines] == ["a", "b"]


def test_exit_status_in_words() -> None:
    assert exit_status(0) == "exit status 0"
    assert exit_status(-9) == "signal SIGKILL"
    assert exit_status(-15) == "signal SIGTERM"
    assert exit_status(None) == "still running"
