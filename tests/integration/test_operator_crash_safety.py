"""Status is the write-ahead log of an upgrade: an operator killed with SIGKILL after any persisted
step, and started again, finishes the upgrade with exactly one job, restored from the recorded
savepoint, its state continued. The kill points are made exact by a fault-injecting proxy in front
of the real Flink REST API, which holds a request while the operator is killed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from testbed.flink_proxy import FlinkProxy
from testbed.flinkjobs import FlinkJobs, check_one_upgrade_finished, is_ready_at_current_generation
from testbed.operator_process import start_operator

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:g} s")


CRASH_POINTS = ["intent-recorded", "savepoint-triggered", "savepoint-completed", "job-submitted"]


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_operator_killed_mid_upgrade_finishes_it_after_restart_with_one_job_and_state_continued(
    crash_point: str,
    kube: Any,
    crd: Path,
    flink: Any,
    flink_rest: Any,
    proxy: FlinkProxy,
    own_namespace: str,
    test_job_jar: Path,
    bed_dir: Path,
    tmp_path: Path,
) -> None:
    jobs = FlinkJobs(kube.api_client(), own_namespace)
    workdir = bed_dir / own_namespace
    slow = tmp_path / "slow-snapshots"
    operator = start_operator(workdir, kube.admin_kubeconfig, args=("--namespace", own_namespace))
    try:
        spec = {
            "flinkRestUrl": proxy.url,
            "jar": {"uri": test_job_jar.as_uri()},
            "parallelism": 2,
            "args": [*RATE_ARGS, "--slow-snapshot-file", str(slow), "--slow-snapshot-ms", "3000"],
        }
        jobs.create("crash", spec)
        ready = jobs.wait("crash", is_ready_at_current_generation, "Ready", timeout=120)
        old_job = ready["status"]["jobId"]
        before = flink_rest.wait_state_counter_at_least(old_job, 100)

        stop_hold = proxy.hold("POST", r"^/jobs/[0-9a-f]+/stop$") if crash_point == "intent-recorded" else None
        run_hold = None
        if crash_point in ("savepoint-completed", "job-submitted"):
            # savepoint-completed: the run request never reaches Flink; job-submitted: Flink starts
            # the job, and the operator dies before it hears so.
            run_hold = proxy.hold("POST", r"^/jars/[^/]+/run$", after_forward=crash_point == "job-submitted")
        if crash_point == "savepoint-triggered":
            slow.touch()  # the savepoint takes seconds: the operator dies while Flink works on it
        jobs.patch_spec("crash", {"parallelism": 3})

        if stop_hold is not None:
            assert stop_hold.arrived.wait(60), "the operator never asked Flink to stop the job"
            upgrade = jobs.status("crash").get("upgrade") or {}
            assert upgrade.get("step") == "Savepointing" and upgrade.get("triggerId")
        elif crash_point == "savepoint-triggered":
            wait_until(lambda: bool(proxy.calls("POST", r"^/jobs/[0-9a-f]+/stop$")), "stop request sent to Flink")
        elif run_hold is not None:
            assert run_hold.arrived.wait(60), "the operator never submitted the new job"
            upgrade = jobs.status("crash").get("upgrade") or {}
            assert upgrade.get("savepointPath") and upgrade.get("newJobId")
        operator.kill()
        for hold in (stop_hold, run_hold):
            if hold is not None:
                proxy.release(hold, drop=True)  # the request dies with the operator: Flink never sees it
        slow.unlink(missing_ok=True)
        recorded = jobs.status("crash").get("upgrade") or {}
        assert recorded, "the upgrade in flight must be in status when the operator dies"

        operator = start_operator(workdir, kube.admin_kubeconfig, args=("--namespace", own_namespace))
        done = jobs.wait("crash", is_ready_at_current_generation, "Ready after the restart", timeout=180)
        status = done["status"]
        new_job = check_one_upgrade_finished(
            flink_rest, status, old_job=old_job, recorded=recorded, counter_before=before
        )
        assert flink_rest.job_parallelism(new_job) == 3
    finally:
        operator.stop()
        slow.unlink(missing_ok=True)


def test_flink_unreachable_is_reported_and_the_upgrade_waits_until_it_answers(
    operator: Any, flink: Any, flink_rest: Any, proxy: FlinkProxy, namespace: str, test_job_jar: Path, kube: Any
) -> None:
    jobs = FlinkJobs(kube.api_client(), namespace)
    jobs.create(
        "unreachable",
        {"flinkRestUrl": proxy.url, "jar": {"uri": test_job_jar.as_uri()}, "parallelism": 1, "args": RATE_ARGS},
    )
    old_job = jobs.wait("unreachable", is_ready_at_current_generation, "Ready", timeout=120)["status"]["jobId"]
    proxy.down = True
    jobs.patch_spec("unreachable", {"parallelism": 2})
    seen = jobs.wait(
        "unreachable", lambda r: "unreachable" in (r.get("status") or {}).get("message", ""), "unreachable report"
    )
    assert proxy.url in seen["status"]["message"]
    assert flink_rest.job_state(old_job) == "RUNNING", "no action is taken on a guess"
    assert not seen["status"].get("upgrade")
    proxy.down = False
    done = jobs.wait("unreachable", is_ready_at_current_generation, "Ready once Flink answers", timeout=120)
    assert flink_rest.restored_from(done["status"]["jobId"]) == done["status"]["lastSavepoint"]["path"]


def test_delete_gives_up_after_its_timeout_when_flink_stays_unreachable_and_says_so(
    kube: Any,
    crd: Path,
    flink: Any,
    flink_rest: Any,
    proxy: FlinkProxy,
    own_namespace: str,
    test_job_jar: Path,
    bed_dir: Path,
) -> None:
    jobs = FlinkJobs(kube.api_client(), own_namespace)
    operator = start_operator(
        bed_dir / own_namespace,
        kube.admin_kubeconfig,
        args=("--namespace", own_namespace),
        extra_env={"FLINKOP_DELETE_TIMEOUT": "8"},
    )
    try:
        jobs.create(
            "orphan",
            {"flinkRestUrl": proxy.url, "jar": {"uri": test_job_jar.as_uri()}, "parallelism": 1, "args": RATE_ARGS},
        )
        job_id = jobs.wait("orphan", is_ready_at_current_generation, "Ready", timeout=120)["status"]["jobId"]
        proxy.down = True
        started = time.monotonic()
        jobs.delete("orphan")
        jobs.wait_gone("orphan", timeout=60)
        assert time.monotonic() - started >= 5, "released before the deletion timeout"
        gave_up = [e for e in jobs.events("orphan") if e["reason"] == "DeleteGaveUp"]
        assert gave_up and job_id in gave_up[-1]["message"], jobs.events("orphan")
        assert flink_rest.job_state(job_id) == "RUNNING", "the job is left as it is, never stopped without a savepoint"
    finally:
        operator.stop()
        flink_rest.cancel_running_jobs()
