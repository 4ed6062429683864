"""Judging a contended run from what the clients received (pure: no I/O).

Each stream a client opened is one :class:`Stream`: its pair, its session, the fencing token
its ``hello`` carried and the server timestamps (``ts_ms``) of the first and last ``data``
events it read. The rules the system promises, checked here:

- **no overlap**: two streams of one pair held by different sessions never carry data at
  overlapping times (every pod's clock is this machine's, so their timestamps compare);
- **no token reuse**: a pair's token is never granted twice, and a grant's token is higher
  than every grant whose data came before it;
- streams of one session may overlap for a moment (a reconnect supersedes the older stream
  within a moment, by design): counted and timed, not a fault.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubescaler_dev.contention.workload import Answer


@dataclass
class Stream:
    """One granted stream as its client saw it."""

    pair: str
    session: str
    token: int
    instance: str
    first_ts: int | None = None  # server ts_ms of the first data event
    last_ts: int | None = None
    frames: int = 0
    ended: str = ""  # the event that ended it, "closed", or an error's name

    def saw(self, ts_ms: int) -> None:
        self.frames += 1
        if self.first_ts is None:
            self.first_ts = ts_ms
        self.last_ts = ts_ms


@dataclass
class Verdict:
    overlaps: list[tuple[Stream, Stream]] = field(default_factory=list)
    reuses: list[tuple[Stream, Stream]] = field(default_factory=list)
    backwards: list[tuple[Stream, Stream]] = field(default_factory=list)
    #: same-session overlaps, in ms each (a superseded stream's last moment)
    handovers_ms: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.overlaps or self.reuses or self.backwards)

    def describe(self) -> str:
        def line(kind: str, a: Stream, b: Stream) -> str:
            return (
                f"{kind} on {a.pair}: {a.session} token {a.token} [{a.first_ts}..{a.last_ts}]"
                f" vs {b.session} token {b.token} [{b.first_ts}..{b.last_ts}]"
            )

        return "\n".join(
            [line("overlap", *p) for p in self.overlaps]
            + [line("token reused", *p) for p in self.reuses]
            + [line("token went back", *p) for p in self.backwards]
        )


def judge(streams: Iterable[Stream]) -> Verdict:
    verdict = Verdict()
    by_pair: dict[str, list[Stream]] = defaultdict(list)
    for s in streams:
        by_pair[s.pair].append(s)
    for pair_streams in by_pair.values():
        _tokens(pair_streams, verdict)
        carried = sorted(
            (s for s in pair_streams if s.first_ts is not None), key=lambda s: s.first_ts or 0
        )
        for i, a in enumerate(carried):
            assert a.last_ts is not None
            for b in carried[i + 1 :]:
                assert b.first_ts is not None
                if b.first_ts > a.last_ts:
                    break  # sorted by start: nothing later overlaps a
                if a.session != b.session:
                    verdict.overlaps.append((a, b))
                elif a.token != b.token:
                    verdict.handovers_ms.append(a.last_ts - b.first_ts)
    return verdict


def _tokens(streams: list[Stream], verdict: Verdict) -> None:
    seen: dict[int, Stream] = {}
    for s in streams:
        if s.token in seen:
            verdict.reuses.append((seen[s.token], s))
        else:
            seen[s.token] = s
    carried = sorted((s for s in streams if s.first_ts is not None), key=lambda s: s.first_ts or 0)
    for i, a in enumerate(carried):
        # a later session's grant carries a higher token than every earlier session's (one
        # session's own two grants may start their data in either order: a racing reconnect)
        for b in carried[i + 1 :]:
            if b.session != a.session and b.token < a.token:
                verdict.backwards.append((a, b))


@dataclass(frozen=True)
class Recovery:
    """What the probes saw from a fault's start: seconds until every probe answered again and
    stayed answering, and the failed answers, by what they were."""

    seconds: float
    failed: dict[str, int]
    unclear: int  # failures that were not a 503 naming a dependency


def recovery(answers: Iterable[Answer], since: float) -> Recovery:
    after = sorted((a for a in answers if a.at >= since), key=lambda a: a.at)
    failed: dict[str, int] = {}
    back = since
    by_probe: dict[str, list[Answer]] = defaultdict(list)
    for a in after:
        by_probe[a.probe].append(a)
        if not a.ok:
            key = f"{a.probe} {a.what}"
            failed[key] = failed.get(key, 0) + 1
    for seen in by_probe.values():
        last_bad = max((i for i, a in enumerate(seen) if not a.ok), default=None)
        if last_bad is None:
            continue
        good = [a for a in seen[last_bad + 1 :] if a.ok]
        back = max(back, good[0].at if good else float("inf"))
    unclear = sum(1 for a in after if not a.clear)
    return Recovery(back - since, failed, unclear)
