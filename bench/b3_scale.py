"""B3: how far one operator process scales: N FlinkJobs on the real apiserver, Flink simulated.

What is real: kube-apiserver v1.20.2 + etcd (tests/testbed/kube.py) and the operator, `python -m
flinkop` as its own process with its default settings unless told otherwise. What is simulated:
Flink, by bench/flink_sim.py (one process, one port, a path prefix `/cN` per session cluster),
since no machine here runs thousands of Flink jobs.

Phases, each measured from the outside (nothing in the operator is instrumented):
  deploy    N FlinkJobs are created (jar: a small real jar, file://), spread round-robin over the
            clusters; each is deployed by the operator through the simulator (upload + run); the
            phase ends when every one is Ready (condition True at its generation).
  idle      after a settling pause, for --idle-seconds: the operator's CPU (utime+stime from
            /proc/<pid>/stat, as a share of one core), its RSS and peak RSS (VmHWM), requests to
            Flink (the simulator's counters, total and per job, as polls per job per 5 s) and to
            the apiserver (apiserver_request_total from its /metrics, before/after, minus the
            apiserver's own background rate measured before the operator started).
  reaction  --changes spec changes (program args, so no jar upload is needed), one every
            --change-spacing seconds on distinct FlinkJobs: latency from the patch's answer to
            the stop-with-savepoint call arriving at the simulator (p50, p99, max); all must end
            Ready at the new generation.
  burst     --burst FlinkJobs get a new jar at once (patched in parallel): time from the first
            patch to the last Ready at the new generation, the concurrency of upgrades as the
            simulator saw it (stop call to the new job RUNNING; bounded by
            FLINKOP_MAX_CONCURRENT_UPGRADES), and that every new job started from its savepoint.
Errors: Warning Events by reason, ERROR lines and tracebacks in the operator log, FlinkJobs left
Stalled or not Ready, failed submissions and error answers at the simulator.

With --jobs 10000 --clusters 100 the same phases run under --budget seconds; `breaks` lists, in
the order they happened, every target missed and every phase that did not finish.

    PYTHONPATH=tests:operator python bench/b3_scale.py --jobs 1000 --out bench/results/b3.json
    PYTHONPATH=tests:operator python bench/b3_scale.py --jobs 10000 --clusters 100 --budget 2400 \\
        --out bench/results/b3-10k.json
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import urllib3

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "flinkop.io", "v1alpha1", "flinkjobs"
NAMESPACE = "default"
TARGETS = {
    "rss_mb": 150.0,  # peak RSS of the operator process (1,000 FlinkJobs; 500 MB at 10,000)
    "idle_cpu_share": 0.03,  # of one core, at rest (1,000 FlinkJobs; 0.10 at 10,000)
    "reaction_p99_s": 2.0,  # spec change to the stop call
    "idle_flink_polls_per_job_per_5s": 1.0,
}
TARGETS_10K = {**TARGETS, "rss_mb": 500.0, "idle_cpu_share": 0.10}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[b3 {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------
# Processes: CPU and memory from /proc


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_memory_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


class Sampler(threading.Thread):
    """Samples CPU seconds and RSS of the named processes every `interval` seconds (the timeline)."""

    def __init__(self, interval: float = 2.0) -> None:
        super().__init__(name="sampler", daemon=True)
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.samples: list[dict[str, Any]] = []
        self.extra: Callable[[], dict[str, Any]] = dict
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self.pids[name] = pid

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time(), **self.extra()}
        with self._lock:
            pids = dict(self.pids)
        for name, pid in pids.items():
            with contextlib.suppress(OSError, ValueError, IndexError):
                mem = proc_memory_kb(pid)
                row[name] = {
                    "cpu_s": round(proc_cpu_seconds(pid), 3),
                    "rss_mb": round(mem.get("VmRSS", 0) / 1024, 1),
                    "hwm_mb": round(mem.get("VmHWM", 0) / 1024, 1),
                }
        return row

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            row = self.sample()
            with self._lock:
                self.samples.append(row)

    def stop(self) -> None:
        self._stop_event.set()

    def timeline(self, max_points: int = 400) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self.samples)
        step = max(1, len(rows) // max_points)
        return rows[::step]


@dataclass
class Usage:
    """CPU and memory of the named processes between two moments."""

    t: float
    cpu: dict[str, float]
    machine: tuple[float, float]

    @classmethod
    def now(cls, pids: Mapping[str, int]) -> Usage:
        cpu = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError, ValueError, IndexError):
                cpu[name] = proc_cpu_seconds(pid)
        return cls(time.time(), cpu, machine_cpu())

    def since(self, before: Usage) -> dict[str, Any]:
        wall = self.t - before.t
        busy = self.machine[0] - before.machine[0]
        total = self.machine[1] - before.machine[1]
        return {
            "seconds": round(wall, 2),
            "cpu_share_of_one_core": {
                name: round((self.cpu[name] - before.cpu[name]) / wall, 4) for name in self.cpu if name in before.cpu
            },
            "machine_busy_share": round(busy / total, 3) if total else None,
        }


# ------------------------------------------------------------------------------------------------
# The apiserver: requests, metrics and a watch on the FlinkJobs


class Kube:
    def __init__(self, server: str, token: str, ca_file: Path | None) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}"}
        # The bed's serving certificate is self-signed and on loopback: the harness does not verify it
        # (requests rejects the chain the apiserver generates, which the kubeconfig's CA data accepts).
        self.verify = False
        del ca_file
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.trust_env = False  # loopback only: no proxy, and no REQUESTS_CA_BUNDLE overriding verify
            s.headers.update(self.headers)
            s.verify = self.verify
        return s

    def url(self, path: str) -> str:
        return self.server + path

    def collection(self) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"

    def create(self, name: str, spec: Mapping[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FlinkJob",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": dict(spec),
        }
        for attempt in range(5):
            resp = self.session.post(self.url(self.collection()), json=body, timeout=60)
            if resp.status_code in (200, 201):
                return
            if resp.status_code == 409:  # a retried create that did get through
                return
            if resp.status_code in (429, 500, 503, 504) and attempt < 4:
                time.sleep(1 + attempt)
                continue
            raise RuntimeError(f"create {name}: HTTP {resp.status_code} {resp.text[:300]}")

    def patch_spec(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        resp = self.session.patch(
            self.url(f"{self.collection()}/{name}"),
            data=json.dumps({"spec": dict(spec)}),
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=60,
        )
        if resp.status_code != 200:
            raise RuntimeError(f"patch {name}: HTTP {resp.status_code} {resp.text[:300]}")
        result: dict[str, Any] = resp.json()
        return result

    def warning_events(self) -> Counter[str]:
        """Warning Events in the namespace, by reason (paged)."""
        reasons: Counter[str] = Counter()
        examples: dict[str, str] = {}
        cont = ""
        while True:
            params = {"fieldSelector": "type=Warning", "limit": "500"}
            if cont:
                params["continue"] = cont
            resp = self.session.get(self.url(f"/api/v1/namespaces/{NAMESPACE}/events"), params=params, timeout=120)
            resp.raise_for_status()
            body = resp.json()
            for e in body.get("items", []):
                reason = str(e.get("reason"))
                reasons[reason] += int(e.get("count") or 1)
                examples.setdefault(reason, str(e.get("message", ""))[:300])
            cont = body.get("metadata", {}).get("continue") or ""
            if not cont:
                break
        self.warning_examples = examples
        return reasons

    def metrics(self) -> ApiMetrics:
        resp = self.session.get(self.url("/metrics"), timeout=60)
        resp.raise_for_status()
        return ApiMetrics.parse(resp.text)


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class ApiMetrics:
    """apiserver_request_total by (verb, resource[/subresource]) and request durations (non-watch)."""

    requests: Counter[str]
    duration_sum: float
    duration_count: float

    @classmethod
    def parse(cls, text: str) -> ApiMetrics:
        requests_: Counter[str] = Counter()
        dsum = dcount = 0.0
        for line in text.splitlines():
            if line.startswith("apiserver_request_total{"):
                labels_text, _, value = line.rpartition(" ")
                labels = dict(_LABEL.findall(labels_text))
                resource = labels.get("resource") or "(non-resource)"
                if labels.get("subresource"):
                    resource += "/" + labels["subresource"]
                requests_[f"{labels.get('verb')} {resource}"] += int(float(value))
            elif line.startswith(
                ("apiserver_request_duration_seconds_sum{", "apiserver_request_duration_seconds_count{")
            ):
                labels_text, _, value = line.rpartition(" ")
                if 'verb="WATCH"' in labels_text or 'verb="CONNECT"' in labels_text:
                    continue
                if line.startswith("apiserver_request_duration_seconds_sum"):
                    dsum += float(value)
                else:
                    dcount += float(value)
        return cls(requests_, dsum, dcount)

    def since(self, before: ApiMetrics, seconds: float, background_per_s: float = 0.0) -> dict[str, Any]:
        delta = Counter({k: v - before.requests.get(k, 0) for k, v in self.requests.items()})
        delta = Counter({k: v for k, v in delta.items() if v > 0})
        delta["GET (non-resource)"] -= 1  # the /metrics scrape that ends this window
        delta = Counter({k: v for k, v in delta.items() if v > 0})
        total = sum(delta.values())
        count = self.duration_count - before.duration_count
        return {
            "requests": total,
            "per_second": round(total / seconds, 2),
            "per_second_minus_background": round(max(total / seconds - background_per_s, 0.0), 2),
            "by_verb_resource": dict(delta.most_common()),
            "mean_request_seconds": round((self.duration_sum - before.duration_sum) / count, 4) if count else None,
        }


@dataclass
class Seen:
    generation: int
    ready: bool
    job_id: str | None
    phase: str | None
    stalled: str | None
    message: str


class FlinkJobTracker(threading.Thread):
    """Every FlinkJob in the namespace as the apiserver reports it, from one LIST + WATCH; records
    when each was first seen Ready at each generation."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(name="tracker", daemon=True)
        self.kube = kube
        self.seen: dict[str, Seen] = {}
        self.ready_at: dict[tuple[str, int], float] = {}
        self.ready_count = 0
        self.cond = threading.Lock()  # guards seen, ready_at and ready_count
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers.update(kube.headers)
        self._session.verify = kube.verify

    def _update(self, obj: Mapping[str, Any], t: float) -> None:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        name = str(meta.get("name"))
        generation = int(meta.get("generation") or 0)
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        ready = conds.get("Ready") or {}
        stalled = conds.get("Stalled") or {}
        is_ready = (
            ready.get("status") == "True"
            and ready.get("observedGeneration") == generation
            and status.get("observedGeneration") == generation
        )
        with self.cond:
            before = self.seen.get(name)
            self.ready_count += int(is_ready) - int(before is not None and before.ready)
            self.seen[name] = Seen(
                generation,
                is_ready,
                status.get("jobId"),
                status.get("phase"),
                stalled.get("reason") if stalled.get("status") == "True" else None,
                str(status.get("message") or "")[:300],
            )
            if is_ready:
                self.ready_at.setdefault((name, generation), t)

    def _list(self) -> str:
        cont = ""
        while True:
            params = {"limit": "500"}
            if cont:
                params["continue"] = cont
            resp = self._session.get(self.kube.url(self.kube.collection()), params=params, timeout=120)
            resp.raise_for_status()
            body = resp.json()
            t = time.time()
            for obj in body.get("items", []):
                self._update(obj, t)
            cont = body.get("metadata", {}).get("continue") or ""
            if not cont:
                return str(body["metadata"]["resourceVersion"])

    def run(self) -> None:
        rv = ""
        while not self._stop_event.is_set():
            try:
                if not rv:
                    rv = self._list()
                rv = self._watch(rv)
            except (requests.RequestException, ValueError, KeyError) as exc:
                if not isinstance(exc, requests.ReadTimeout):
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.5)

    def _watch(self, rv: str) -> str:
        """Watches from `rv` until the server ends the watch; returns the resourceVersion to go on
        from ("" when the list must be read again)."""
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "240"}
        with self._session.get(
            self.kube.url(self.kube.collection()), params=params, stream=True, timeout=(10, 300)
        ) as resp:
            if resp.status_code == 410:
                return ""
            resp.raise_for_status()
            for line in resp.iter_lines(chunk_size=65536):
                if self._stop_event.is_set():
                    return rv
                if not line:
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    return "" if obj.get("code") == 410 else rv
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    self._update(obj, time.time())
        return rv

    def stop(self) -> None:
        self._stop_event.set()

    def wait(self, predicate: Callable[[], bool], timeout: float, progress: Callable[[], str] | None = None) -> bool:
        """Polls `predicate` every 0.25 s (the moments that matter are stamped by the watch itself)."""
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
            if progress is not None and time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                log(progress())
        return True

    def count_ready(self) -> int:
        with self.cond:
            return self.ready_count

    def ready_at_generation(self, name: str, generation: int) -> float | None:
        with self.cond:
            seen = self.seen.get(name)
            if seen is None or seen.generation < generation:
                return None
            return self.ready_at.get((name, seen.generation)) if seen.ready else None

    def summary(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        with self.cond:
            items = [self.seen[n] for n in names if n in self.seen] if names is not None else list(self.seen.values())
        stalled = Counter(s.stalled for s in items if s.stalled)
        not_ready = [s for s in items if not s.ready]
        return {
            "seen": len(items),
            "ready": len(items) - len(not_ready),
            "phases": dict(Counter(str(s.phase) for s in items)),
            "stalled": dict(stalled),
            "not_ready_messages": dict(Counter(re.sub(r"[0-9a-f]{32}", "<id>", s.message) for s in not_ready[:200])),
        }


# ------------------------------------------------------------------------------------------------
# The simulated Flink


class Sim:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.trust_env = False

    def stats(self, per_job: bool = False) -> dict[str, Any]:
        resp = self.session.get(f"{self.url}/_sim/stats", params={"jobs": "1"} if per_job else None, timeout=60)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result


def requests_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    kinds = Counter(after["requests_by_kind"])
    kinds.subtract(before["requests_by_kind"])
    kinds = Counter({k: v for k, v in kinds.items() if v > 0})
    out: dict[str, Any] = {"requests": sum(kinds.values()), "by_kind": dict(kinds.most_common())}
    if "requests_by_job" in after and "requests_by_job" in before:
        jobs = Counter(after["requests_by_job"])
        jobs.subtract(before["requests_by_job"])
        out["by_job"] = {k: v for k, v in jobs.items() if v > 0}
    return out


def make_jar(path: Path, variant: str) -> Path:
    """A small real jar: a zip with a manifest (the operator checks it is a zip and digests it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nMain-Class: io.flinkop.bench.SimJob\n\n")
        zf.writestr("io/flinkop/bench/VARIANT", f"{variant}\n")
    return path


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))  # nearest rank
    return round(ordered[index], 3)


def _over_limit(episodes: list[dict[str, Any]], limit: int, t0: float) -> list[dict[str, Any]]:
    """The moments (stop calls) when more than `limit` upgrades were between their stop call and
    their new job running, with the upgrades in flight then."""
    out = []
    for e in sorted(episodes, key=lambda e: e["stop"]):
        in_flight = [o for o in episodes if o["stop"] <= e["stop"] < o["running"]]
        if limit > 0 and len(in_flight) > limit:
            out.append(
                {
                    "at_s": round(e["stop"] - t0, 3),
                    "in_flight": len(in_flight),
                    "upgrades": [(o["name"], round(o["stop"] - t0, 3), round(o["running"] - t0, 3)) for o in in_flight],
                }
            )
    return out[:10]


def settle(kube: Kube, at_least: float, at_most: float, quiet_rate: float = 1.0) -> dict[str, Any]:
    """Waits until FlinkJob/Event writes to the apiserver (the operator's, once the harness is still)
    stay under `quiet_rate` per second for 15 s, after at least `at_least` seconds."""
    t0 = time.time()
    quiet_for = 0.0
    rate = None
    prev = _try_metrics(kube)
    while True:
        time.sleep(5)
        cur = _try_metrics(kube)
        if cur is not None and prev is not None:
            writes = sum(
                v - prev.requests.get(k, 0)
                for k, v in cur.requests.items()
                if k.split()[0] in ("PATCH", "POST", "PUT", "DELETE") and ("flinkjobs" in k or "events" in k)
            )
            rate = round(writes / 5, 2)
            quiet_for = quiet_for + 5 if rate < quiet_rate else 0.0
        prev = cur
        elapsed = time.time() - t0
        if elapsed >= at_least and quiet_for >= 15:
            return {"seconds": round(elapsed, 1), "quiet": True, "last_writes_per_second": rate}
        if elapsed >= max(at_most, at_least):
            return {"seconds": round(elapsed, 1), "quiet": False, "last_writes_per_second": rate}


def _try_metrics(kube: Kube) -> ApiMetrics | None:
    try:
        return kube.metrics()
    except requests.RequestException:
        return None


def spread(count: int, jobs: int, clusters: int, phase: float) -> list[int]:
    """`count` distinct job indices, as many on each cluster (job i is on cluster i % clusters) and
    evenly spaced within it; phase 0.0 and 0.5 give disjoint picks while count <= jobs / 2."""
    clusters = max(1, min(clusters, jobs))
    per = math.ceil(count / clusters) if count else 0
    picks: list[int] = []
    for m in range(per):
        for c in range(clusters):
            on_cluster = range(c, jobs, clusters)
            index = on_cluster[min(len(on_cluster) - 1, int((m + phase) * len(on_cluster) / per))]
            if index not in picks:
                picks.append(index)
    return picks[:count]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, step in points:
        current += step
        best = max(best, current)
    return best


# ------------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    args: argparse.Namespace
    deadline: float
    result: dict[str, Any] = field(default_factory=dict)
    breaks: list[dict[str, Any]] = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def broke(self, phase: str, what: str, detail: str, at: float | None = None) -> None:
        self.breaks.append({"t": at or time.time(), "phase": phase, "what": what, "detail": detail})
        log(f"BREAK in {phase}: {what}: {detail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=10, help="simulated session clusters (jobs round-robin)")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument(
        "--observe-interval", type=float, default=None, help="FLINKOP_OBSERVE_INTERVAL (default: the operator's)"
    )
    parser.add_argument(
        "--max-concurrent-upgrades", type=int, default=None, help="FLINKOP_MAX_CONCURRENT_UPGRADES (default: unset)"
    )
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=None, help="at least (default: observe interval + 10)")
    parser.add_argument(
        "--settle-max-seconds", type=float, default=None, help="at most, waiting for quiet (default 120; 10k: 900)"
    )
    parser.add_argument("--changes", type=int, default=100, help="spaced spec changes for the reaction latency")
    parser.add_argument("--change-spacing", type=float, default=0.6)
    parser.add_argument("--burst", type=int, default=100, help="simultaneous upgrades")
    parser.add_argument("--savepoint-delay", type=float, default=0.3)
    parser.add_argument("--start-delay", type=float, default=0.5)
    parser.add_argument("--create-workers", type=int, default=8)
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 900; 10k: 3600)")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/b3.json (b3-10k.json for 10k)")
    parser.add_argument(
        "--create-first",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create every FlinkJob before starting the operator (default: only with 5000 jobs or more)",
    )
    parser.add_argument("--py-spy", type=Path, default=None, help="py-spy binary: profile the idle operator for 20 s")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, etcd) afterwards")
    args = parser.parse_args()
    big = args.jobs >= 5000
    if big:
        TARGETS.update(TARGETS_10K)
    if args.budget is None:
        args.budget = 3600.0 if big else 900.0
    if args.out is None:
        args.out = REPO / "bench" / "results" / ("b3-10k.json" if big else "b3.json")
    if args.settle_max_seconds is None:
        args.settle_max_seconds = 900.0 if big else 120.0
    if args.create_first is None:
        args.create_first = big
    if args.observe_interval is None:
        sys.path.insert(0, str(REPO / "operator"))
        from flinkop.settings import OperatorSettings

        args.observe_interval = OperatorSettings().observe_interval
    if args.settle_seconds is None:
        args.settle_seconds = args.observe_interval + 10.0

    run = Run(args, time.monotonic() + args.budget)
    work = Path(tempfile.mkdtemp(prefix="flinkop-b3-"))
    log(f"work directory {work}")
    ok = False
    try:
        ok = execute(run, work)
    except KeyboardInterrupt:
        run.broke("run", "interrupted", "KeyboardInterrupt")
    except Exception as exc:
        run.broke("run", "harness error", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        write_result(run, work)
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work directory kept: {work}")
    return 0 if ok else 1


def execute(run: Run, work: Path) -> bool:
    from flinkop.settings import OperatorSettings
    from testbed.kube import start_kube
    from testbed.operator_process import start_operator
    from testbed.procs import ManagedProcess, free_port

    args = run.args
    res = run.result
    operator_env = {"FLINKOP_OBSERVE_INTERVAL": f"{args.observe_interval:g}"}
    if args.max_concurrent_upgrades is not None:
        operator_env["FLINKOP_MAX_CONCURRENT_UPGRADES"] = str(args.max_concurrent_upgrades)
    for item in args.operator_env:
        key, _, value = item.partition("=")
        operator_env[key] = value
    defaults = OperatorSettings()
    max_upgrades = int(
        operator_env.get("FLINKOP_MAX_CONCURRENT_UPGRADES")
        or os.environ.get("FLINKOP_MAX_CONCURRENT_UPGRADES")
        or defaults.max_concurrent_upgrades
    )
    res["settings"] = {
        "jobs": args.jobs,
        "clusters": args.clusters,
        "parallelism": args.parallelism,
        "operator_env": operator_env,
        "observe_interval_s": args.observe_interval,
        "max_concurrent_upgrades": max_upgrades,
        "overview_max_age_s": float(operator_env.get("FLINKOP_OVERVIEW_MAX_AGE") or defaults.overview_max_age),
        "idle_seconds": args.idle_seconds,
        "settle_seconds": args.settle_seconds,
        "changes": args.changes,
        "change_spacing_s": args.change_spacing,
        "burst": args.burst,
        "sim": {"savepoint_delay_s": args.savepoint_delay, "start_delay_s": args.start_delay},
        "budget_s": args.budget,
    }
    res["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": sys.version.split()[0],
    }
    res["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    res["operator_code"] = operator_code_version()

    sampler = Sampler()
    tracker: FlinkJobTracker | None = None
    kube_bed = None
    sim_proc: ManagedProcess | None = None
    operator = None
    try:
        # -- setup ----------------------------------------------------------------------------------
        t0 = time.time()
        kube_bed = start_kube(work / "kube")
        sampler.watch("apiserver", kube_bed.apiserver.pid)
        sampler.watch("etcd", kube_bed.etcd.pid)
        kube_bed.kubectl("apply", "-f", str(REPO / "crds" / "flinkjob.yaml"))
        kube_bed.kubectl("wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io")
        kube = Kube(kube_bed.server, kube_bed.admin_token, kube_bed.ca_file)

        port = free_port()
        sim_proc = ManagedProcess(
            "flink-sim",
            [
                sys.executable, str(REPO / "bench" / "flink_sim.py"), "--port", str(port),
                "--savepoint-delay", str(args.savepoint_delay), "--start-delay", str(args.start_delay),
            ],
            work / "flink-sim.log",
        ).start()  # fmt: skip
        sim_url = f"http://127.0.0.1:{port}"
        sim = Sim(sim_url)
        _wait_http(f"{sim_url}/_sim/health", 30)
        sampler.watch("sim", sim_proc.pid)

        tracker = FlinkJobTracker(kube)
        tracker.start()
        sampler.extra = lambda: {"ready": tracker.count_ready() if tracker else 0}
        sampler.start()

        # The apiserver's own background rate, before the operator exists.
        m0 = kube.metrics()
        time.sleep(5)
        m1 = kube.metrics()
        background = m1.since(m0, 5)
        background_rate = background["per_second"]
        res["apiserver_background"] = background

        jars = work / "jars"
        jar_a = make_jar(jars / "bench-job-a.jar", "a")
        jar_b = make_jar(jars / "bench-job-b.jar", "b")
        names = [f"fj-{i:05d}" for i in range(args.jobs)]

        def spec(i: int) -> dict[str, Any]:
            return {
                "flinkRestUrl": f"{sim_url}/c{i % args.clusters}",
                "jar": {"uri": jar_a.as_uri()},
                "parallelism": args.parallelism,
                "args": ["--id", str(i)],
            }

        pids = {
            "apiserver": kube_bed.apiserver.pid,
            "etcd": kube_bed.etcd.pid,
            "sim": sim_proc.pid,
            "harness": os.getpid(),
        }

        def start() -> Any:
            proc = start_operator(work / "operator", kube_bed.admin_kubeconfig, extra_env=operator_env)
            sampler.watch("operator", proc.pid)
            pids["operator"] = proc.pid
            log(f"operator started, pid {proc.pid}")
            return proc

        # What the operator holds with no FlinkJob at all (watching a namespace with none): the
        # baseline the bytes per FlinkJob are counted from.
        empty = start_operator(
            work / "operator-baseline", kube_bed.admin_kubeconfig, name="baseline",
            extra_env=operator_env, args=("--namespace", "flinkop-b3-empty"),
        )  # fmt: skip
        time.sleep(10)
        res["operator_baseline_memory_mb"] = _memory_mb(empty.pid)
        empty.stop()

        res["setup_seconds"] = round(time.time() - t0, 1)
        log(f"bed up in {res['setup_seconds']} s; sim at {sim_url}")
        if not args.create_first:
            operator = start()
            time.sleep(2)

        # -- deploy ---------------------------------------------------------------------------------
        how = "before starting the operator" if args.create_first else "while the operator runs"
        log(f"creating {args.jobs} FlinkJobs over {args.clusters} simulated clusters, {how}")
        u0, m0, s0 = Usage.now(pids), kube.metrics(), sim.stats()
        t_create = time.time()
        create_errors: list[str] = []

        def create(i: int) -> None:
            try:
                kube.create(names[i], spec(i))
            except Exception as exc:
                create_errors.append(f"{names[i]}: {exc}"[:300])

        with ThreadPoolExecutor(args.create_workers) as pool:
            list(pool.map(create, range(args.jobs)))
        t_created = time.time()
        log(f"created in {t_created - t_create:.1f} s ({len(create_errors)} errors); waiting for all Ready")
        if args.create_first:
            operator = start()
            u0, m0, s0 = Usage.now(pids), kube.metrics(), sim.stats()
        t_deploy = time.time() if args.create_first else t_create
        assert operator is not None

        def deploy_progress() -> str:
            row = sampler.sample().get("operator", {})
            return (
                f"  {tracker.count_ready()}/{args.jobs} Ready after {time.time() - t_deploy:.0f} s; "
                f"operator RSS {row.get('rss_mb')} MB"
            )

        all_ready = tracker.wait(
            lambda: tracker.count_ready() >= args.jobs,
            timeout=max(run.left() - 60, 10),
            progress=deploy_progress,
        )
        t_ready = time.time()
        u1, m1, s1 = Usage.now(pids), kube.metrics(), sim.stats()
        deploy: dict[str, Any] = {
            "created": "before the operator started" if args.create_first else "while the operator ran",
            "create_seconds": round(t_created - t_create, 1),
            "create_errors": create_errors[:20],
            "create_error_count": len(create_errors),
            "all_ready": all_ready,
            "seconds_to_all_ready": round(t_ready - t_deploy, 1),
            "ready": tracker.count_ready(),
            "usage": u1.since(u0),
            "apiserver": m1.since(m0, t_ready - u0.t, background_rate),
            "flink": requests_between(s0, s1),
            "operator_memory_mb": _memory_mb(operator.pid),
            "uploads": sum(s1["uploads_by_cluster"].values()),
        }
        deploy["apiserver_requests_per_deploy"] = round(deploy["apiserver"]["requests"] / max(deploy["ready"], 1), 2)
        res["deploy"] = deploy
        log(
            f"deploy: {deploy['ready']}/{args.jobs} Ready in {deploy['seconds_to_all_ready']} s; operator CPU "
            f"{deploy['usage']['cpu_share_of_one_core'].get('operator')}; RSS {deploy['operator_memory_mb']}"
        )
        if not all_ready:
            run.broke("deploy", "not all Ready", f"{deploy['ready']}/{args.jobs} Ready within the budget")
            res["deploy"]["not_ready"] = tracker.summary()
            return False
        _check_alive(operator, sim_proc)

        # -- idle -----------------------------------------------------------------------------------
        settle_max = min(args.settle_max_seconds, max(run.left() - args.idle_seconds - 300, 0))
        log(
            f"settling: at least {args.settle_seconds:.0f} s and until the operator writes under 1 request/s "
            f"to the apiserver (at most {settle_max:.0f} s)"
        )
        res["settle"] = settle(kube, args.settle_seconds, settle_max)
        log(f"settled: {res['settle']}")
        if not res["settle"]["quiet"]:
            run.broke(
                "settle",
                "no steady state",
                f"the operator still wrote {res['settle']['last_writes_per_second']} requests/s to the apiserver "
                f"{res['settle']['seconds']:.0f} s after every FlinkJob was Ready",
            )
        lines0 = _count_lines(operator.log_path)
        u0, m0, s0 = Usage.now(pids), kube.metrics(), sim.stats(per_job=True)
        time.sleep(args.idle_seconds)
        u1, m1, s1 = Usage.now(pids), kube.metrics(), sim.stats(per_job=True)
        lines1 = _count_lines(operator.log_path)
        wall = u1.t - u0.t
        flink = requests_between(s0, s1)
        per_job = flink.pop("by_job", {})
        polls_per_job_per_5s = flink["requests"] / args.jobs / (wall / 5)
        idle = {
            "usage": u1.since(u0),
            "operator_cpu_share": u1.since(u0)["cpu_share_of_one_core"].get("operator"),
            "operator_memory_mb": _memory_mb(operator.pid),
            "operator_kb_per_flinkjob": round(
                (_memory_mb(operator.pid)["rss"] - res["operator_baseline_memory_mb"]["rss"]) * 1024 / args.jobs, 1
            ),
            "apiserver": m1.since(m0, wall, background_rate),
            "flink": flink,
            "flink_requests_per_second": round(flink["requests"] / wall, 2),
            "flink_polls_per_job_per_5s": round(polls_per_job_per_5s, 4),
            "flink_requests_naming_a_job": sum(per_job.values()),
            "flink_max_requests_for_one_job": max(per_job.values(), default=0),
            "jobs_with_own_requests": len(per_job),
            "ready_at_end": tracker.count_ready(),
            "operator_log_lines_per_second": round((lines1 - lines0) / wall, 1),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }
        res["idle"] = idle
        res["idle_t"] = u1.t
        if args.py_spy is not None:
            res["idle_profile"] = profile(args.py_spy, operator.pid, work / "idle-profile.txt", 20)
        log(
            f"idle: operator CPU {idle['operator_cpu_share']} of a core; RSS {idle['operator_memory_mb']}; "
            f"Flink {idle['flink_requests_per_second']} req/s ({idle['flink_polls_per_job_per_5s']} per job per 5 s); "
            f"apiserver {idle['apiserver']['per_second_minus_background']} req/s"
        )
        _check_alive(operator, sim_proc)

        # -- reaction -------------------------------------------------------------------------------
        k = min(args.changes, args.jobs)
        chosen = [names[i] for i in spread(k, args.jobs, args.clusters, 0.0)]
        if k and run.left() < k * args.change_spacing + 120:
            run.broke("reaction", "budget", f"{run.left():.0f} s left, not enough for {k} changes")
            return False
        log(f"reaction: {k} spec changes, one every {args.change_spacing} s")
        u0, m0, s0 = Usage.now(pids), kube.metrics(), sim.stats()
        patches: list[dict[str, Any]] = []
        with tracker.cond:
            old_jobs = {n: tracker.seen[n].job_id for n in chosen}
        patch_failures: list[str] = []
        for seq, name in enumerate(chosen):
            i = int(name.split("-")[1])
            t_start = time.time()
            try:
                answer = kube.patch_spec(name, {"args": ["--id", str(i), "--change", str(seq)]})
            except (requests.RequestException, RuntimeError) as exc:
                patch_failures.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
                log(f"  patch of {name} failed after {time.time() - t_start:.1f} s: {patch_failures[-1]}")
                if len(patch_failures) >= 3:
                    run.broke("reaction", "apiserver", f"spec patches fail: {patch_failures[-1]}")
                    break
                continue
            t_done = time.time()
            patches.append(
                {
                    "name": name,
                    "old_job": old_jobs[name],
                    "t_start": t_start,
                    "t_applied": t_done,
                    "generation": int(answer["metadata"]["generation"]),
                }
            )
            time.sleep(max(0.0, args.change_spacing - (time.time() - t_start)))
        done = tracker.wait(
            lambda: all(tracker.ready_at_generation(p["name"], p["generation"]) for p in patches),
            timeout=max(min(300.0, run.left() - 30), 10),
        )
        t_end = time.time()
        u1, m1, s1 = Usage.now(pids), kube.metrics(), sim.stats()
        stops = _first_stops(s1["triggers"], patches)
        latencies = [stops[p["old_job"]] - p["t_applied"] for p in patches if p["old_job"] in stops]
        upgrade_seconds = [
            r - p["t_applied"] for p in patches if (r := tracker.ready_at_generation(p["name"], p["generation"]))
        ]
        reaction = {
            "changes": k,
            "patch_failures": patch_failures,
            "stops_seen": len(latencies),
            "all_ready_at_new_generation": done,
            "latency_s": {
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "max": round(max(latencies), 3) if latencies else None,
                "min": round(min(latencies), 3) if latencies else None,
            },
            "patch_round_trip_s_p50": percentile([p["t_applied"] - p["t_start"] for p in patches], 50),
            "upgrade_seconds_p50": percentile(upgrade_seconds, 50),
            "upgrade_seconds_max": round(max(upgrade_seconds), 2) if upgrade_seconds else None,
            "t": t_end,
            "usage": u1.since(u0),
            "apiserver": m1.since(m0, t_end - u0.t, background_rate),
            "flink": requests_between(s0, s1),
            "operator_memory_mb": _memory_mb(operator.pid),
        }
        reaction["apiserver_requests_per_upgrade"] = round(reaction["apiserver"]["requests"] / max(k, 1), 1)
        reaction["flink_requests_per_upgrade"] = round(reaction["flink"]["requests"] / max(k, 1), 1)
        res["reaction"] = reaction
        log(
            f"reaction: p50 {reaction['latency_s']['p50']} s, p99 {reaction['latency_s']['p99']} s, "
            f"max {reaction['latency_s']['max']} s over {len(latencies)}/{k}; all Ready again: {done}"
        )
        if not done:
            res["reaction"]["not_ready"] = tracker.summary([p["name"] for p in patches])
            run.broke("reaction", "not all Ready", f"{k - len(upgrade_seconds)} of {k} changes did not finish")
        _check_alive(operator, sim_proc)
        if patch_failures:
            return False

        # -- burst ----------------------------------------------------------------------------------
        b = min(args.burst, args.jobs)
        burst_names = [names[i] for i in spread(b, args.jobs, args.clusters, 0.5)]
        if run.left() < 120:
            run.broke("burst", "budget", f"{run.left():.0f} s left")
            return False
        log(f"burst: {len(burst_names)} FlinkJobs get a new jar at once")
        # Let the reaction phase's last passes end, so the burst's counts are its own.
        time.sleep(3)
        u0, m0, s0 = Usage.now(pids), kube.metrics(), sim.stats()
        with tracker.cond:
            old_jobs = {n: tracker.seen[n].job_id for n in burst_names}

        def patch_jar(name: str) -> dict[str, Any] | None:
            t_start = time.time()
            try:
                answer = kube.patch_spec(name, {"jar": {"uri": jar_b.as_uri()}})
            except (requests.RequestException, RuntimeError) as exc:
                log(f"  patch of {name} failed after {time.time() - t_start:.1f} s: {exc}"[:300])
                return None
            return {
                "name": name,
                "old_job": old_jobs[name],
                "t_start": t_start,
                "t_applied": time.time(),
                "generation": int(answer["metadata"]["generation"]),
            }

        with ThreadPoolExecutor(min(len(burst_names), 32)) as pool:
            answered = list(pool.map(patch_jar, burst_names))
        bpatches = [p for p in answered if p is not None]
        if len(bpatches) < len(answered):
            run.broke("burst", "apiserver", f"{len(answered) - len(bpatches)} of {len(answered)} spec patches failed")
        if not bpatches:
            return False
        t_first = min(p["t_start"] for p in bpatches)
        t_last_patch = max(p["t_applied"] for p in bpatches)
        done = tracker.wait(
            lambda: all(tracker.ready_at_generation(p["name"], p["generation"]) for p in bpatches),
            timeout=max(min(600.0, run.left() - 30), 10),
        )
        ready_times = [
            r for p in bpatches if (r := tracker.ready_at_generation(p["name"], p["generation"])) is not None
        ]
        t_end = time.time()
        u1, m1, s1 = Usage.now(pids), kube.metrics(), sim.stats()
        episodes = _episodes(s1, {p["old_job"] for p in bpatches})
        name_of = {p["old_job"]: p["name"] for p in bpatches}
        for e in episodes:
            e["name"] = name_of.get(e["old"])
        stops = _first_stops(s1["triggers"], bpatches)
        per_upgrade = [
            r - p["t_applied"] for p in bpatches if (r := tracker.ready_at_generation(p["name"], p["generation"]))
        ]
        burst = {
            "upgrades": len(bpatches),
            "all_ready_at_new_generation": done,
            "ready": len(ready_times),
            "patching_seconds": round(t_last_patch - t_first, 2),
            "seconds_first_patch_to_last_ready": round(max(ready_times) - t_first, 2) if ready_times else None,
            "per_upgrade_seconds": {
                "p50": percentile(per_upgrade, 50),
                "p99": percentile(per_upgrade, 99),
                "max": round(max(per_upgrade), 2) if per_upgrade else None,
            },
            "stop_calls": len(stops),
            "stop_call_spread_s": round(max(stops.values()) - min(stops.values()), 2) if stops else None,
            "max_concurrent_upgrades_seen_at_flink": max_overlap([(e["stop"], e["running"]) for e in episodes]),
            "max_concurrent_upgrades_setting": max_upgrades,
            "restored_from_own_savepoint": sum(1 for e in episodes if e["restored_ok"]),
            "new_job_submissions": len(episodes),
            "usage": u1.since(u0),
            "apiserver": m1.since(m0, t_end - u0.t, background_rate),
            "flink": requests_between(s0, s1),
            "jar_uploads": sum(s1["uploads_by_cluster"].values()) - sum(s0["uploads_by_cluster"].values()),
            "operator_memory_mb": _memory_mb(operator.pid),
        }
        burst["episodes"] = [
            {
                "name": e["name"],
                "old": e["old"][:8],
                "new": e["new"][:8],
                "stop_s": round(e["stop"] - t_first, 3),
                "running_s": round(e["running"] - t_first, 3),
            }
            for e in sorted(episodes, key=lambda e: e["stop"])
        ]
        burst["over_limit"] = _over_limit(episodes, max_upgrades, t_first)
        burst["apiserver_requests_per_upgrade"] = round(burst["apiserver"]["requests"] / max(len(bpatches), 1), 1)
        burst["flink_requests_per_upgrade"] = round(burst["flink"]["requests"] / max(len(bpatches), 1), 1)
        res["burst"] = burst
        log(
            f"burst: {burst['ready']}/{len(bpatches)} Ready at the new generation in "
            f"{burst['seconds_first_patch_to_last_ready']} s; at most {burst['max_concurrent_upgrades_seen_at_flink']} "
            f"upgrades at once at Flink (setting {max_upgrades}); {burst['jar_uploads']} jar uploads"
        )
        if not done:
            res["burst"]["not_ready"] = tracker.summary([p["name"] for p in bpatches])
            run.broke("burst", "not all Ready", f"{len(bpatches) - len(ready_times)} of {len(bpatches)} not Ready")
        _check_alive(operator, sim_proc)
        return True
    finally:
        # -- errors and the end state, whatever happened ----------------------------------------------
        with contextlib.suppress(Exception):
            finish(run, work, kube_bed, tracker, operator, sim_proc, sampler)
        sampler.stop()
        if tracker is not None:
            tracker.stop()
        if operator is not None:
            operator.stop()
        if sim_proc is not None:
            sim_proc.stop()
        if kube_bed is not None:
            kube_bed.stop()


def finish(
    run: Run,
    work: Path,
    kube_bed: Any,
    tracker: FlinkJobTracker | None,
    operator: Any,
    sim_proc: Any,
    sampler: Sampler,
) -> None:
    res = run.result
    errors: dict[str, Any] = {}
    if operator is not None:
        errors["operator_alive_at_end"] = operator.alive()
        text = operator.log_path.read_text(errors="replace") if operator.log_path.exists() else ""
        lines = text.splitlines()
        error_lines = [ln for ln in lines if " ERROR " in ln or ln.startswith("Traceback")]
        errors["operator_log_lines"] = len(lines)
        errors["operator_log_error_lines"] = len(error_lines)
        errors["operator_log_error_examples"] = _distinct(error_lines, 8)
        errors["operator_log_warning_examples"] = _distinct([ln for ln in lines if " WARNING " in ln], 8)
        with contextlib.suppress(OSError):
            errors["operator_peak_rss_mb"] = round(proc_memory_kb(operator.pid).get("VmHWM", 0) / 1024, 1)
    if sim_proc is not None and sim_proc.alive():
        with contextlib.suppress(Exception):
            stats = Sim(_sim_url(sim_proc)).stats()
            errors["flink_error_answers"] = stats["error_answers"]
            errors["flink_failed_submissions"] = sum(1 for r in stats["runs"] if r["failed"])
            errors["flink_failed_savepoint_triggers"] = sum(1 for t in stats["triggers"] if t["failed"])
            errors["flink_jobs_by_state"] = stats["jobs_by_state"]
            errors["flink_jars_left_by_cluster"] = _spread(stats["jars_by_cluster"])
            errors["flink_jar_deletes"] = stats["deletes"]
            errors["flink_max_requests_in_flight"] = stats["max_requests_in_flight"]
    if kube_bed is not None:
        with contextlib.suppress(Exception):
            kube = Kube(kube_bed.server, kube_bed.admin_token, kube_bed.ca_file)
            errors["warning_events_by_reason"] = dict(kube.warning_events())
            errors["warning_event_examples"] = kube.warning_examples
    if tracker is not None:
        errors["flinkjobs_at_end"] = tracker.summary()
        errors["tracker_errors"] = tracker.errors[:10]
    res["errors"] = errors
    samples = sampler.timeline()
    res["timeline"] = samples
    peak = max((row.get("operator", {}).get("hwm_mb", 0.0) for row in samples), default=0.0)
    res["operator_peak_rss_mb"] = max(peak, errors.get("operator_peak_rss_mb", 0.0))
    first_over = next(
        (row["t"] for row in samples if row.get("operator", {}).get("rss_mb", 0) > TARGETS["rss_mb"]), None
    )
    if first_over is not None:
        run.broke("memory", "RSS over target", f"operator RSS passed {TARGETS['rss_mb']:.0f} MB", at=first_over)
    saturated = _first_saturation(samples, "operator")
    if saturated is not None:
        run.broke("cpu", "operator CPU saturated", "operator used >= 90% of one core over 10 s", at=saturated)


def write_result(run: Run, work: Path) -> None:
    res = run.result
    targets: dict[str, Any] = {}
    idle = res.get("idle") or {}
    reaction = res.get("reaction") or {}
    burst = res.get("burst") or {}
    checks = {
        "rss_mb": (res.get("operator_peak_rss_mb"), "<="),
        "idle_cpu_share": (idle.get("operator_cpu_share"), "<="),
        "reaction_p99_s": ((reaction.get("latency_s") or {}).get("p99"), "<="),
        "idle_flink_polls_per_job_per_5s": (idle.get("flink_polls_per_job_per_5s"), "<="),
    }
    for key, (value, _) in checks.items():
        targets[key] = {"value": value, "limit": TARGETS[key], "met": value is not None and value <= TARGETS[key]}
        if value is not None and value > TARGETS[key] and not any(b["what"] == key for b in run.breaks):
            when = (reaction.get("t") if key == "reaction_p99_s" else res.get("idle_t")) or time.time()
            run.broke(key, key, f"{value} > {TARGETS[key]}", at=when)
    seen = burst.get("max_concurrent_upgrades_seen_at_flink")
    limit = burst.get("max_concurrent_upgrades_setting")
    targets["upgrades_bounded_by_setting"] = {
        "value": seen,
        "limit": limit,
        "met": seen is not None and limit is not None and (limit <= 0 or seen <= limit),
    }
    errors = res.get("errors") or {}
    no_error = (
        not errors.get("operator_log_error_lines")
        and not errors.get("warning_events_by_reason")
        and not errors.get("flink_failed_submissions")
        and bool(burst.get("all_ready_at_new_generation"))
        and bool(reaction.get("all_ready_at_new_generation"))
    )
    targets["no_error"] = {"met": no_error}
    res["targets"] = targets
    res["breaks"] = sorted(run.breaks, key=lambda b: b["t"])
    res["first_break"] = res["breaks"][0] if res["breaks"] else None
    res["work_directory"] = str(work)
    run.args.out.parent.mkdir(parents=True, exist_ok=True)
    run.args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"results in {run.args.out}")
    print(json.dumps(summary(res), indent=2))


def summary(res: Mapping[str, Any]) -> dict[str, Any]:
    idle = res.get("idle") or {}
    reaction = res.get("reaction") or {}
    burst = res.get("burst") or {}
    deploy = res.get("deploy") or {}
    errors = res.get("errors") or {}
    return {
        "settings": {
            k: (res.get("settings") or {}).get(k)
            for k in ("jobs", "clusters", "observe_interval_s", "max_concurrent_upgrades")
        },
        "deploy_seconds_to_all_ready": deploy.get("seconds_to_all_ready"),
        "operator_peak_rss_mb": res.get("operator_peak_rss_mb"),
        "idle_operator_cpu_share": idle.get("operator_cpu_share"),
        "idle_flink_requests_per_second": idle.get("flink_requests_per_second"),
        "idle_flink_polls_per_job_per_5s": idle.get("flink_polls_per_job_per_5s"),
        "idle_apiserver_requests_per_second": (idle.get("apiserver") or {}).get("per_second_minus_background"),
        "reaction_latency_s": reaction.get("latency_s"),
        "burst_seconds": burst.get("seconds_first_patch_to_last_ready"),
        "burst_max_concurrent_at_flink": burst.get("max_concurrent_upgrades_seen_at_flink"),
        "warning_events": errors.get("warning_events_by_reason"),
        "operator_log_error_lines": errors.get("operator_log_error_lines"),
        "targets": {k: v.get("met") for k, v in (res.get("targets") or {}).items()},
        "first_break": res.get("first_break"),
    }


# ------------------------------------------------------------------------------------------------
# Helpers


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.2)


def _sim_url(sim_proc: Any) -> str:
    return f"http://127.0.0.1:{sim_proc.argv[sim_proc.argv.index('--port') + 1]}"


def _check_alive(operator: Any, sim_proc: Any) -> None:
    if not operator.alive():
        raise RuntimeError(f"the operator exited:\n{operator.tail(30)}")
    if not sim_proc.alive():
        raise RuntimeError(f"the Flink simulator exited:\n{sim_proc.tail(30)}")


def _memory_mb(pid: int) -> dict[str, float]:
    mem = proc_memory_kb(pid)
    return {"rss": round(mem.get("VmRSS", 0) / 1024, 1), "peak": round(mem.get("VmHWM", 0) / 1024, 1)}


def _first_stops(triggers: list[dict[str, Any]], patches: list[dict[str, Any]]) -> dict[str, float]:
    """For each patched FlinkJob's old job: when its first stop-with-savepoint after the patch came."""
    after = {p["old_job"]: p["t_start"] for p in patches}
    stops: dict[str, float] = {}
    for trig in triggers:
        job = trig["job"]
        if job in after and trig["kind"] == "stop" and trig["t"] >= after[job] and job not in stops:
            stops[job] = trig["t"]
    return stops


def _episodes(stats: Mapping[str, Any], old_jobs: set[str]) -> list[dict[str, Any]]:
    """Each upgrade of `old_jobs` as Flink saw it: the stop call to the new job running every vertex."""
    stops: dict[str, float] = {}
    for trig in stats["triggers"]:
        if trig["job"] in old_jobs and trig["kind"] == "stop" and not trig["failed"]:
            stops.setdefault(trig["job"], trig["t"])
    out = []
    for r in stats["runs"]:
        source = r.get("from_job")
        if source in stops:
            out.append(
                {
                    "old": source,
                    "new": r["job"],
                    "stop": stops[source],
                    "running": r["running_at"] or r["t"],
                    "restored_ok": not r["failed"],
                }
            )
    return out


def operator_code_version() -> dict[str, Any]:
    """The commit the operator ran from, and a digest of uncommitted changes under operator/."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    diff = git("diff", "HEAD", "--", "operator")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "operator_uncommitted_changes": bool(diff),
        "operator_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None,
    }


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def profile(py_spy: Path, pid: int, out: Path, seconds: int) -> dict[str, Any]:
    """Samples the operator with py-spy (without pausing it) and sums the stacks: the functions the
    samples were in (inclusive), as shares of all samples."""
    done = subprocess.run(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50", "--nonblocking",
         "--format", "raw", "--output", str(out)],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        return {"error": (done.stderr or done.stdout)[-500:]}
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r" \(.*?/(site-packages|lib/python3\.\d+|operator)/", " (", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        leaf[frames[-1]] += count
    return {
        "samples": total,
        "inclusive_top": {f: round(n / total, 3) for f, n in inclusive.most_common(40)} if total else {},
        "self_top": {f: round(n / total, 3) for f, n in leaf.most_common(20)} if total else {},
    }


def _distinct(lines: list[str], n: int) -> list[str]:
    out: dict[str, str] = {}
    for line in lines:
        key = re.sub(r"[0-9a-f]{32}|\d+", "#", line.split(" ", 2)[-1])[:160]
        out.setdefault(key, line[:400])
        if len(out) >= n:
            break
    return list(out.values())


def _spread(by_cluster: Mapping[str, int]) -> dict[str, Any]:
    values = list(by_cluster.values())
    return {"clusters": len(values), "min": min(values, default=0), "max": max(values, default=0)}


def _first_saturation(samples: list[dict[str, Any]], name: str, window: float = 10.0) -> float | None:
    points = [(row["t"], row[name]["cpu_s"]) for row in samples if name in row]
    times = [t for t, _ in points]
    for t, cpu in points:
        j = bisect.bisect_left(times, t + window)
        if j < len(points) and (points[j][1] - cpu) / (points[j][0] - t) >= 0.9:
            return points[j][0]
    return None


if __name__ == "__main__":
    sys.exit(main())
