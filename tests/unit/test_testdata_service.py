"""Test data through base is all or nothing: the rollback of a run that fails part-way."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from kubescaler.domain.errors import DependencyUnavailable
from kubescaler.domain.models import Bulk, BulkIds, Counts, TestDataRequest
from kubescaler.services import testdata

REQUEST = TestDataRequest(users=6000, profiles=10, users_per_profile=1, shared_users=0)


@dataclass
class FakeBase:
    """Fails the ``fail_at``-th bulk insert (1-based), and the delete when ``delete_fails``."""

    fail_at: int = 0
    delete_fails: bool = False
    inserted: list[Bulk] = field(default_factory=list)
    deleted: list[BulkIds] = field(default_factory=list)

    async def bulk_insert(self, bulk: Bulk, timeout: float) -> Counts:
        if len(self.inserted) + 1 == self.fail_at:
            raise DependencyUnavailable("base", "cassandra down")
        self.inserted.append(bulk)
        return Counts(users=len(bulk.users), profiles=len(bulk.profiles))

    async def bulk_delete(self, ids: BulkIds, timeout: float) -> None:
        if self.delete_fails:
            raise DependencyUnavailable("base", "still down")
        self.deleted.append(ids)

    async def drop_all(self, timeout: float) -> None:
        raise AssertionError("not used")


async def test_a_complete_run_writes_every_chunk_and_deletes_nothing() -> None:
    """6,000 users + 10 profiles: two user chunks and a profile chunk, all written."""
    base = FakeBase()
    summary = await testdata.create(base, REQUEST, random.Random(1))
    assert (summary.users, summary.profiles) == (6000, 10)
    assert sum(len(b.users) for b in base.inserted) == 6000
    assert base.deleted == []


async def test_a_failing_chunk_removes_every_row_of_the_run_and_says_so() -> None:
    """The second chunk fails: the 503 says the rows were removed, and the delete names every
    user and profile of the run, written or not."""
    base = FakeBase(fail_at=2)
    with pytest.raises(DependencyUnavailable) as caught:
        await testdata.create(base, REQUEST, random.Random(1))
    assert caught.value.message.endswith("the rows of this run were removed again")
    (ids,) = base.deleted
    assert (len(ids.users), len(ids.profiles)) == (6000, 10)


async def test_a_failing_rollback_says_rows_may_remain_and_how_to_clear_them() -> None:
    """Insert and rollback both fail: the error says some rows may remain and names the fix."""
    base = FakeBase(fail_at=1, delete_fails=True)
    with pytest.raises(DependencyUnavailable) as caught:
        await testdata.create(base, REQUEST, random.Random(1))
    assert "some may remain: DELETE /main/testdata clears them" in caught.value.message
