"""Jobs lost with their JobManager, on the real bed: a session cluster's JobManager and TaskManager
are killed with SIGKILL and started again on the same ports. Without high availability the job is
gone, and the operator starts it again from the newest (periodic) savepoint with its counter going
on; with Flink's Kubernetes high availability (against the bed's own kube-apiserver) the JobManager
recovers the job under the same id, and the operator neither resubmits it nor stalls."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_operator_upgrades import job_spec, wait_ready
from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation, is_stalled

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lone_flink(bed_dir: Path) -> Iterator[Any]:
    """A session cluster of this module's own, without high availability."""
    from testbed.flink import start_flink

    cluster = start_flink(bed_dir / "flink-lost-jobs", slots=4)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def ha_flink(bed_dir: Path, kube: Any) -> Iterator[Any]:
    """A session cluster with Flink's Kubernetes HA services, keeping its state in the bed's apiserver."""
    from testbed.flink import kubernetes_ha_config, start_flink

    workdir = bed_dir / "flink-ha"
    cluster_id = f"flinkop-bed-{secrets.token_hex(4)}"
    config = kubernetes_ha_config(workdir, kube.admin_kubeconfig, cluster_id)
    cluster = start_flink(workdir, slots=4, extra_config=config)
    try:
        yield cluster
    finally:
        cluster.stop()


def _rest(cluster: Any) -> Any:
    from testbed.flink_rest import FlinkRest

    return FlinkRest(cluster.rest_url)


def test_a_jobmanager_restart_without_ha_restores_the_newest_periodic_savepoint_with_the_counter_continued(
    operator: Any, lone_flink: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    rest = _rest(lone_flink)
    flinkjobs.create("lost", job_spec(lone_flink, test_job_jar, savepointIntervalSeconds=3))
    old_job = wait_ready(flinkjobs, "lost")["status"]["jobId"]
    flinkjobs.wait(
        "lost",
        lambda r: ((r["status"].get("lastSavepoint") or {}).get("reason") == "periodic"),
        "a periodic savepoint",
        timeout=90,
    )

    lone_flink.kill()
    lone_flink.restart()
    assert old_job not in [j["jid"] for j in rest.jobs_overview()], "the job went with its JobManager"

    resource = flinkjobs.wait(
        "lost",
        lambda r: is_ready_at_current_generation(r) and r["status"].get("jobId") != old_job,
        "Ready with a new job",
        timeout=180,
    )
    new_job = resource["status"]["jobId"]
    restored = rest.restored_from(new_job)
    assert restored is not None
    history = {s["path"]: s["reason"] for s in resource["status"]["savepointHistory"]}
    assert history.get(restored) == "periodic", (restored, history)
    # The counter goes on from the restored counts: keys came back with a count.
    assert rest.wait_state_counter_at_least(new_job, 1) > 0
    assert rest.restored_keys(new_job) > 0
    assert rest.running_jobs() == [new_job]
    events = flinkjobs.events("lost")
    lost = [e["message"] for e in events if e["reason"] == "LostJobRestarted"]
    assert len(lost) == 1 and restored in lost[0] and "s old" in lost[0], events
    assert not is_stalled(resource)


def test_a_jobmanager_restart_with_ha_keeps_the_same_job_and_one_job_only(
    operator: Any, ha_flink: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    rest = _rest(ha_flink)
    flinkjobs.create("ha", job_spec(ha_flink, test_job_jar))
    job_id = wait_ready(flinkjobs, "ha")["status"]["jobId"]
    rest.wait_checkpoint_completed(job_id)
    before = {(e["reason"], e["message"]) for e in flinkjobs.events("ha")}

    ha_flink.kill()
    ha_flink.restart()
    rest.wait_job_running(job_id, timeout=180)

    resource = flinkjobs.wait(
        "ha",
        lambda r: is_ready_at_current_generation(r) and r["status"].get("phase") == "Running",
        "Ready again",
        timeout=120,
    )
    assert resource["status"]["jobId"] == job_id
    assert rest.running_jobs() == [job_id]
    rest.wait_state_counter_at_least(job_id, 1)
    assert rest.restored_keys(job_id) > 0, "recovered from its latest checkpoint"
    new_events = [e for e in flinkjobs.events("ha") if (e["reason"], e["message"]) not in before]
    reasons = {e["reason"] for e in new_events}
    assert not reasons & {"Deploying", "Submitting", "LostJobRestarted", "Upgrading", "JobTerminated"}, new_events
    assert not is_stalled(resource)
