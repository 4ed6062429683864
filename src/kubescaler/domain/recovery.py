"""When a Redlock master that lost its data may vote again (quorum fencing's rule): pure.

``adapters/redlock_recovery.py`` reads each master's state and does what :func:`recovery`
says; docs/locks.md ("Fencing tokens") argues why this keeps locks exclusive and tokens rising.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from kubescaler.domain.lockrules import quorum


class MasterState(msgspec.Struct, frozen=True):
    """What one Redlock master says of itself: ``ready`` (it votes), or since when (its own
    clock, ms; 0: not yet noted) it has been known to have come back empty, and its clock."""

    ready: bool
    since_ms: int = 0
    now_ms: int = 0


Recovery = Literal["bootstrap", "note", "wait", "catch up", "ready"]


def recovery(states: Sequence[MasterState | None], ttl_ms: int) -> list[Recovery]:
    """What to do about each master (None: it did not answer) so that one that lost its data
    votes again only when that is safe:

    - ``bootstrap``: no master that answered is ready and a quorum answered - a new
      deployment (or one from before quorum fencing): they start together, seeded with the
      stream Redis's counters, at once (no lock can be held on masters that never voted).
    - ``note``: it came back empty: note the time (it abstains from every vote meanwhile).
    - ``catch up``: a lock's lifetime has passed since then - every lock it might have held
      has lapsed or been refreshed on the others - and every other master answers and is
      ready: copy their counters (the highest of each pair), then it votes again.
    - ``wait``: not yet; ``ready``: nothing to do.
    """
    answered = [s for s in states if s is not None]
    if len(answered) >= quorum(len(states)) and not any(s.ready for s in answered):
        return ["bootstrap" if s is not None else "wait" for s in states]
    out: list[Recovery] = []
    for i, s in enumerate(states):
        others = [o for j, o in enumerate(states) if j != i]
        if s is None:
            out.append("wait")
        elif s.ready:
            out.append("ready")
        elif not s.since_ms:
            out.append("note")
        elif s.now_ms - s.since_ms >= ttl_ms and all(o is not None and o.ready for o in others):
            out.append("catch up")
        else:
            out.append("wait")
    return out
