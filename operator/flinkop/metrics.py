"""Prometheus metrics (`--metrics HOST:PORT`, served at /metrics in the text exposition format).

- `flinkop_upgrades_total{kind,outcome}`: upgrades (deploy, upgrade, rescale, rollback, suspend) that
  ended, by outcome: succeeded, rolled_back, failed.
- `flinkop_upgrade_duration_seconds{kind}`: from the start of an upgrade to its end (histogram).
- `flinkop_savepoint_duration_seconds{reason}`: from trigger to completion (histogram).
- `flinkop_reconcile_errors_total{reason}`: passes that failed: flink_unreachable, action_failed,
  conflict, unexpected.
- `flinkop_flinkjobs{phase}`: FlinkJobs by phase, and `flinkop_upgrades_in_flight`.

What a pass did is read from the status before and after it (`record_pass`), so the numbers are the
status's own story and cost no extra request.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flinkop import status as st
from flinkop.status import Status
from flinkop.times import parse_time

UPGRADE_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
SAVEPOINT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 600)
_NOT_COUNTED = frozenset({st.SAVEPOINT, st.DELETE})  # a savepoint that keeps the job running; a deletion


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.upgrades: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.upgrade_seconds: dict[str, _Histogram] = {}
        self.savepoint_seconds: dict[str, _Histogram] = {}
        self.phases: dict[str, str] = {}  # uid -> phase
        self.in_flight: Callable[[], int] = lambda: 0

    def record_pass(self, uid: str, before: Status, after: Status, now: datetime) -> None:
        with self._lock:
            if after.phase:
                self.phases[uid] = after.phase
            up = before.upgrade
            if up is not None and after.upgrade is None and up.kind not in _NOT_COUNTED:
                outcome = "succeeded"
                if after.failure is not None:
                    outcome = "rolled_back" if after.failure.reason == "RestoreFailed" else "failed"
                self.upgrades[(up.kind, outcome)] += 1
                started = parse_time(up.started_at)
                if started is not None:
                    self._observe(self.upgrade_seconds, UPGRADE_BUCKETS, up.kind, _seconds(started, now))
            new_savepoint = after.last_savepoint is not None and after.last_savepoint != before.last_savepoint
            if up is not None and up.step == st.SAVEPOINTING and new_savepoint and after.last_savepoint is not None:
                triggered = parse_time(up.step_started_at)
                if triggered is not None:
                    reason = after.last_savepoint.reason or up.kind
                    self._observe(self.savepoint_seconds, SAVEPOINT_BUCKETS, reason, _seconds(triggered, now))

    def record_error(self, reason: str) -> None:
        with self._lock:
            self.errors[reason] += 1

    def forget(self, uid: str) -> None:
        with self._lock:
            self.phases.pop(uid, None)

    @staticmethod
    def _observe(into: dict[str, _Histogram], buckets: tuple[float, ...], label: str, value: float) -> None:
        into.setdefault(label, _Histogram(buckets)).observe(value)

    def render(self) -> str:
        with self._lock:
            out: list[str] = []
            out += _family("flinkop_upgrades_total", "counter", "Upgrades that ended, by kind and outcome.")
            out += [
                f'flinkop_upgrades_total{{kind="{k}",outcome="{o}"}} {n}' for (k, o), n in sorted(self.upgrades.items())
            ]
            out += _family("flinkop_reconcile_errors_total", "counter", "Reconcile passes that failed, by reason.")
            out += [f'flinkop_reconcile_errors_total{{reason="{r}"}} {n}' for r, n in sorted(self.errors.items())]
            out += _histograms(
                "flinkop_upgrade_duration_seconds", "From an upgrade's start to its end.", "kind", self.upgrade_seconds
            )
            out += _histograms(
                "flinkop_savepoint_duration_seconds",
                "From a savepoint's trigger to its completion.",
                "reason",
                self.savepoint_seconds,
            )
            out += _family("flinkop_flinkjobs", "gauge", "FlinkJobs by phase.")
            out += [f'flinkop_flinkjobs{{phase="{p}"}} {n}' for p, n in sorted(Counter(self.phases.values()).items())]
            out += _family("flinkop_upgrades_in_flight", "gauge", "Upgrades and rescales holding a slot.")
            out.append(f"flinkop_upgrades_in_flight {self.in_flight()}")
            return "\n".join(out) + "\n"


def _seconds(since: datetime, now: datetime) -> float:
    return max(0.0, (now.replace(tzinfo=None) - since.replace(tzinfo=None)).total_seconds())


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _histograms(name: str, help_text: str, label: str, by_label: dict[str, _Histogram]) -> list[str]:
    lines = _family(name, "histogram", help_text)
    for value, h in sorted(by_label.items()):
        cumulative = 0
        for bound, count in zip((*h.buckets, float("inf")), h.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{{label}="{value}",le="{le}"}} {cumulative}')
        lines.append(f'{name}_sum{{{label}="{value}"}} {h.total:.6f}')
        lines.append(f'{name}_count{{{label}="{value}"}} {h.n}')
    return lines


METRICS = Metrics()


def serve(address: str, metrics: Metrics = METRICS) -> ThreadingHTTPServer:
    """Serves /metrics on HOST:PORT in a daemon thread."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
