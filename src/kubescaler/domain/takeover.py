"""Keepers cover each other: when a lock-keeper counts as gone, and what a survivor does.

Every keeper renews a heartbeat key (PX ``heartbeat_ttl_ms``) every ``heartbeat_interval_ms``
over a connection of its own, and registers that connection's client id. Every interval a
survivor looks at the group's consumers and the heartbeats, and asks this module what each
means (:func:`verdict`) and what to do (:func:`plan`). The I/O is ``adapters/keepers.py``'s;
the loop is ``services/takeover.py``'s. Nothing here reads a clock: every time is an argument.

The verdicts:

- **alive**: its heartbeat is live.
- **unknown**: it never registered (a tool, a keeper of an older version): left to the
  idle-time claim (XAUTOCLAIM after ``claim_idle_ms``), as before heartbeats.
- **silent**: its heartbeat lapsed, but its heartbeat connection is still open: the process
  may be alive and stalled (paused, starved of CPU). Its pending commands are taken over at
  once, and the claims it holds are respected: a command it is applying is ``Busy`` for the
  taker and waits for it (its commit acknowledges the entry wherever it is pending).
- **dead**: its heartbeat lapsed and its heartbeat connection is closed: the process is gone
  (the kernel of a killed process closes its sockets). Its pending commands are taken over
  and the in-flight claims on them released first, so they are applied at once.

Only a keeper whose own renewals ran without a gap for a whole TTL judges others
(:meth:`Pulse.healthy`): a stall of the stream Redis lapses every heartbeat at once, and the
live keepers renew theirs within an interval of its end.

A keeper whose heartbeat connection was replaced while a batch was in flight, after a silence
long enough that its heartbeat may have lapsed, does not commit that batch
(:func:`may_commit`): a survivor may have found it dead and released its claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

Verdict = Literal["alive", "unknown", "silent", "dead"]


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    """Another keeper as one look at the group saw it.

    ``pending``: commands it read and has not acknowledged; ``registered``: it has heartbeated
    (the registry names its heartbeat connection); ``beating``: its heartbeat key is live;
    ``connected``: its registered heartbeat connection is still open on the stream Redis.
    """

    name: str
    pending: int = 0
    registered: bool = False
    beating: bool = False
    connected: bool = False


def verdict(peer: Peer) -> Verdict:
    """What ``peer`` is, by its heartbeat and its heartbeat connection (module docstring)."""
    if not peer.registered:
        return "unknown"
    if peer.beating:
        return "alive"
    return "silent" if peer.connected else "dead"


def needs_connection_check(peer: Peer) -> bool:
    """Whether the peer's connection must be looked up to tell silent from dead."""
    return peer.registered and not peer.beating


class Take(msgspec.Struct, frozen=True):
    """Move ``victim``'s pending commands to this keeper and apply them; ``release``: free the
    in-flight claims on them first (the victim is dead)."""

    victim: str
    release: bool


class Retire(msgspec.Struct, frozen=True):
    """``victim`` is dead and holds nothing: delete it from the group and the registry."""

    victim: str


Step = Take | Retire


def plan(me: str, peers: Sequence[Peer], healthy: bool) -> list[Step]:
    """What this keeper does about the others in one look; nothing while it is not healthy."""
    if not healthy:
        return []
    steps: list[Step] = []
    for peer in peers:
        if peer.name == me:
            continue
        seen = verdict(peer)
        if seen in ("silent", "dead") and peer.pending > 0:
            steps.append(Take(peer.name, release=seen == "dead"))
        elif seen == "dead":
            steps.append(Retire(peer.name))
    return steps


def inherits(previous_connected: bool, previous_beating: bool, pending: int) -> bool:
    """Whether a keeper starting under a name that was registered before takes over what that
    name left pending, releasing its claims: the earlier process (a restarted container keeps
    its pod's name) is gone, its connection closed and its heartbeat lapsed."""
    return pending > 0 and not previous_connected and not previous_beating


@dataclass
class Pulse:
    """This keeper's own renewals (monotonic ms): whether it may judge others, and whether a
    batch it claimed may still be committed.

    ``connection`` counts heartbeat connections (one more each time the last one failed);
    ``silences`` counts stretches of half a TTL or more without a renewal that took.
    """

    interval_ms: int
    ttl_ms: int
    connection: int = 0
    silences: int = 0
    since: float | None = None  # when the current unbroken run of renewals began (done time)
    last_done: float | None = None  # the last renewal that took: when its reply came
    last_sent: float | None = None  # ... and when it was sent

    @property
    def max_gap_ms(self) -> float:
        """Longest time between two renewals that still counts as unbroken: a stall that
        could lapse a live peer's heartbeat (renewed at most an interval before the stall
        began) is longer, and shows as a gap in this keeper's own renewals too."""
        return self.ttl_ms - self.interval_ms

    def renewed(self, sent_ms: float, done_ms: float) -> None:
        """A renewal sent at ``sent_ms`` took, its reply at ``done_ms``."""
        if self.last_sent is not None and done_ms - self.last_sent >= self.ttl_ms / 2:
            self.silences += 1  # the key may have lapsed between the two (Redis ran each
            # somewhere between its send and its reply)
        if self.last_done is None or done_ms - self.last_done > self.max_gap_ms:
            self.since = done_ms
        self.last_done, self.last_sent = done_ms, sent_ms

    def failed(self) -> None:
        """A renewal failed: its connection is replaced, and the run of renewals is broken."""
        self.connection += 1
        self.last_done = None

    def healthy(self, now_ms: float) -> bool:
        """Renewals ran without a gap for a whole TTL up to now: the stream Redis answered
        throughout, so a live peer's heartbeat would not have lapsed."""
        if self.last_done is None or self.since is None:
            return False
        return now_ms - self.last_done <= self.max_gap_ms and now_ms - self.since >= self.ttl_ms

    def mark(self) -> Mark:
        """Where the pulse stands, taken when a batch is claimed."""
        return Mark(self.connection, self.silences)

    def quiet_ms(self, now_ms: float) -> float:
        """Time since the last renewal that took was sent (infinite before the first)."""
        return float("inf") if self.last_sent is None else now_ms - self.last_sent


class Mark(msgspec.Struct, frozen=True):
    connection: int
    silences: int


def may_commit(at_claim: Mark, pulse: Pulse, now_ms: float) -> bool:
    """Whether a batch claimed at ``at_claim`` may be committed now.

    A survivor releases a keeper's claims only when that keeper's heartbeat lapsed *and* its
    registered heartbeat connection is closed. A keeper whose heartbeat connection stayed the
    same has not been found dead (that connection was open throughout); one whose connection
    was replaced has not either, unless it also went half a TTL without a renewal.
    """
    if pulse.connection == at_claim.connection:
        return True
    silent = pulse.silences != at_claim.silences or pulse.quiet_ms(now_ms) >= pulse.ttl_ms / 2
    return not silent
