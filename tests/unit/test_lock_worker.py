"""The lock-keeper's subscribers under FastStream's in-memory TestRedisBroker, with fake ports."""

from __future__ import annotations

import msgspec
import prometheus_client
import pytest
from faststream.redis import TestRedisBroker
from lockfakes import Clock, FakeLedger, FakeMasters, command

from kubescaler.entrypoints.lock_keeper import Worker
from kubescaler.services.lockkeeping import LockKeeping
from kubescaler.settings import LockSettings, Settings

SETTINGS = Settings(instance="w-test", lock=LockSettings(command_stream="t:worker:cmd"))


@pytest.fixture
def worker() -> tuple[Worker, FakeLedger, Clock]:
    clock = Clock()
    ledger = FakeLedger(clock)
    worker = Worker(SETTINGS)
    worker.keeping = LockKeeping(FakeMasters(clock), ledger, clock)
    return worker, ledger, clock


def commands_total(action: str, result: str) -> float:
    """kubescaler_lock_commands_total over the paths a first delivery can take."""
    return sum(
        prometheus_client.REGISTRY.get_sample_value(
            "kubescaler_lock_commands_total", {"action": action, "result": result, "path": path}
        )
        or 0.0
        for path in ("fresh", "claimed")
    )


async def test_a_published_command_is_applied_once_answered_and_counted(
    worker: tuple[Worker, FakeLedger, Clock],
) -> None:
    """A LockCommand published on the command stream reaches a subscriber of the group, is
    applied once through the use case, answered on its reply channel and counted. (The
    in-memory broker may also hand it to the claiming subscriber, as Redis would after the
    idle time: that delivery is answered from the store, not applied again.)"""
    keeper, ledger, clock = worker
    before = commands_total("acquire", "granted")
    cmd = command("acquire", "alice", clock=clock, reply_to="reply:w")
    async with TestRedisBroker(keeper.broker) as broker:
        await broker.publish(msgspec.json.encode(cmd), stream=SETTINGS.lock.command_stream)
    assert [out.request_id for out in ledger.log] == [cmd.request_id]
    answers = ledger.answers()
    assert {(out.request_id, out.result) for out in answers} == {(cmd.request_id, "granted")}
    assert {channel for channel, _ in ledger.published} == {"reply:w"}
    assert commands_total("acquire", "granted") == before + 1


async def test_an_unreadable_entry_is_dropped_and_counted(
    worker: tuple[Worker, FakeLedger, Clock],
) -> None:
    """A stream entry that is no LockCommand: nothing applied, nothing answered, counted."""
    keeper, ledger, _ = worker
    before = commands_total("unknown", "unreadable")
    async with TestRedisBroker(keeper.broker) as broker:
        await broker.publish(b'{"action": "steal"}', stream=SETTINGS.lock.command_stream)
    assert ledger.log == []
    assert ledger.published == []
    assert commands_total("unknown", "unreadable") > before
