"""Create and drop random test data through base, leaving nothing half-written."""

from __future__ import annotations

import logging
import random
import time
from typing import Protocol

from kubescaler.domain.errors import KubescalerError
from kubescaler.domain.models import Bulk, BulkIds, Counts, TestDataRequest, TestDataSummary
from kubescaler.domain.testdata import chunks, generate

log = logging.getLogger(__name__)

#: Ids per bulk body (a user is one, a profile one plus its users): about 200 KB of JSON, well
#: inside base's default body limit.
CHUNK_IDS = 5000
WRITE_TIMEOUT_S = 60.0


class Rows(Protocol):
    """Where test data is written (base, through ``adapters.base_client.BaseClient``)."""

    async def bulk_insert(self, bulk: Bulk, timeout: float) -> Counts: ...

    async def bulk_delete(self, ids: BulkIds, timeout: float) -> None: ...

    async def drop_all(self, timeout: float) -> None: ...


async def create(
    base: Rows, req: TestDataRequest, rng: random.Random | None = None
) -> TestDataSummary:
    """Write the data in chunks; if any chunk fails, delete every row of this run, then raise."""
    started = time.perf_counter()
    bulk = generate(req, rng)
    try:
        for chunk in chunks(bulk, CHUNK_IDS):
            await base.bulk_insert(chunk, timeout=WRITE_TIMEOUT_S)
    except KubescalerError as exc:
        ids = BulkIds(users=[u.id for u in bulk.users], profiles=[p.id for p in bulk.profiles])
        try:
            await base.bulk_delete(ids, timeout=WRITE_TIMEOUT_S)
            exc.message += "; the rows of this run were removed again"
        except KubescalerError as undo:
            log.error("test data rollback failed: %s", undo.message)
            exc.message += (
                "; removing this run's rows failed too, some may remain: "
                "DELETE /main/testdata clears them"
            )
        raise
    return TestDataSummary(
        users=len(bulk.users),
        profiles=len(bulk.profiles),
        suggested=req.shared_users,
        seconds=round(time.perf_counter() - started, 3),
    )


async def drop(base: Rows) -> None:
    await base.drop_all(timeout=WRITE_TIMEOUT_S)
