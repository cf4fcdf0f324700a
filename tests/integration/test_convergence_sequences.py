"""Plain sequences off the tested paths that must converge (issue 12, "Why"), on the real bed.

Both run under the conditions the issue was reported with: the bed's Flink keeps Flink's default
`web.refresh-interval` (3 s, so `GET /jobs/<id>` can still say RUNNING right after a stop), and the
suspend/resume sequence runs its own operator with the default `FLINKOP_OBSERVE_INTERVAL` of 15 s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from testbed.flinkjobs import FlinkJobs, condition, is_ready_at_current_generation, is_stalled
from testbed.operator_process import start_operator

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]


def spec_for(flink: Any, jar: Path, **extra: Any) -> dict[str, Any]:
    return {"flinkRestUrl": flink.rest_url, "jar": {"uri": jar.as_uri()}, "parallelism": 2, "args": RATE_ARGS, **extra}


def flink_uses_default_refresh_interval(flink: Any) -> bool:
    """The bed's config.yaml leaves `web.refresh-interval` at Flink's default (3000 ms)."""
    return "web.refresh-interval" not in Path(flink.config_path).read_text()


def test_resume_right_after_suspend_runs_the_job_again_from_the_suspend_savepoint(
    kube: Any, crd: Path, flink: Any, flink_rest: Any, own_namespace: str, test_job_jar: Path, bed_dir: Path
) -> None:
    assert flink_uses_default_refresh_interval(flink), "the bug needs Flink's cached /jobs/<id> (3 s)"
    jobs = FlinkJobs(kube.api_client(), own_namespace)
    operator = start_operator(
        bed_dir / own_namespace,
        kube.admin_kubeconfig,
        args=("--namespace", own_namespace),
        extra_env={"FLINKOP_OBSERVE_INTERVAL": "15"},  # the operator's default, as reported
    )
    try:
        jobs.create("pause-resume", spec_for(flink, test_job_jar))
        old_job = jobs.wait("pause-resume", is_ready_at_current_generation, "Ready", timeout=120)["status"]["jobId"]
        before = flink_rest.wait_state_counter_at_least(old_job, 100)

        jobs.patch_spec("pause-resume", {"state": "suspended"})
        suspended = jobs.wait(
            "pause-resume", lambda r: (r.get("status") or {}).get("phase") == "Suspended", "phase Suspended"
        )
        savepoint = suspended["status"]["lastSavepoint"]["path"]
        time.sleep(5)
        jobs.patch_spec("pause-resume", {"state": "running"})

        resumed = jobs.wait(
            "pause-resume", is_ready_at_current_generation, "Ready at the current generation after resume", 120
        )
        status = resumed["status"]
        assert status["phase"] == "Running"
        assert condition(resumed, "Reconciling")["status"] == "False"
        assert condition(resumed, "Stalled")["status"] == "False"
        new_job = status["jobId"]
        assert new_job != old_job
        assert flink_rest.running_jobs() == [new_job], "exactly one job runs"
        assert flink_rest.restored_from(new_job) == savepoint, "resumed from the suspend savepoint"
        assert flink_rest.wait_state_counter_at_least(new_job, before + 1) > before
        assert flink_rest.restored_keys(new_job) > 0
    finally:
        operator.stop()
        flink_rest.cancel_running_jobs()


def test_allowing_non_restored_state_after_a_restore_failure_retries_the_upgrade_and_it_succeeds(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    flinkjobs.create("retry-policy", spec_for(flink, test_job_jar))
    old_job = flinkjobs.wait("retry-policy", is_ready_at_current_generation, "Ready")["status"]["jobId"]
    flink_rest.wait_state_counter_at_least(old_job, 100)

    dropped = [*RATE_ARGS, "--drop-counter"]
    flinkjobs.patch_spec("retry-policy", {"args": dropped})
    rolled_back = flinkjobs.wait(
        "retry-policy",
        lambda r: is_stalled(r, "RestoreFailed") and r["status"].get("phase") == "Running",
        "rollback with Stalled RestoreFailed",
        timeout=180,
    )
    rolled_back_job = rolled_back["status"]["jobId"]

    # The README's remedy: allow dropping state. Nothing else changes.
    flinkjobs.patch_spec("retry-policy", {"allowNonRestoredState": "OnJarChange"})
    done = flinkjobs.wait(
        "retry-policy", is_ready_at_current_generation, "Ready at the new generation after the policy change", 120
    )
    status = done["status"]
    assert status["phase"] == "Running"
    assert not is_stalled(done)
    new_job = status["jobId"]
    assert new_job != rolled_back_job
    assert flink_rest.running_jobs() == [new_job], "exactly one job runs"
    assert status["lastStableSpec"]["args"] == dropped
    vertices = flink_rest.vertex_parallelism(new_job)
    assert not any("counter" in name for name in vertices), f"the new program has no counter: {vertices}"
    assert flink_rest.restored_from(new_job) == status["lastSavepoint"]["path"], "started from the savepoint"


def test_a_change_reverted_while_its_upgrade_waits_to_retry_a_failed_savepoint_still_converges(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, tmp_path: Path
) -> None:
    """Found by the soak (seed 4242): args changed, the upgrade's savepoint failed (retry in 10 s),
    and the args changed back to the running ones before the retry. kopf sees no difference to the
    last handled spec, so it never calls the change handler again, and the timer leaves the resource
    to that handler: the FlinkJob stayed Upgrading, Reconciling True, observedGeneration behind."""
    fail = tmp_path / "fail-snapshots"
    args = [*RATE_ARGS, "--fail-snapshot-file", str(fail)]
    flinkjobs.create("revert", spec_for(flink, test_job_jar, args=args))
    job = flinkjobs.wait("revert", is_ready_at_current_generation, "Ready")["status"]["jobId"]
    before = flink_rest.wait_state_counter_at_least(job, 100)

    fail.touch()
    flinkjobs.patch_spec("revert", {"args": [*args, "--rate", "150"]})
    flinkjobs.wait(
        "revert",
        lambda r: "failed (attempt" in str((r.get("status") or {}).get("message")),
        "the upgrade's savepoint to fail and wait for its retry",
        timeout=60,
    )
    flinkjobs.patch_spec("revert", {"args": args})  # back to what runs, before the retry
    fail.unlink()

    done = flinkjobs.wait("revert", is_ready_at_current_generation, "Ready at the reverted generation", 120)
    status = done["status"]
    assert not is_stalled(done)
    assert condition(done, "Reconciling")["status"] == "False"
    running = flink_rest.running_jobs()
    assert running == [status["jobId"]], "exactly one job runs"
    assert flink_rest.wait_state_counter_at_least(status["jobId"], before + 1) > before
