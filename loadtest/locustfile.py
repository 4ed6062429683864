"""kubescaler's locust scenarios. Pick user classes by name, or all of them (by weight).

    uv run locust -f loadtest/locustfile.py --host http://127.0.0.1:8080            # web UI
    uv run locust -f loadtest/locustfile.py --headless -u 6 -r 2 -t 60s \\
        --host http://127.0.0.1:8080 --csv loadtest/reports/run --html loadtest/reports/run.html \\
        StreamViewer LockContender
    uv run locust -f loadtest/evening_peak.py ...   # the mixed ramp (a LoadTestShape)

The system needs test data with users bound to two or more profiles (/main/suggested):
``loadtest/run.py`` creates it. Request type ``SSE`` rows are the stream's own measures (see
``common.watch``); the per-stream MB/s, drops and refusals are printed at the end, written to
``<csv prefix>_streams.json`` and served by the web UI at ``/kubescaler/streams``.
"""

from __future__ import annotations

import random
import time
import uuid

import gevent
from common import POOL, watch
from locust import FastHttpUser, HttpUser, between, constant_throughput, task


class StreamViewer(HttpUser):
    """A viewer: borrows a free bound pair, watches at full speed for --hold-s, comes back."""

    weight = 3
    wait_time = between(1, 3)
    read_bps = 0.0

    def on_start(self) -> None:
        POOL.load(self)

    @task
    def view(self) -> None:
        pair = POOL.take()
        if pair is None:  # more viewers than pairs: wait for one to come back
            gevent.sleep(1)
            return
        try:
            opts = self.environment.parsed_options
            hold = opts.hold_s if opts else 20.0
            out = watch(self, pair, pair.session, random.uniform(0.5, 1.0) * hold, self.rate())
            while out.ended_by == "reconnect":  # the instance drains: the same session goes on
                out = watch(self, pair, pair.session, hold / 2, self.rate())
        finally:
            POOL.give(pair)

    def rate(self) -> float:
        return self.read_bps


class SlowViewer(StreamViewer):
    """A viewer on a narrow channel (--slow-kbps): the server must drop, not buffer."""

    weight = 1

    def rate(self) -> float:
        opts = self.environment.parsed_options
        return (opts.slow_kbps if opts else 256.0) * 1000


class LockContender(HttpUser):
    """Races, with a new session each try, for one of the --hot-pairs pairs.

    A refusal (409) is the expected outcome and counts as a success. A refused contender waits
    for the holder's expiry (at most 5 s) and races again, so at each expiry several try at once
    and exactly one may win; the winner watches for 1-3 s and leaves, keeping the lock until it
    lapses (the seed's behaviour; ``replay --verify`` checks that no two held a pair at once).
    """

    weight = 2
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        POOL.load(self)

    @task
    def contend(self) -> None:
        pair = random.choice(POOL.hot)
        session = "ct-" + uuid.uuid4().hex[:16]
        out = watch(self, pair, session, random.uniform(1, 3), label="contend")
        if out.status == 409 and out.holder_expires_at_ms:
            left = out.holder_expires_at_ms / 1000 - time.time()
            gevent.sleep(min(5.0, max(0.0, left)) + random.uniform(0, 0.05))


class ApiReader(FastHttpUser):
    """main's readers: live profiles of a user (its main job), profiles and suggested users."""

    weight = 4
    wait_time = constant_throughput(2)

    def on_start(self) -> None:
        POOL.load(self)

    @task(6)
    def login(self) -> None:
        self.client.get(f"/main/login/{random.choice(POOL.users)}", name="/main/login/[user]")

    @task(1)
    def profiles(self) -> None:
        self.client.get("/main/profiles?limit=100", name="/main/profiles?limit=100")

    @task(1)
    def suggested(self) -> None:
        self.client.get("/main/suggested", name="/main/suggested")
