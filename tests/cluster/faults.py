"""The fault suite's machinery: one fault at a time under a contended workload, judged from
what the clients received, and the table of what each fault cost."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kubehelp import GATEWAY, Kube, ready_pods, tls
from production import WORKLOADS, Production

from kubescaler_dev.cluster.app import NAMESPACE
from kubescaler_dev.contention.judge import judge, recovery
from kubescaler_dev.contention.workload import Record, Workload

#: how long the workload runs before the fault, and after the system answered again
WARM_S, SETTLE_S = 8.0, 12.0
#: the longest a fault may take to recover before the test gives up waiting
RECOVERY_LIMIT_S = 150.0
CONTENDED_PAIRS, SESSIONS_PER_PAIR = 4, 3
#: the fresh-open probe takes one a second, each free again 65 s later
FRESH_PAIRS = 70


@dataclass
class Row:
    fault: str
    recovery_s: float
    failed: int
    unclear: int
    overlaps: int
    reuses: int
    streams: int
    notice_s: float  # the longest a client's stream was silent before it ended
    handover_ms: int  # the longest a session's own two streams overlapped (a reconnect)


ROWS: list[Row] = []


def table() -> str:
    head = (
        "| fault | recovery | requests failed (unclear) | overlaps | token reuses | streams "
        "| longest silence before an end | longest handover |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    return head + "".join(
        f"| {r.fault} | {r.recovery_s:.1f} s | {r.failed} ({r.unclear}) | {r.overlaps} | "
        f"{r.reuses} | {r.streams} | {r.notice_s:.1f} s | {r.handover_ms} ms |\n"
        for r in ROWS
    )


class Suite:
    """The pairs each fault's workload fights over and the unheld pairs its probes open."""

    def __init__(self, prod: Production, kube: Kube) -> None:
        self.prod, self.kube = prod, kube
        self._pairs = list(prod.pairs)

    def take(self, n: int) -> list[tuple[str, str]]:
        taken, self._pairs = self._pairs[:n], self._pairs[n:]
        assert len(taken) == n, "not enough test pairs left for the fault suite"
        return taken

    async def run(
        self,
        name: str,
        inject: Callable[[], Awaitable[None]],
        heal: Callable[[], Awaitable[None]] | None = None,
        hold_s: float = 0.0,
    ) -> tuple[Row, Record]:
        """Workload; ``inject``; until every probe answers again (recovery, measured from the
        injection); ``hold_s`` from the injection at least (a node stays frozen or lost that
        long); ``heal`` (resumed, brought back) and until every probe answers again; settle;
        judged from what the clients received."""
        await asyncio.to_thread(self.whole)
        work = Workload(
            GATEWAY,
            contended=self.take(CONTENDED_PAIRS),
            fresh=self.take(FRESH_PAIRS),
            sessions_per_pair=SESSIONS_PER_PAIR,
            headers=self.prod.headers,
            verify=tls(),
        )
        work.start()
        try:
            await asyncio.sleep(WARM_S)
            since = time.monotonic()
            await inject()
            try:
                await self._until_recovered(work, since)
                await asyncio.sleep(max(0.0, since + hold_s - time.monotonic()))
            finally:  # the next fault needs the cluster whole, whatever this one did
                if heal is not None:
                    await heal()
            if heal is not None:
                await self._until_recovered(work, time.monotonic())
            await asyncio.sleep(SETTLE_S)
        finally:
            record = await work.stop()
        got = recovery(record.answers, since)
        verdict = judge(record.streams)
        silences = [s for _, s in record.silences]
        row = Row(
            fault=name,
            recovery_s=got.seconds,
            failed=sum(got.failed.values()),
            unclear=got.unclear,
            overlaps=len(verdict.overlaps),
            reuses=len(verdict.reuses) + len(verdict.backwards),
            streams=len(record.streams),
            notice_s=max(silences, default=0.0),
            handover_ms=max(verdict.handovers_ms, default=0),
        )
        ROWS.append(row)
        print(f"\n{name}: {row}\nfailed answers: {got.failed}\nrefusals: {record.refusals}")
        print("when they failed (s after the injection): " + failure_spans(record, since))
        assert verdict.clean, verdict.describe()
        assert math.isfinite(got.seconds), f"{name}: a probe failed to the end: {got.failed}"
        return row, record

    def whole(self) -> None:
        """Until every workload of production has all its pods ready again: a fault starts
        from a whole cluster. A store pod restarted after the fault before it (a node brought
        back) may still be starting when the probes already answer - a quorum needs two of
        three - and one more store lost meanwhile would be two."""
        for workload in (*WORKLOADS, "statefulset/redis-sentinel"):
            self.kube.run(
                "-n", NAMESPACE, "rollout", "status", workload, "--timeout=300s", timeout=320
            )  # fmt: skip

    async def _until_recovered(self, work: Workload, since: float) -> None:
        """Until every probe's latest answer, after ``since``, is a success."""
        deadline = since + RECOVERY_LIMIT_S
        while time.monotonic() < deadline:
            latest: dict[str, bool] = {}
            for a in work.record.answers:
                if a.at >= since:
                    latest[a.probe] = a.ok
            if len(latest) == 3 and all(latest.values()):
                return
            await asyncio.sleep(0.5)
        last = {a.probe: a.what for a in work.record.answers if a.at >= since}
        raise AssertionError(f"not recovered within {RECOVERY_LIMIT_S:.0f}s: last answers {last}")

    def stream_pod_with_clients(self) -> str:
        """A ready stream pod (the fault suite's workload spreads over them)."""
        pods = ready_pods(self.kube, "stream")
        assert pods, "no ready stream pod"
        return str(pods[0]["metadata"]["name"])


def failure_spans(record: Record, since: float, gap_s: float = 3.0) -> str:
    """Each probe's failures after ``since`` as spans of seconds (failures less than
    ``gap_s`` apart are one span) with what failed in each: where a recovery's time went."""
    spans: dict[str, list[tuple[float, float, set[str]]]] = {}
    for a in sorted(record.answers, key=lambda a: a.at):
        if a.at < since or a.ok:
            continue
        t = a.at - since
        mine = spans.setdefault(a.probe, [])
        if mine and t - mine[-1][1] <= gap_s:
            mine[-1] = (mine[-1][0], t, mine[-1][2] | {a.what})
        else:
            mine.append((t, t, {a.what}))
    return (
        "; ".join(
            f"{probe} "
            + ", ".join(f"{lo:.0f}-{hi:.0f} ({'/'.join(sorted(w))})" for lo, hi, w in got)
            for probe, got in sorted(spans.items())
        )
        or "none"
    )
