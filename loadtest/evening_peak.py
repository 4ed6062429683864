"""The mixed scenario: every user class of locustfile.py on a ramp shaped like an evening peak.

    uv run locust -f loadtest/evening_peak.py --headless -t 120s --peak-users 12 \\
        --host http://127.0.0.1:8080 --csv loadtest/reports/peak

The stages are shares of the run time (``-t``, 5 minutes without it) and of ``--peak-users``:
early evening at a third, the ramp, the peak, the wind-down; the shape stops the run at the end.
"""

from __future__ import annotations

from locust import LoadTestShape
from locustfile import ApiReader, LockContender, SlowViewer, StreamViewer

__all__ = ["ApiReader", "EveningPeak", "LockContender", "SlowViewer", "StreamViewer"]

#: (end of the stage as a share of the run, users as a share of the peak)
STAGES = ((0.15, 0.34), (0.30, 0.67), (0.75, 1.0), (1.0, 0.5))


class EveningPeak(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options if self.runner else None
        duration = float(opts.run_time) if opts and opts.run_time else 300.0
        peak = opts.peak_users if opts else 12
        now = self.get_run_time()
        for end, share in STAGES:
            if now < end * duration:
                users = max(4, round(peak * share))  # at least one of each class
                return users, max(1.0, users / 4)
        return None
