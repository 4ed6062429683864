"""In-memory stand-ins for the takeover's ports: the group and registry, a heartbeat.

:class:`FakeRoster` keeps the semantics of ``adapters/keepers.py``'s scripts (take moves a
victim's pending entries, release deletes only in-flight claims and only while the victim is
still found dead, retire only a dead victim holding nothing) over a :class:`FakeLedger`'s
claims, so a takeover can be driven end to end through the real use case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lockfakes import FakeLedger

from kubescaler.domain.locks import Delivery
from kubescaler.domain.takeover import Peer


@dataclass
class FakeRoster:
    ledger: FakeLedger
    pending: dict[str, list[Delivery]] = field(default_factory=dict)  # consumer -> its PEL
    registry: dict[str, int] = field(default_factory=dict)  # keeper -> heartbeat client id
    beating: set[str] = field(default_factory=set)
    open_ids: set[int] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def keeper(self, name: str, client_id: int, *, beating: bool, connected: bool) -> None:
        """A registered keeper: beating or not, its heartbeat connection open or not."""
        self.registry[name] = client_id
        self.pending.setdefault(name, [])
        if beating:
            self.beating.add(name)
        if connected:
            self.open_ids.add(client_id)

    async def look(self) -> tuple[list[Peer], dict[str, int]]:
        self.calls.append("look")
        names = sorted(self.pending.keys() | self.registry.keys())
        peers = [
            Peer(
                name=n,
                pending=len(self.pending.get(n, [])),
                registered=n in self.registry,
                beating=n in self.beating,
            )
            for n in names
        ]
        return peers, dict(self.registry)

    async def connected(self, registered: Mapping[str, int]) -> set[str]:
        self.calls.append("connected")
        return {name for name, i in registered.items() if i in self.open_ids}

    async def take(self, victim: str, taker: str, count: int, start: str = "-") -> list[Delivery]:
        """Entries are ``"{n}-0"``, pending in id order; ``start`` is ``-`` or ``(id``."""
        self.calls.append(f"take {victim}")
        after = -1 if start == "-" else int(start.strip("(").split("-")[0])
        entries = self.pending.get(victim, [])
        moved = [d for d in entries if _seq(d) > after][:count]
        self.pending[victim] = [d for d in entries if d not in moved]
        self.pending.setdefault(taker, []).extend(moved)
        return moved

    async def release(self, victim: str, client_id: int, request_ids: Sequence[str]) -> int:
        self.calls.append(f"release {victim}")
        if victim in self.beating or self.registry.get(victim) != client_id:
            return -1
        gone = [
            r for r in request_ids if r in self.ledger.applied and self.ledger.applied[r] is None
        ]
        for r in gone:
            del self.ledger.applied[r]
        return len(gone)

    async def retire(self, victim: str, client_id: int) -> bool:
        self.calls.append(f"retire {victim}")
        if victim in self.beating or self.registry.get(victim) != client_id:
            return False
        if self.pending.get(victim):
            return False
        self.pending.pop(victim, None)
        del self.registry[victim]
        return True

    async def leave(self, me: str) -> bool:
        self.calls.append(f"leave {me}")
        if self.pending.get(me):
            return False
        self.pending.pop(me, None)
        self.registry.pop(me, None)
        self.beating.discard(me)
        return True

    def acked(self) -> None:
        """Drop from every PEL what the ledger's commits acknowledged."""
        done = set(self.ledger.acked)
        for name, entries in self.pending.items():
            self.pending[name] = [d for d in entries if d.receipt not in done]


@dataclass
class FakeBeat:
    """A heartbeat whose connection has ``client_id``; ``fail`` makes renewals raise."""

    roster: FakeRoster
    name: str
    client_id: int
    fail: bool = False
    renewals: int = 0

    async def open(self) -> int:
        return self.client_id

    async def renew(self) -> None:
        if self.fail:
            raise ConnectionError("heartbeat failed")
        self.renewals += 1
        self.roster.registry[self.name] = self.client_id
        self.roster.beating.add(self.name)
        self.roster.open_ids.add(self.client_id)

    async def close(self) -> None:
        self.roster.open_ids.discard(self.client_id)


def _seq(d: Delivery) -> int:
    receipt = d.receipt.decode() if isinstance(d.receipt, bytes) else d.receipt
    return int(receipt.split("-")[0])
