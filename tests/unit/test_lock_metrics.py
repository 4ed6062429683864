"""The lock-keeper's metrics: what each path of a batch counts, and the timed steps."""

from __future__ import annotations

import prometheus_client
from lockfakes import Clock, FakeLedger, FakeMasters, command

from kubescaler.domain.locks import Delivery, outcome
from kubescaler.services.lock_metrics import Timed, count
from kubescaler.services.lockkeeping import Handled, LockKeeping


def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_path_of_a_batch_is_counted_under_its_label() -> None:
    """Applied: its result on the reading subscriber's path, and its batch's time; redelivered:
    its result on path ``redelivered``; busy and unreadable: that word as the result."""
    clock = Clock()
    acquire, refresh = command("acquire", "a", clock=clock), command("refresh", "b", clock=clock)
    handled = [
        Handled("applied", acquire, outcome(acquire, "granted", clock())),
        Handled("redelivered", refresh, outcome(refresh, "refreshed", clock())),
        Handled("busy", refresh, None),
        Handled("unreadable", None, None),
    ]
    total = "kubescaler_lock_commands_total"
    keys = [
        (total, {"action": "acquire", "result": "granted", "path": "claimed"}),
        (total, {"action": "refresh", "result": "refreshed", "path": "redelivered"}),
        (total, {"action": "refresh", "result": "busy", "path": "claimed"}),
        (total, {"action": "unknown", "result": "unreadable", "path": "claimed"}),
        ("kubescaler_lock_apply_seconds_count", {"action": "acquire"}),
        ("kubescaler_lock_apply_seconds_count", {"action": "refresh"}),
        ("kubescaler_lock_batch_commands_sum", {}),
    ]
    before = [sample(name, **labels) for name, labels in keys]
    count(handled, "claimed", 0.003)
    after = [sample(name, **labels) for name, labels in keys]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1, 1, 0, 4]


async def test_timed_ports_time_their_steps_through_a_whole_batch() -> None:
    """Wrapped in Timed, the ports the use case calls count one claim, vote, fence and commit
    for an acquire's batch; what is not a step passes through untimed."""
    clock = Clock()
    masters, ledger = FakeMasters(clock), FakeLedger(clock)
    keeping = LockKeeping(
        Timed(masters, "vote", "fence"), Timed(ledger, "claim", "fence", "commit"), clock
    )
    steps = ("claim", "vote", "fence", "commit")
    before = {s: sample("kubescaler_lock_step_seconds_count", step=s) for s in steps}
    await keeping.apply([Delivery(b"1-0", command("acquire", "alice", clock=clock))])
    after = {s: sample("kubescaler_lock_step_seconds_count", step=s) for s in steps}
    assert {s: after[s] - before[s] for s in steps} == dict.fromkeys(steps, 1)
    assert Timed(masters, "vote").tally == masters.tally  # not a step: the port's own
    assert ledger.log[0].result == "granted"
