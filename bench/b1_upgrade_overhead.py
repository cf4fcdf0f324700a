"""B1: the operator's savepoint upgrade against the same REST calls made by hand, on the real bed.

A: `kubectl patch`-equivalent jar change of a FlinkJob; the operator does the rest.
B: a minimal script making the operator's calls in the operator's order, as fast as it can: upload
   the new jar, stop with a savepoint, poll it at the operator's pace (every 0.1 s), run the new jar
   from it, wait until every vertex runs. `flink run -s <savepoint> new.jar` ships the jar too; B
   uploads it before the stop, as the operator does, so the upload is no downtime for either.
Pairs run interleaved (A B A B ...), each alternating between two jars with the same program.
For both, the end is observed the same way: this script polls Flink's live `/jobs/overview` every
10 ms for the new job with every task RUNNING. Total = end minus the patch (A) or B's first call;
downtime = end minus the old job's end-time as Flink records it. B's upload time is kept too
(`upload`), so B's total without it can be read off the raw figures.

    PYTHONPATH=tests:operator python bench/b1_upgrade_overhead.py --pairs 5 --out bench/results/b1.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import requests

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]
B_SAVEPOINT_POLL = 0.1  # the operator's pace in the first 2 s of a stop (flinkop.plan.POLL_STOPPING)


def new_running_job(rest_url: str, not_ids: set[str], timeout: float = 120.0) -> tuple[str, float]:
    """Polls every 10 ms for a job not in `not_ids` with every task RUNNING (at 50 ms, the lag of
    that poll alone, 0 to 50 ms, moved a single run's ratio by up to 0.15).

    Read from `/jobs/overview`, which Flink answers live: `/jobs/<id>` is served from the
    execution-graph cache (`web.refresh-interval`, 3 s) and would quantise the end to 3 s steps.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in requests.get(f"{rest_url}/jobs/overview", timeout=5).json()["jobs"]:
            if job["jid"] in not_ids or job["state"] != "RUNNING":
                continue
            tasks = job.get("tasks", {})
            if tasks.get("total", 0) > 0 and tasks.get("running") == tasks.get("total"):
                return job["jid"], time.time()
        time.sleep(0.01)
    raise TimeoutError("no new job with every task RUNNING")


def end_time(rest_url: str, job_id: str) -> float:
    for _ in range(100):
        end = requests.get(f"{rest_url}/jobs/{job_id}", timeout=5).json().get("end-time", -1)
        if end and end > 0:
            return float(end) / 1000
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} has no end-time")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/b1.json"))
    parser.add_argument("--operator-verbose", action="store_true", help="debug log (slower; to see where time goes)")
    args = parser.parse_args()

    from testbed.flink import start_flink
    from testbed.flink_rest import FlinkRest
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
    from testbed.jobs import build_test_job
    from testbed.kube import start_kube
    from testbed.operator_process import start_operator

    work = Path(tempfile.mkdtemp(prefix="flinkop-b1-"))
    kube = start_kube(work / "kube")
    flink = start_flink(work / "flink")
    operator = None
    try:
        jar_a = build_test_job(work / "jobs")
        jar_b = work / "jobs" / "flinkop-testjob-b.jar"
        shutil.copy(jar_a, jar_b)
        with zipfile.ZipFile(jar_b, "a") as zf:
            zf.writestr("FLINKOP-BENCH", "b\n")
        repo = Path(__file__).resolve().parents[1]
        kube.kubectl("apply", "-f", str(repo / "crds" / "flinkjob.yaml"))
        kube.kubectl("wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io")
        operator = start_operator(
            work / "operator", kube.admin_kubeconfig, args=("--verbose",) if args.operator_verbose else ()
        )
        rest = FlinkRest(flink.rest_url)
        jobs = FlinkJobs(kube.api_client(), "default")

        # A's resource and B's hand-run job, both running before the first pair.
        jobs.create(
            "bench",
            {"flinkRestUrl": flink.rest_url, "jar": {"uri": jar_a.as_uri()}, "parallelism": 2, "args": RATE_ARGS},
        )
        a_job = jobs.wait("bench", is_ready_at_current_generation, "Ready", timeout=120)["status"]["jobId"]
        b_jar = rest.upload_jar(jar_a)
        b_job = rest.run_jar(b_jar, 2, args=RATE_ARGS)
        rest.wait_job_running(b_job)
        rest.wait_checkpoint_completed(a_job)
        rest.wait_checkpoint_completed(b_job)

        runs: list[dict[str, Any]] = []
        for i in range(args.pairs):
            # A: the operator.
            target = jar_b if i % 2 == 0 else jar_a
            t0 = time.time()
            jobs.patch_spec("bench", {"jar": {"uri": target.as_uri()}})
            new_a, t_end = new_running_job(flink.rest_url, {a_job, b_job})
            old_end = end_time(flink.rest_url, a_job)
            runs.append(
                {"kind": "A", "pair": i, "total": t_end - t0, "downtime": t_end - old_end, "at": [t0, old_end, t_end]}
            )
            jobs.wait("bench", is_ready_at_current_generation, "Ready", timeout=120)
            a_job = new_a
            rest.wait_checkpoint_completed(a_job)
            # B: by hand, the same calls.
            t0 = time.time()
            new_jar = rest.upload_jar(target)
            t_uploaded = time.time()
            savepoint = rest.stop_with_savepoint(b_job, poll_interval=B_SAVEPOINT_POLL)
            new_b = rest.run_jar(new_jar, 2, args=RATE_ARGS, savepoint_path=savepoint)
            _, t_end = new_running_job(flink.rest_url, {a_job, b_job})
            old_end = end_time(flink.rest_url, b_job)
            runs.append(
                {
                    "kind": "B",
                    "pair": i,
                    "total": t_end - t0,
                    "downtime": t_end - old_end,
                    "upload": t_uploaded - t0,
                    "at": [t0, old_end, t_end],
                }
            )
            rest.request("DELETE", f"/jars/{b_jar}")
            b_job, b_jar = new_b, new_jar
            rest.wait_checkpoint_completed(b_job)
            print(json.dumps(runs[-2:]), flush=True)

        def median(kind: str, key: str) -> float:
            return statistics.median(r[key] for r in runs if r["kind"] == kind)

        summary = {
            key: {
                "A_median": median("A", key),
                "B_median": median("B", key),
                "A_over_B": median("A", key) / median("B", key),
            }
            for key in ("total", "downtime")
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        return 0
    finally:
        if operator is not None:
            operator.stop()
        flink.stop()
        kube.stop()


if __name__ == "__main__":
    sys.exit(main())
