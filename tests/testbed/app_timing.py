"""Reading an application-mode upgrade's times off Flink's answers and the FlinkJob's status: pure
functions for bench/b4_app_upgrade.py and the demo (`python -m testbed demo-app`).

  * `all_running(jobs, job_id)`: `GET /jobs/overview` (live, unlike `/jobs/<id>`, which Flink serves from
    a cache refreshed every `web.refresh-interval`) says the job runs every task;
  * `ended_at(jobs, job_id)`: the job's `end-time` as Flink recorded it, once it has one;
  * `savepoint_on_host(location, ...)`: where a savepoint Flink wrote under the pods' mount lies on the
    host (its `_metadata` file's modification time is when it was completed);
  * `summarise(runs, keys)`: medians of A's and B's runs and their ratio;
  * `status_summary(flinkjob)`: one line of a FlinkJob's status.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

TERMINAL_STATES = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})


def _job(jobs: Iterable[Mapping[str, Any]], job_id: str) -> Mapping[str, Any] | None:
    return next((job for job in jobs if job.get("jid") == job_id), None)


def all_running(jobs: Iterable[Mapping[str, Any]], job_id: str) -> bool:
    """Job `job_id` of an overview's `jobs` is RUNNING with every one of its tasks RUNNING."""
    job = _job(jobs, job_id)
    if job is None or job.get("state") != "RUNNING":
        return False
    tasks = job.get("tasks") or {}
    total = int(tasks.get("total", 0) or 0)
    return total > 0 and int(tasks.get("running", 0) or 0) == total


def ended_at(jobs: Iterable[Mapping[str, Any]], job_id: str) -> float | None:
    """The end-time (seconds since the epoch) Flink recorded for job `job_id` of an overview's `jobs`,
    or None while it has not ended (or is not listed)."""
    job = _job(jobs, job_id)
    if job is None or job.get("state") not in TERMINAL_STATES:
        return None
    end = job.get("end-time")
    if not isinstance(end, int | float) or end <= 0:
        return None
    return float(end) / 1000


def savepoint_on_host(location: str, host_dir: Path, mount: str) -> Path:
    """The host directory of a savepoint Flink reports at `location` (`file:/<mount>/...` or
    `file:///<mount>/...`), written by pods that mount `host_dir` at `mount`. ValueError when the
    savepoint is not under the mount."""
    parsed = urlparse(location)
    if parsed.scheme not in ("file", "") or parsed.netloc:
        raise ValueError(f"savepoint {location!r} is not a local file path")
    path = PurePosixPath(parsed.path)
    root = PurePosixPath(mount)
    if ".." in path.parts or not path.is_relative_to(root) or path == root:
        raise ValueError(f"savepoint {location!r} is not under {mount}")
    return host_dir.joinpath(*path.relative_to(root).parts)


def summarise(runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("total", "downtime")) -> dict[str, Any]:
    """For each of `keys`: the median of the A runs, of the B runs, and A's over B's (as in B1's results).
    ValueError when A or B has no run with that key."""
    summary: dict[str, Any] = {}
    for key in keys:
        medians = {}
        for kind in ("A", "B"):
            values = [float(r[key]) for r in runs if r.get("kind") == kind and r.get(key) is not None]
            if not values:
                raise ValueError(f"no {kind} run has a {key!r} figure")
            medians[kind] = statistics.median(values)
        summary[key] = {
            "A_median": medians["A"],
            "B_median": medians["B"],
            "A_over_B": medians["A"] / medians["B"] if medians["B"] > 0 else None,
        }
    return summary


def status_summary(flinkjob: Mapping[str, Any]) -> str:
    """A FlinkJob's phase, job id, cluster readiness, last savepoint and message, one per line."""
    status = flinkjob.get("status") or {}
    savepoint = status.get("lastSavepoint") or {}
    lines = [
        f"phase:            {status.get('phase', '-')}",
        f"jobId:            {status.get('jobId', '-')}",
        f"clusterReadiness: {status.get('clusterReadiness', '-')}",
        f"image deployed:   {((status.get('deployedSpec') or {}).get('cluster') or {}).get('image', '-')}",
    ]
    if savepoint:
        lines.append(f"lastSavepoint:    {savepoint.get('path', '-')} ({savepoint.get('reason', '-')})")
    lines.append(f"message:          {status.get('message', '-')}")
    return "\n".join(lines)
