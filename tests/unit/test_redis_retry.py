"""The lock-keeper's broker retries a failing read for a time budget (a failover's length), the
request path's clients for two quick tries only."""

from __future__ import annotations

import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kubescaler.adapters.redis_client import (
    RETRIES,
    WORKER_RIDE_OUT_S,
    Patient,
    retry_options,
    worker_retry_options,
)


class Flaky:
    """Fails with ``error`` ``times`` times, then answers; counts the calls and the fails."""

    def __init__(self, times: int, error: Exception) -> None:
        self.left, self.error, self.calls, self.failed = times, error, 0, 0

    async def do(self) -> str:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error
        return "ok"

    async def fail(self, _: Exception) -> None:
        self.failed += 1


async def test_patient_retries_past_any_count_within_its_budget() -> None:
    flaky = Flaky(40, RedisConnectionError("gone"))
    retry = Patient(5.0, (RedisConnectionError,), cap_s=0.001)
    assert await retry.call_with_retry(flaky.do, flaky.fail) == "ok"
    assert (flaky.calls, flaky.failed) == (41, 40)


async def test_patient_gives_up_after_its_budget_with_the_last_error() -> None:
    flaky = Flaky(10**6, RedisTimeoutError("stalled"))
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        await Patient(0.3, (RedisTimeoutError,)).call_with_retry(flaky.do, flaky.fail)
    assert 0.3 <= time.monotonic() - started < 0.6


async def test_patient_does_not_retry_other_errors() -> None:
    flaky = Flaky(1, ResponseError("WRONGTYPE"))
    with pytest.raises(ResponseError):
        await Patient(5.0, (RedisConnectionError,)).call_with_retry(flaky.do, flaky.fail)
    assert flaky.calls == 1


def test_the_broker_rides_out_a_failover_and_the_request_path_fails_fast() -> None:
    worker = worker_retry_options(2.0)["retry"]
    assert isinstance(worker, Patient)
    assert worker.budget_s == WORKER_RIDE_OUT_S > 10  # production's failover: 6-8 s
    request = retry_options(2.0)
    assert request["retry"].get_retries() == RETRIES == 2
    assert request["retry_on_error"] == [RedisConnectionError]  # never a timeout
