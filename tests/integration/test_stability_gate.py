"""The stability gate on the real bed: a new version counts as started only once every vertex runs
and a checkpoint completed after its start and its last restart. One that fails on its restored state
on every record (RUNNING -> RESTARTING -> RUNNING under Flink's restart strategy, "running" now and
then) is cancelled and rolled back with its state intact; one that fails once and then runs passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_operator_upgrades import RATE_ARGS, assert_restored_with_state, deploy_and_count, job_spec, wait_ready
from testbed.flinkjobs import FlinkJobs, condition, is_stalled

pytestmark = pytest.mark.integration


def test_a_new_version_failing_on_its_restored_state_is_rolled_back_with_state_intact(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    old_job, before = deploy_and_count(flinkjobs, flink_rest, "loops", job_spec(flink, test_job_jar))
    flinkjobs.patch_spec("loops", {"args": [*RATE_ARGS, "--fail-on-state"]})
    resource = flinkjobs.wait(
        "loops",
        lambda r: is_stalled(r, "UnstableStart") and r["status"].get("phase") == "Running",
        "rolled back after an unstable start",
        timeout=240,
    )
    stalled = condition(resource, "Stalled")["message"]
    assert "did not pass the stability gate" in stalled
    assert "--fail-on-state given" in stalled  # Flink's root exception, from the job's exceptions
    assert condition(resource, "Ready")["status"] == "False"
    assert "--fail-on-state" not in resource["status"]["lastStableSpec"]["args"]
    # The unstable job was cancelled, the rolled-back one runs alone, from the upgrade's savepoint.
    assert_restored_with_state(flink_rest, resource, old_job, before)
    reasons = [e["reason"] for e in flinkjobs.events("loops")]
    assert "UnstableStart" in reasons


def test_a_new_version_that_fails_once_and_then_runs_passes_the_gate(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, tmp_path: Path
) -> None:
    old_job, before = deploy_and_count(flinkjobs, flink_rest, "once", job_spec(flink, test_job_jar))
    marker = tmp_path / "failed-once"
    flinkjobs.patch_spec("once", {"args": [*RATE_ARGS, "--fail-once-file", str(marker)]})
    resource = wait_ready(flinkjobs, "once", timeout=180)
    assert marker.exists(), "the new version did fail once"
    assert not is_stalled(resource)
    new_job = assert_restored_with_state(flink_rest, resource, old_job, before)
    assert "failing once" in flink_rest.job_exceptions(new_job)
    assert "--fail-once-file" in resource["status"]["lastStableSpec"]["args"]
