"""Rescaling for autoscalers and GitOps health on the real bed: the scale subresource, in-place
rescale through the adaptive scheduler, savepoint fallback, coalescing of rapid changes,
`kubectl wait` on the conditions, and the Argo CD health Lua on statuses the operator wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testbed.argocd import argocd_health
from testbed.flinkjobs import FlinkJobs, condition, is_ready_at_current_generation

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def adaptive_flink(bed_dir: Path) -> Iterator[Any]:
    """A session cluster with jobmanager.scheduler: adaptive."""
    from testbed.flink import start_flink

    cluster = start_flink(bed_dir / "flink-adaptive", adaptive=True, slots=4)
    try:
        yield cluster
    finally:
        cluster.stop()


def spec_for(rest_url: str, jar: Path, **extra: Any) -> dict[str, Any]:
    return {"flinkRestUrl": rest_url, "jar": {"uri": jar.as_uri()}, "parallelism": 2, "args": RATE_ARGS, **extra}


def upgrade_savepoints(resource: dict[str, Any]) -> list[str]:
    return [s["path"] for s in resource["status"].get("savepointHistory") or [] if s["reason"] == "upgrade"]


def test_kubectl_scale_rescales_through_a_savepoint_on_a_cluster_without_the_adaptive_scheduler(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, kube: Any, namespace: str
) -> None:
    flinkjobs.create("scaled", spec_for(flink.rest_url, test_job_jar))
    ready = flinkjobs.wait("scaled", is_ready_at_current_generation, "Ready")
    old_job = ready["status"]["jobId"]
    assert ready["status"]["selector"] == "flinkop.io/flinkjob=scaled"
    assert argocd_health(ready)[0] == "Healthy"
    before = flink_rest.wait_state_counter_at_least(old_job, 100)
    kube.kubectl("scale", "flinkjob/scaled", "--replicas=3", "-n", namespace)
    kube.kubectl("wait", "--for=condition=Ready", "flinkjob/scaled", "-n", namespace, "--timeout=120s", timeout=150)
    resource = flinkjobs.wait("scaled", is_ready_at_current_generation, "Ready after the rescale")
    new_job = resource["status"]["jobId"]
    assert new_job != old_job, "Auto falls back to a savepoint rescale: a new job"
    assert flink_rest.restored_from(new_job) == resource["status"]["lastSavepoint"]["path"]
    assert flink_rest.job_parallelism(new_job) == 3
    assert flink_rest.wait_state_counter_at_least(new_job, before + 1) > before
    scale = kube.kubectl("get", "--raw", f"/apis/flinkop.io/v1alpha1/namespaces/{namespace}/flinkjobs/scaled/scale")
    assert '"replicas":3' in scale.stdout.replace(" ", "")


def test_in_place_rescale_keeps_the_job_id_and_reaches_the_new_parallelism_without_a_savepoint(
    operator: Any, adaptive_flink: Any, flinkjobs: FlinkJobs, test_job_jar: Path, kube: Any, namespace: str
) -> None:
    from testbed.flink_rest import FlinkRest

    rest = FlinkRest(adaptive_flink.rest_url)
    flinkjobs.create("inplace", spec_for(adaptive_flink.rest_url, test_job_jar))
    job_id = flinkjobs.wait("inplace", is_ready_at_current_generation, "Ready")["status"]["jobId"]
    rest.wait_checkpoint_completed(job_id)
    before = rest.wait_state_counter_at_least(job_id, 100)
    kube.kubectl("scale", "flinkjob/inplace", "--replicas=3", "-n", namespace)
    resource = flinkjobs.wait("inplace", is_ready_at_current_generation, "Ready after the in-place rescale")
    status = resource["status"]
    assert status["jobId"] == job_id, "an in-place rescale keeps the job"
    assert rest.job_state(job_id) == "RUNNING"
    assert set(rest.vertex_parallelism(job_id).values()) == {3}
    assert status["parallelism"] == 3
    assert not status.get("savepointHistory"), "no savepoint is taken"
    assert rest.wait_state_counter_at_least(job_id, before + 1) > before
    rescaled = [e for e in flinkjobs.events("inplace") if e["reason"] == "Rescaled"]
    assert rescaled, flinkjobs.events("inplace")
    flinkjobs.delete("inplace")
    flinkjobs.wait_gone("inplace")
    rest.cancel_running_jobs()


def test_five_scale_changes_within_the_interval_lead_to_one_rescale_to_the_last_value(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, kube: Any, namespace: str
) -> None:
    flinkjobs.create("flappy", spec_for(flink.rest_url, test_job_jar, minRescaleIntervalSeconds=20))
    flinkjobs.wait("flappy", is_ready_at_current_generation, "Ready")
    kube.kubectl("scale", "flinkjob/flappy", "--replicas=3", "-n", namespace)
    first = flinkjobs.wait("flappy", is_ready_at_current_generation, "Ready after the first rescale")
    assert len(upgrade_savepoints(first)) == 1
    for replicas in (4, 1, 3, 2, 4):
        kube.kubectl("scale", "flinkjob/flappy", f"--replicas={replicas}", "-n", namespace)
    pending = flinkjobs.wait(
        "flappy", lambda r: bool((r.get("status") or {}).get("rescalePendingUntil")), "a pending rescale"
    )
    assert "pending" in pending["status"]["message"]
    assert condition(pending, "Reconciling")["status"] == "True"
    assert argocd_health(pending)[0] == "Progressing"
    done = flinkjobs.wait("flappy", is_ready_at_current_generation, "Ready after the coalesced rescale", timeout=90)
    assert len(upgrade_savepoints(done)) == 2, "the five changes made one rescale"
    assert flink_rest.job_parallelism(done["status"]["jobId"]) == 4


def test_kubectl_wait_returns_on_ready_after_an_upgrade_and_on_stalled_after_a_rollback(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, kube: Any, namespace: str
) -> None:
    flinkjobs.create("waited", spec_for(flink.rest_url, test_job_jar))
    kube.kubectl("wait", "--for=condition=Ready", "flinkjob/waited", "-n", namespace, "--timeout=120s", timeout=150)
    flink_rest.wait_state_counter_at_least(flinkjobs.status("waited")["jobId"], 50)
    flinkjobs.patch_spec("waited", {"args": [*RATE_ARGS, "--drop-counter"]})
    kube.kubectl("wait", "--for=condition=Stalled", "flinkjob/waited", "-n", namespace, "--timeout=180s", timeout=200)
    resource = flinkjobs.get("waited")
    assert condition(resource, "Stalled")["reason"] == "RestoreFailed"
    assert resource["status"]["phase"] == "Running", "rolled back"
    health, message = argocd_health(resource)
    assert health == "Degraded" and "Cannot map checkpoint/savepoint state" in message


def test_samples_are_accepted_by_the_apiserver(crd: Path, kube: Any, namespace: str) -> None:
    for sample in ("counter-job.yaml", "policies.yaml", "hpa.yaml"):
        kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(REPO / "deploy" / "samples" / sample))
    keda = yaml.safe_load((REPO / "deploy" / "samples" / "keda-scaledobject.yaml").read_text())
    assert keda["spec"]["scaleTargetRef"] == {
        "apiVersion": "flinkop.io/v1alpha1",
        "kind": "FlinkJob",
        "name": "counter",
    }
