"""A real lock-keeper process (the same app `kubescaler lock-keeper` runs) whose every vote
first waits ``SLOW_KEEPER_VOTE_S``: most of the time it holds a claimed batch, so a SIGKILL or a
SIGSTOP catches it mid-batch. Settings come from the environment, as for the real process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from kubescaler.domain.lockrules import Round, Tally, Undo, VoteOp
from kubescaler.entrypoints.lock_keeper import Worker, create_app
from kubescaler.entrypoints.serve import serve
from kubescaler.services.lockkeeping import Masters
from kubescaler.settings import load


class SlowVotes:
    def __init__(self, masters: Masters, delay_s: float) -> None:
        self.masters = masters
        self.delay_s = delay_s

    async def vote(self, ops: Sequence[VoteOp]) -> Round:
        await asyncio.sleep(self.delay_s)
        return await self.masters.vote(ops)

    async def fence(self, ops: Sequence[VoteOp]) -> Round:
        return await self.masters.fence(ops)

    async def undo(self, ops: Sequence[Undo]) -> None:
        await self.masters.undo(ops)

    def tally(self, got: Round, i: int) -> Tally:
        return self.masters.tally(got, i)


def main() -> int:
    settings = load()
    worker = Worker(settings)
    worker.keeping.masters = SlowVotes(
        worker.keeping.masters, float(os.environ["SLOW_KEEPER_VOTE_S"])
    )
    return serve(create_app(settings, worker), settings, settings.lock.keeper_port)


if __name__ == "__main__":
    raise SystemExit(main())
