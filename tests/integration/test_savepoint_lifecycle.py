"""Savepoint lifecycle on the real bed: suspend and resume, manual and periodic savepoints,
retention with disposal through Flink, restart through a savepoint, disposal on delete."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from testbed.argocd import argocd_health
from testbed.flinkjobs import FlinkJobs, condition, is_ready_at_current_generation

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]


def on_disk(path: str) -> bool:
    """A savepoint's directory, from Flink's `file:/...` path."""
    return Path(path.removeprefix("file:")).exists()


def spec_for(flink: Any, jar: Path, **extra: Any) -> dict[str, Any]:
    return {"flinkRestUrl": flink.rest_url, "jar": {"uri": jar.as_uri()}, "parallelism": 2, "args": RATE_ARGS, **extra}


def create_running(flinkjobs: FlinkJobs, flink_rest: Any, name: str, spec: dict[str, Any]) -> tuple[str, int]:
    flinkjobs.create(name, spec)
    job_id = flinkjobs.wait(name, is_ready_at_current_generation, "Ready")["status"]["jobId"]
    return job_id, flink_rest.wait_state_counter_at_least(job_id, 100)


def savepoint_paths(status: dict[str, Any]) -> list[str]:
    return [s["path"] for s in status.get("savepointHistory") or []]


def test_suspend_stops_with_a_savepoint_and_resume_restores_it_with_state_continued(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    old_job, before = create_running(flinkjobs, flink_rest, "pausable", spec_for(flink, test_job_jar))
    flinkjobs.patch_spec("pausable", {"state": "suspended"})
    suspended = flinkjobs.wait("pausable", is_ready_at_current_generation, "Ready as Suspended")
    status = suspended["status"]
    assert status["phase"] == "Suspended"
    assert condition(suspended, "Ready")["reason"] == "Suspended"
    assert argocd_health(suspended)[0] == "Suspended"
    assert status["lastSavepoint"]["reason"] == "suspend"
    assert on_disk(status["lastSavepoint"]["path"])
    assert flink_rest.wait_job_state(old_job, ("FINISHED", "CANCELED", "FAILED")) == "FINISHED"
    assert flink_rest.running_jobs() == [], "no job runs while suspended"

    # A spec change while suspended is applied at resume.
    flinkjobs.patch_spec("pausable", {"state": "running", "parallelism": 3})
    resumed = flinkjobs.wait("pausable", is_ready_at_current_generation, "Ready after resume")
    new_job = resumed["status"]["jobId"]
    assert new_job != old_job
    assert flink_rest.restored_from(new_job) == status["lastSavepoint"]["path"]
    assert flink_rest.job_parallelism(new_job) == 3
    assert flink_rest.wait_state_counter_at_least(new_job, before + 1) > before
    assert flink_rest.restored_keys(new_job) > 0


def test_savepoint_nonce_takes_a_manual_savepoint_and_the_same_job_keeps_running(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    job_id, _ = create_running(flinkjobs, flink_rest, "manual", spec_for(flink, test_job_jar))
    flinkjobs.patch_spec("manual", {"savepointNonce": 1})
    resource = flinkjobs.wait(
        "manual", lambda r: (r.get("status") or {}).get("savepointNonce") == 1, "the manual savepoint"
    )
    status = resource["status"]
    assert status["jobId"] == job_id
    assert flink_rest.job_state(job_id) == "RUNNING"
    assert status["savepointHistory"][0]["reason"] == "manual"
    assert on_disk(status["savepointHistory"][0]["path"])
    assert condition(resource, "Ready")["status"] == "True"


def test_periodic_savepoints_with_a_history_limit_dispose_of_older_ones_and_never_the_restore_point(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    spec = spec_for(flink, test_job_jar, savepointIntervalSeconds=4, savepointHistoryLimit=2)
    job_id, _ = create_running(flinkjobs, flink_rest, "periodic", spec)

    def disposed() -> list[str]:
        events = [e for e in flinkjobs.events("periodic") if e["reason"] == "SavepointDisposed"]
        return [e["message"].split(" ", 2)[1] for e in events]

    flinkjobs.wait("periodic", lambda r: len(disposed()) >= 2, "two savepoints disposed of", timeout=120)
    resource = flinkjobs.wait(
        "periodic", lambda r: len(savepoint_paths(r.get("status") or {})) == 2, "history back at its limit"
    )
    status = resource["status"]
    assert {s["reason"] for s in status["savepointHistory"]} == {"periodic"}
    assert status["jobId"] == job_id and flink_rest.job_state(job_id) == "RUNNING"
    gone = disposed()
    for path in gone:
        assert not on_disk(path), f"{path} was reported disposed of but is still on disk"
        assert path not in savepoint_paths(status)
    assert status["lastSavepoint"]["path"] not in gone
    assert on_disk(status["lastSavepoint"]["path"]), "the restore point is never disposed of"
    completed = [e for e in flinkjobs.events("periodic") if e["reason"] == "SavepointCompleted"]
    assert len(completed) >= 3


def test_periodic_savepoints_every_10_seconds_are_triggered_10_to_11_seconds_apart(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    # Checkpoints far apart, so Flink's checkpoint statistics show each savepoint as the latest one.
    args = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "600000"]
    spec = {**spec_for(flink, test_job_jar, savepointIntervalSeconds=10), "args": args}
    job_id, _ = create_running(flinkjobs, flink_rest, "every-ten", spec)
    triggered: dict[int, int] = {}  # savepoint id -> when Flink triggered it (ms since the epoch)
    deadline = time.monotonic() + 120
    while len(triggered) < 5 and time.monotonic() < deadline:
        latest = (flink_rest.checkpoints(job_id).get("latest") or {}).get("savepoint")
        if latest:
            triggered[int(latest["id"])] = int(latest["trigger_timestamp"])
        time.sleep(0.5)
    times = sorted(triggered.values())
    assert len(times) >= 5, f"only {len(times)} periodic savepoints within 120 s: {times}"
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(times)]
    assert all(10.0 <= gap <= 11.0 for gap in gaps), f"seconds between savepoint triggers: {gaps}"
    status = flinkjobs.get("every-ten")["status"]
    assert status["jobId"] == job_id and {s["reason"] for s in status["savepointHistory"]} == {"periodic"}


def test_restart_nonce_restarts_the_job_through_a_savepoint_with_state_continued(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    old_job, before = create_running(flinkjobs, flink_rest, "restart", spec_for(flink, test_job_jar))
    flinkjobs.patch_spec("restart", {"restartNonce": 1})
    resource = flinkjobs.wait("restart", is_ready_at_current_generation, "Ready after restart")
    new_job = resource["status"]["jobId"]
    assert new_job != old_job
    assert flink_rest.restored_from(new_job) == resource["status"]["lastSavepoint"]["path"]
    assert flink_rest.wait_state_counter_at_least(new_job, before + 1) > before
    assert flink_rest.running_jobs() == [new_job]


def test_dispose_on_delete_removes_older_savepoints_and_keeps_the_final_one(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    spec = spec_for(flink, test_job_jar, disposeSavepointsOnDelete=True)
    create_running(flinkjobs, flink_rest, "tidy", spec)
    flinkjobs.patch_spec("tidy", {"savepointNonce": 1})
    manual = flinkjobs.wait("tidy", lambda r: (r.get("status") or {}).get("savepointNonce") == 1, "manual savepoint")
    older = manual["status"]["lastSavepoint"]["path"]
    assert on_disk(older)
    flinkjobs.delete("tidy")
    flinkjobs.wait_gone("tidy")
    deleted = [e["message"] for e in flinkjobs.events("tidy") if e["reason"] == "Deleted"]
    assert deleted, flinkjobs.events("tidy")
    final = deleted[-1].split("final savepoint ", 1)[1].split(" ", 1)[0]
    assert final != older
    assert on_disk(final), "the final savepoint is always kept"
    assert not on_disk(older)
