"""B2: in-place rescale through Flink's adaptive scheduler against a savepoint rescale, on the real bed.

One FlinkJob (the test job, 200 records/s, checkpoints every second) on one session cluster that
runs the adaptive scheduler; the operator, a real `python -m flinkop` process, makes every rescale.
Both methods make the same parallelism change, chosen by the FlinkJob's `rescaleMode` in the patch:

A: `{rescaleMode: InPlace, parallelism: N}`: PUT /jobs/<id>/resource-requirements, same job.
B: `{rescaleMode: Savepoint, parallelism: N}`: stop with a savepoint, a new job from it at N.

Pairs run A then B. Pair 0 changes low -> high, pair 1 high -> low, and so on: each pair compares
the same change, and between A and B an unmeasured in-place rescale ("reset") brings the job back.

Measured from the job's own progress: a thread reads, every 100 ms, the live `/jobs/overview`, picks
the newest job that has not ended (so it follows the new job id of a savepoint rescale), and reads
its `counter.maxCount` gauge (`metrics.fetcher.update-interval` is 50 ms on this cluster).
- downtime: the longest time between two successive reads at which the counter rose, around the
  rescale: of such gaps, from 1 s before the patch until the job has run again for `--settle`
  seconds, the one that overlaps most the time Flink ran no task of the job (by its timestamps,
  below), so that a read delayed elsewhere in the window by a busy machine is not taken for it
  (`longest_gap_in_window` is recorded too);
- downtime_from_counts: how far, in seconds, the counter's line after the gap (least squares over the
  reads from 0.3 s after it to the end of the window) runs behind its line before (the 3 s up to the
  gap), at the count where it stopped. The source is rate-limited and never catches up, so this is
  the time the job lost, independent of the 100 ms read grid and of when single reads happened.
  Records replayed after a restore from a checkpoint count as lost time here, not in the gap (which
  ends at the first rise after the restart);
- wall: from the patch until a read of `/jobs/overview` shows every task RUNNING at the new
  parallelism (100 ms resolution);
- cross-check from Flink's own timestamps: `flink_gap` = the last subtask's RUNNING time (from
  `/jobs/<id>/vertices/<v>/subtasktimes`) minus, in place, the moment the adaptive scheduler entered
  Restarting (from its rescale history, `/jobs/<id>/rescales/details/<uuid>`), or, by savepoint,
  the old job's end-time; `flink_wall` = the last subtask's RUNNING time minus the patch.
- ready: from the patch until the FlinkJob is Ready at its new generation (the operator's view).

    PYTHONPATH=tests:operator python bench/b2_rescale_downtime.py --pairs 5 --out bench/results/b2.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})
COUNTER_METRIC = "counter.maxCount"
NAME = "bench"
T = TypeVar("T")

# On top of the bed's adaptive-scheduler settings (tests/testbed/flink.py, which sets
# jobmanager.scheduler: adaptive). Flink 2.x names (FLIP-472 renamed them in 2.0).
FLINK_EXTRA_CONFIG: dict[str, str] = {
    # The minimum time between two rescales of a job (default 30 s): runs follow each other closely.
    "jobmanager.adaptive-scheduler.executing.cooldown-after-rescaling": "1s",
    # How long a running job waits after a change when only *sufficient*, not the desired, resources are
    # there (default 60 s). Here the desired slots are free, so Flink rescales without waiting; kept low.
    "jobmanager.adaptive-scheduler.executing.resource-stabilization-timeout": "1s",
    # The same at submission (default 10 s): it would only delay B's new job if slots were short.
    "jobmanager.adaptive-scheduler.submission.resource-stabilization-timeout": "1s",
    # Left at its default: jobmanager.adaptive-scheduler.rescale-trigger.max-delay = checkpoint interval
    # x (rescale-trigger.max-checkpoint-failures + 1) = 3 s. Since FLIP-461 a rescale waits for the next
    # completed checkpoint (at most that long) and restarts from it: the job keeps processing meanwhile,
    # and little is replayed. The effective values are read back from /jobs/<id>/rescales/config.
    # Flink's rescale timeline (off by default: 0), for the cross-check.
    "web.adaptive-scheduler.rescale-history.size": "50",
    # The REST API's metric store (default 10 s; the bed uses 500 ms). A REST read starts a refresh when
    # the last one is older than this and answers from the store as it is: at 100 ms, reads every 100 ms
    # refreshed it only every other read. At 50 ms each read shows what the previous one fetched.
    "metrics.fetcher.update-interval": "50",
}


@dataclass(frozen=True)
class Sample:
    t: float  # time.time() when the counter was read (or the overview, if no counter was read)
    job_id: str | None  # the newest job that has not ended
    state: str | None
    tasks_total: int
    tasks_running: int
    counter: int | None  # None: unreadable, or 0 (the new tasks have processed nothing yet)


class Sampler(threading.Thread):
    """Reads the live job overview and the counter of the current job every `interval` seconds."""

    def __init__(self, rest_url: str, interval: float = 0.1) -> None:
        super().__init__(name="b2-sampler", daemon=True)
        self.rest_url = rest_url
        self.interval = interval
        self.samples: list[Sample] = []
        self.errors = 0
        self._session = requests.Session()
        self._vertex: dict[str, str] = {}  # job id -> id of the counter's vertex
        self._last_vertex: str | None = None  # the same in every job of this program (set by its uid)
        self._halt = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            try:
                self.samples.append(self._sample())
            except Exception:  # never die: a missing sample is a gap, which is what we measure
                self.errors += 1
                self.samples.append(Sample(time.time(), None, None, 0, 0, None))
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # overran (a slow answer): go on from now, no burst of catch-up reads
                next_at, delay = time.monotonic(), 0.0
            self._halt.wait(delay)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)

    def since(self, t: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.t >= t]

    def _get(self, path: str, **params: str) -> Any:
        resp = self._session.get(self.rest_url + path, params=params or None, timeout=2)
        resp.raise_for_status()
        return resp.json()

    def _sample(self) -> Sample:
        jobs = [j for j in self._get("/jobs/overview")["jobs"] if j["state"] not in TERMINAL]
        t = time.time()
        if not jobs:
            return Sample(t, None, None, 0, 0, None)
        job = max(jobs, key=lambda j: int(j.get("start-time", 0)))
        job_id, tasks = str(job["jid"]), job.get("tasks", {})
        total, running = int(tasks.get("total", 0)), int(tasks.get("running", 0))
        counter = None
        with contextlib.suppress(requests.RequestException, KeyError, ValueError):
            if job_id not in self._vertex:
                # /jobs/<id> comes from Flink's execution-graph cache (web.refresh-interval, 3 s): read
                # while the job initializes, it lists no vertices for up to 3 s. Meanwhile the counter's
                # vertex id of the previous job is tried (uids make it the same).
                vertices = self._get(f"/jobs/{job_id}")["vertices"]
                found = [str(v["id"]) for v in vertices if str(v["name"]).startswith("counter")]
                if found:
                    self._vertex[job_id] = self._last_vertex = found[0]
            vertex = self._vertex.get(job_id, self._last_vertex)
            if vertex is None:
                return Sample(t, job_id, str(job["state"]), total, running, None)
            path = f"/jobs/{job_id}/vertices/{vertex}/subtasks/metrics"
            answer = self._get(path, get=COUNTER_METRIC, agg="max")
            t = time.time()
            values = [int(float(m["max"])) for m in answer if m.get("id") == COUNTER_METRIC and "max" in m]
            counter = values[0] if values and values[0] > 0 else None
        return Sample(t, job_id, str(job["state"]), total, running, counter)


def progress_times(samples: list[Sample]) -> list[float]:
    """Times of the reads at which the counter had risen since the previous readable read.

    Only a rise counts: right after an in-place restart Flink's metric store can still hold the old
    subtasks' values, and a switch from those to the new ones may lower the maximum without any
    record being processed. (A restore from a checkpoint that replays records then counts from the
    second read after it, at most one read interval late.)
    """
    out, previous = [], None
    for s in samples:
        if s.counter is None:
            continue
        if previous is not None and s.counter > previous:
            out.append(s.t)
        previous = s.counter
    return out


def counter_gaps(samples: list[Sample]) -> list[tuple[float, float]]:
    """(start, end) of every time between two successive reads at which the counter rose."""
    times = progress_times(samples)
    if len(times) < 2:
        raise RuntimeError("the counter did not move in the measurement window")
    return list(itertools.pairwise(times))


def rescale_gap(gaps: list[tuple[float, float]], down_from: float, down_to: float) -> tuple[float, float]:
    """The gap that overlaps most the time in which Flink ran no task of the job, `down_from` to `down_to`
    (by its own timestamps): the rescale's, not a hiccup of the reads elsewhere in the window (in place,
    a rescale stops the job for about as long as a busy machine can delay a read)."""
    return max(gaps, key=lambda g: (min(g[1], down_to) - max(g[0], down_from), g[1] - g[0]))


def counter_line(samples: list[Sample], start: float, end: float, origin: float) -> tuple[float, float]:
    """(value at `origin`, rise per second): a least-squares line through the readable reads between
    two times (a line, not two reads: each read shows what Flink fetched up to ~100 ms before it)."""
    points = [(s.t - origin, float(s.counter)) for s in samples if s.counter is not None and start <= s.t <= end]
    if len(points) < 5 or points[-1][0] - points[0][0] < 1.0:
        raise RuntimeError(f"too few counter reads between {start - origin:.1f} s and {end - origin:.1f} s")
    slope, intercept = statistics.linear_regression([t for t, _ in points], [c for _, c in points])
    return intercept, slope


def unreadable_while_running(samples: list[Sample]) -> float:
    """Seconds in which every task ran but no count was read: no metric yet, or 0 (nothing processed
    since the tasks started). Long stretches of it would point at the reads, not at the job."""
    return sum(
        b.t - a.t
        for a, b in itertools.pairwise(samples)
        if a.counter is None and a.state == "RUNNING" and 0 < a.tasks_running == a.tasks_total
    )


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


class Bench:
    def __init__(self, args: argparse.Namespace, rest: Any, jobs: Any, sampler: Sampler, vertices: int) -> None:
        self.args = args
        self.rest = rest
        self.jobs = jobs
        self.sampler = sampler
        self.vertices = vertices  # job vertices (tasks per parallelism unit)

    def settle(self, since: float) -> None:
        """Waits until the counter has risen over `--settle` seconds since `since`."""

        def settled() -> bool | None:
            times = progress_times(self.sampler.since(since))
            return True if times and times[-1] - times[0] >= self.args.settle else None

        wait_until(f"{self.args.settle:g} s of counter progress", settled, self.args.timeout)

    def job_id(self) -> str:
        return str(self.jobs.status(NAME)["jobId"])

    def rescale(self, kind: str, mode: str, source: int, target: int, pair: int) -> dict[str, Any]:
        """One rescale by the operator, from the patch until the job has run `--settle` s at `target`."""
        from testbed.flinkjobs import is_ready_at_current_generation

        before = self.job_id()
        t0 = time.time()
        self.jobs.patch_spec(NAME, {"rescaleMode": mode, "parallelism": target})

        def at_target() -> Sample | None:
            for s in self.sampler.since(t0):
                total = self.vertices * target
                if s.state == "RUNNING" and s.tasks_total == total and s.tasks_running == total:
                    return s
            return None

        end: Sample = wait_until(f"every task RUNNING at parallelism {target}", at_target, self.args.timeout)
        self.jobs.wait(NAME, is_ready_at_current_generation, "Ready after the rescale", timeout=self.args.timeout)
        t_ready = time.time()
        after = self.job_id()
        if after != end.job_id:
            raise RuntimeError(f"the FlinkJob says job {after}, Flink runs {end.job_id} at the new parallelism")
        if (mode == "InPlace") != (after == before):
            raise RuntimeError(f"{mode} rescale went from job {before} to job {after}")

        # Let it run again for --settle seconds (the end of the measurement window), with a checkpoint.
        self.settle(end.t)
        self.rest.wait_checkpoint_completed(after)
        window = self.sampler.since(t0 - 1.0)
        flink = self.flink_times(before, after, t0)
        gaps = counter_gaps(window)
        gap_start, gap_end = rescale_gap(gaps, flink["stop"], flink["all_running"])
        gap = gap_end - gap_start
        first_after = next(s for s in window if s.t == gap_end)
        last_before = next(s for s in reversed(window) if s.t == gap_start)
        assert first_after.counter is not None and last_before.counter is not None
        # The source is rate-limited, so the counter never catches up: how far its line after the gap
        # runs behind its line before, in seconds, is the time the job lost (replayed records included).
        at_t0_before, rate_before = counter_line(self.sampler.since(t0 - 3.0), t0 - 3.0, gap_start, t0)
        at_t0_after, rate_after = counter_line(window, gap_end + 0.3, window[-1].t, t0)
        stopped_at = at_t0_before + rate_before * (gap_start - t0)  # the count when the job stopped
        lost = (stopped_at - at_t0_after) / rate_after - (gap_start - t0)
        run = {
            "kind": kind,
            "pair": pair,
            "mode": mode,
            "from": source,
            "to": target,
            "job_before": before,
            "job_after": after,
            "downtime": gap,
            "downtime_from_counts": lost,
            "wall": end.t - t0,
            "ready": t_ready - t0,
            "flink_gap": flink["all_running"] - flink["stop"],
            "flink_wall": flink["all_running"] - t0,
            "gap_starts_after_patch": gap_start - t0,
            "longest_gap_in_window": max(b - a for a, b in gaps),
            "counter_before_gap": last_before.counter,
            "counter_after_gap": first_after.counter,
            "counter_rate_before": rate_before,
            "counter_rate_after": rate_after,
            "unreadable_while_running": unreadable_while_running(window),
            "flink_timestamps": {k: v - t0 for k, v in flink.items()},
            "trace": [
                [round(s.t - t0, 3), s.job_id[:8] if s.job_id else None, s.state, s.tasks_running, s.counter]
                for s in window
            ],
        }
        return run

    def flink_times(self, before: str, after: str, t0: float) -> dict[str, float]:
        """Flink's own timestamps (epoch seconds): when processing stopped, and when the last subtask ran."""
        out: dict[str, float] = {}
        if before == after:  # in place: the adaptive scheduler's rescale timeline
            history = self.rest.get(f"/jobs/{after}/rescales/history")
            ours = [
                r
                for r in history
                if r.get("triggerCause") == "UPDATE_REQUIREMENT" and r["startTimestampInMillis"] >= t0 * 1000
            ]
            if len(ours) != 1:
                raise RuntimeError(f"expected one rescale of job {after} since the patch, Flink lists {ours}")
            details = self.rest.get(f"/jobs/{after}/rescales/details/{ours[0]['rescaleUuid']}")
            out["requested"] = details["startTimestampInMillis"] / 1000
            restarting = [s for s in details["schedulerStates"] if s["state"] == "Restarting"]
            out["stop"] = restarting[0]["enterTimestampInMillis"] / 1000
        else:  # by savepoint: the old job's end

            def ended() -> float | None:
                end = float(self.rest.job(before).get("end-time") or -1)
                return end / 1000 if end > 0 else None

            out["stop"] = wait_until(f"job {before}'s end-time", ended, 30, 0.2)

        def all_running() -> float | None:
            latest = 0.0
            for vertex in self.rest.job(after)["vertices"]:
                times = self.rest.get(f"/jobs/{after}/vertices/{vertex['id']}/subtasktimes")["subtasks"]
                running = [float(s["timestamps"].get("RUNNING", 0)) / 1000 for s in times]
                if len(running) != int(vertex["parallelism"]) or min(running) < out["stop"]:
                    return None  # the execution graph cache (web.refresh-interval) still has the old one
                latest = max(latest, *running)
            return latest

        out["all_running"] = wait_until(f"subtask times of job {after}", all_running, 30, 0.5)
        return out


# (key in a run, column title): what summarize() and print_table() report.
COLUMNS = (
    ("downtime", "downtime: longest counter gap (s)"),
    ("downtime_from_counts", "downtime from counts (s)"),
    ("flink_gap", "Flink gap (s)"),
    ("wall", "wall to new parallelism (s)"),
    ("flink_wall", "Flink wall (s)"),
    ("ready", "Ready (s)"),
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r["kind"] == kind))

    summary: dict[str, Any] = {}
    for key, _ in COLUMNS:
        a, b = median("A", key), median("B", key)
        summary[key] = {"in_place_median": a, "savepoint_median": b, "in_place_over_savepoint": a / b}
    pairs = sorted({r["pair"] for r in runs if r["kind"] in ("A", "B")})
    for key in ("downtime", "downtime_from_counts"):
        summary[f"{key}_ratio_per_pair"] = [
            next(r[key] for r in runs if r["kind"] == "A" and r["pair"] == p)
            / next(r[key] for r in runs if r["kind"] == "B" and r["pair"] == p)
            for p in pairs
        ]
    return summary


def print_table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print("\n| pair | change | method | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for r in runs:
        if r["kind"] in ("A", "B"):
            method = "in place" if r["kind"] == "A" else "savepoint"
            cells = " | ".join(f"{r[key]:.2f}" for key, _ in COLUMNS)
            print(f"| {r['pair']} | {r['from']} -> {r['to']} | {method} | {cells} |")
    for method, column in (("in place", "in_place_median"), ("savepoint", "savepoint_median")):
        cells = " | ".join(f"**{summary[key][column]:.2f}**" for key, _ in COLUMNS)
        print(f"| **median** | | {method} | {cells} |")
    cells = " | ".join(f"**{summary[key]['in_place_over_savepoint']:.2f}**" for key, _ in COLUMNS)
    print(f"| **in place / savepoint** | | | {cells} |")
    resets = [r for r in runs if r["kind"] == "reset"]
    if resets:
        print(
            "\nunmeasured in-place resets between A and B (for reference): downtime "
            + ", ".join(f"{r['downtime']:.2f}" for r in resets)
            + " s; from counts "
            + ", ".join(f"{r['downtime_from_counts']:.2f}" for r in resets)
            + " s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=5, help="A/B pairs (A: in place, B: savepoint)")
    parser.add_argument("--low", type=int, default=2, help="the lower parallelism")
    parser.add_argument("--high", type=int, default=3, help="the higher parallelism")
    parser.add_argument("--rate", type=int, default=200, help="records per second of the test job")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of progress after each rescale")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a rescale may take at most")
    parser.add_argument("--out", type=Path, default=Path("bench/results/b2.json"))
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and state (kept anyway on failure)")
    parser.add_argument(
        "--flink-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Flink setting over the bench's own (repeatable), e.g. "
        "jobmanager.adaptive-scheduler.rescale-trigger.max-delay=0ms",
    )
    parser.add_argument("--operator-verbose", action="store_true", help="debug log (slower; to see where time goes)")
    args = parser.parse_args()
    if args.pairs < 1 or not 1 <= args.low < args.high:
        parser.error("need --pairs >= 1 and 1 <= --low < --high")
    if any("=" not in item for item in args.flink_config):
        parser.error("--flink-config takes KEY=VALUE")
    flink_config = FLINK_EXTRA_CONFIG | dict(item.split("=", 1) for item in args.flink_config)

    from testbed.flink import start_flink
    from testbed.flink_rest import FlinkRest
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
    from testbed.jobs import build_test_job
    from testbed.kube import start_kube
    from testbed.operator_process import start_operator

    job_args = ["--rate", str(args.rate), "--keys", "4", "--checkpoint-interval-ms", "1000"]
    work = Path(tempfile.mkdtemp(prefix="flinkop-b2-"))
    ok = False
    flink: Any = None
    operator: Any = None
    with contextlib.ExitStack() as stack:
        try:
            kube = start_kube(work / "kube")
            stack.callback(kube.stop)
            flink = start_flink(work / "flink", adaptive=True, extra_config=flink_config)
            stack.callback(flink.stop)
            jar = build_test_job(work / "jobs")
            repo = Path(__file__).resolve().parents[1]
            kube.kubectl("apply", "-f", str(repo / "crds" / "flinkjob.yaml"))
            kube.kubectl("wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io")
            operator = start_operator(
                work / "operator", kube.admin_kubeconfig, args=("--verbose",) if args.operator_verbose else ()
            )
            stack.callback(operator.stop)
            rest = FlinkRest(flink.rest_url)
            jobs = FlinkJobs(kube.api_client(), "default")
            sampler = Sampler(flink.rest_url)
            sampler.start()
            stack.callback(sampler.stop)

            spec = {
                "flinkRestUrl": flink.rest_url,
                "jar": {"uri": jar.as_uri()},
                "args": job_args,
                "parallelism": args.low,
                "rescaleMode": "InPlace",
                "minRescaleIntervalSeconds": 0,  # back-to-back rescales are the point here
            }
            jobs.create(NAME, spec)
            job_id = jobs.wait(NAME, is_ready_at_current_generation, "Ready", timeout=args.timeout)["status"]["jobId"]
            rest.wait_job_running(job_id)
            rest.wait_checkpoint_completed(job_id)
            rest.wait_state_counter_at_least(job_id, 50)
            vertices = len(rest.job(job_id)["vertices"])
            flink_settings = rest.get(f"/jobs/{job_id}/rescales/config")
            bench = Bench(args, rest, jobs, sampler, vertices)
            bench.settle(time.time())

            runs: list[dict[str, Any]] = []
            current = args.low
            for pair in range(args.pairs):
                source = current
                target = args.high if source == args.low else args.low
                for kind, mode in (("A", "InPlace"), ("reset", "InPlace"), ("B", "Savepoint")):
                    to = source if kind == "reset" else target
                    runs.append(bench.rescale(kind, mode, current, to, pair))
                    current = to
                    brief = {k: v for k, v in runs[-1].items() if k not in ("trace", "flink_timestamps")}
                    print(json.dumps(brief), flush=True)

            summary = summarize(runs)
            summary["sampling"] = {
                "reads": len(sampler.samples),
                "median_interval_s": statistics.median(b.t - a.t for a, b in itertools.pairwise(sampler.samples)),
                "errors": sampler.errors,
            }
            result = {
                "params": {
                    "pairs": args.pairs,
                    "low": args.low,
                    "high": args.high,
                    "job_args": job_args,
                    "settle_s": args.settle,
                    "sample_interval_s": sampler.interval,
                },
                "flink_extra_config": flink_config,
                "flink_rescale_config": flink_settings,
                "runs": runs,
                "summary": summary,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
            print_table(runs, summary)
            print("\nadaptive scheduler settings as Flink reports them:", json.dumps(flink_settings))
            print(f"raw results: {args.out}")
            ok = True
        except BaseException:
            traceback.print_exc()
            if operator is not None:
                print(f"--- operator ({operator.log_path}) ---\n{operator.tail(60)}", file=sys.stderr)
            if flink is not None:
                print(flink.log_tails(40), file=sys.stderr)
            raise
        finally:
            stack.close()  # sampler, operator, Flink, kube-apiserver: also when interrupted
            if ok and not args.keep_workdir:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"work directory kept: {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
