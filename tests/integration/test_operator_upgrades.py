"""The operator on the real bed: deploy, savepoint upgrades, allowNonRestoredState policy, failures.

Every test runs `python -m flinkop` (the session's operator process) against the real kube-apiserver
and the real Flink session cluster, and checks what Flink itself says: which job runs, at what
parallelism, restored from which savepoint, and whether its keyed state went on counting.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from testbed.flinkjobs import FlinkJobs, condition, is_ready_at_current_generation, is_stalled

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]


@pytest.fixture(scope="session")
def jar_v2(test_job_jar: Path, bed_dir: Path) -> Path:
    """The same program in a jar with other bytes: a jar change that keeps every operator."""
    v2 = bed_dir / "jobs" / "flinkop-testjob-v2.jar"
    if not v2.exists():
        shutil.copy(test_job_jar, v2)
        with zipfile.ZipFile(v2, "a") as zf:
            zf.writestr("FLINKOP-TEST-VERSION", "2\n")
    return v2


def job_spec(flink: Any, jar: Path, parallelism: int = 2, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "flinkRestUrl": flink.rest_url,
        "jar": {"uri": jar.as_uri()},
        "parallelism": parallelism,
        "args": list(RATE_ARGS),
    }
    spec.update(extra)
    return spec


def wait_ready(flinkjobs: FlinkJobs, name: str, timeout: float = 120.0) -> dict[str, Any]:
    return flinkjobs.wait(name, is_ready_at_current_generation, "Ready at the current generation", timeout)


def deploy_and_count(
    flinkjobs: FlinkJobs, flink_rest: Any, name: str, spec: dict[str, Any], count: int = 100
) -> tuple[str, int]:
    flinkjobs.create(name, spec)
    resource = wait_ready(flinkjobs, name)
    job_id = resource["status"]["jobId"]
    return job_id, flink_rest.wait_state_counter_at_least(job_id, count)


def assert_restored_with_state(flink_rest: Any, resource: dict[str, Any], old_job_id: str, count_before: int) -> str:
    """The resource's job is new, RUNNING, restored from the recorded savepoint, and counts on."""
    status = resource["status"]
    new_job_id = status["jobId"]
    assert new_job_id != old_job_id
    assert flink_rest.job_state(new_job_id) == "RUNNING"
    assert flink_rest.job_state(old_job_id) in ("FINISHED", "CANCELED")
    savepoint = status["lastSavepoint"]["path"]
    assert flink_rest.restored_from(new_job_id) == savepoint
    assert status["savepointHistory"][0]["path"] == savepoint
    # Counts go on from the restored state: a fresh start would begin again near zero.
    assert flink_rest.wait_state_counter_at_least(new_job_id, count_before + 1) > count_before
    assert flink_rest.restored_keys(new_job_id) > 0
    assert flink_rest.running_jobs().count(new_job_id) == 1
    return new_job_id


def test_created_flinkjob_runs_its_job_and_reports_ready(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, kube: Any, namespace: str
) -> None:
    flinkjobs.create("counter", job_spec(flink, test_job_jar, parallelism=2))
    resource = wait_ready(flinkjobs, "counter")
    status = resource["status"]
    assert status["phase"] == "Running"
    assert flink_rest.job_state(status["jobId"]) == "RUNNING"
    assert flink_rest.job_parallelism(status["jobId"]) == 2
    assert status["parallelism"] == 2
    assert status["lastStableSpec"]["parallelism"] == 2
    assert condition(resource, "Reconciling")["status"] == "False"
    assert condition(resource, "Stalled")["status"] == "False"
    table = kube.kubectl("get", "flinkjobs", "-n", namespace).stdout
    assert "PHASE" in table and "JOB STATE" in table and "LAST SAVEPOINT" in table
    assert "Running" in table and "RUNNING" in table


def test_jar_change_upgrades_through_a_savepoint_and_state_goes_on(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, jar_v2: Path
) -> None:
    old_job, before = deploy_and_count(flinkjobs, flink_rest, "jar-change", job_spec(flink, test_job_jar))
    flinkjobs.patch_spec("jar-change", {"jar": {"uri": jar_v2.as_uri()}})
    resource = wait_ready(flinkjobs, "jar-change")
    assert_restored_with_state(flink_rest, resource, old_job, before)
    status = resource["status"]
    assert status["lastSavepoint"]["reason"] == "upgrade"
    assert status["lastStableSpec"]["jarUri"] == jar_v2.as_uri()
    assert not status.get("upgrade")


def test_parallelism_change_2_to_3_keeps_state_and_does_not_set_allow_non_restored_on_jar_change_policy(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    spec = job_spec(flink, test_job_jar, parallelism=2, allowNonRestoredState="OnJarChange")
    old_job, before = deploy_and_count(flinkjobs, flink_rest, "rescale", spec)
    flinkjobs.patch_spec("rescale", {"parallelism": 3})
    resource = wait_ready(flinkjobs, "rescale")
    new_job = assert_restored_with_state(flink_rest, resource, old_job, before)
    assert flink_rest.job_parallelism(new_job) == 3
    assert resource["status"]["parallelism"] == 3
    submits = [
        e["message"] for e in flinkjobs.events("rescale") if new_job in e["message"] and "start job" in e["message"]
    ]
    assert submits, flinkjobs.events("rescale")
    assert all("allowNonRestoredState" not in m for m in submits)


def test_dropped_stateful_operator_with_policy_never_rolls_back_with_state_intact(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    old_job, before = deploy_and_count(flinkjobs, flink_rest, "never", job_spec(flink, test_job_jar))
    flinkjobs.patch_spec("never", {"args": [*RATE_ARGS, "--drop-counter"]})
    resource = flinkjobs.wait(
        "never",
        lambda r: is_stalled(r, "RestoreFailed") and r["status"].get("phase") == "Running",
        "rollback",
        timeout=180,
    )
    status = resource["status"]
    stalled = condition(resource, "Stalled")["message"]
    assert "Cannot map checkpoint/savepoint state" in stalled
    # The operator that lost its state is named by its uid and name from the savepoint's _metadata,
    # with the field to set, in the condition and in the Event.
    assert "operator uid `counter` (name `counter`) holds state the new version has no operator for" in stalled
    assert "spec.allowNonRestoredState" in stalled
    assert any("uid `counter`" in e["message"] for e in flinkjobs.events("never")), flinkjobs.events("never")
    assert condition(resource, "Ready")["status"] == "False"
    assert "--drop-counter" not in status["lastStableSpec"]["args"]
    # The rolled-back job runs the old program from the same savepoint: the counter is there and counts on.
    assert_restored_with_state(flink_rest, resource, old_job, before)


@pytest.mark.parametrize("policy", ["Always", "OnJarChange"])
def test_dropped_stateful_operator_upgrades_when_policy_allows_non_restored_state(
    policy: str, operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    name = f"drop-{policy.lower()}"
    _old_job, _ = deploy_and_count(
        flinkjobs, flink_rest, name, job_spec(flink, test_job_jar, allowNonRestoredState=policy)
    )
    flinkjobs.patch_spec(name, {"args": [*RATE_ARGS, "--drop-counter"]})
    resource = wait_ready(flinkjobs, name)
    status = resource["status"]
    assert "--drop-counter" in status["lastStableSpec"]["args"]
    assert flink_rest.restored_from(status["jobId"]) == status["lastSavepoint"]["path"]
    assert flink_rest.job_state(status["jobId"]) == "RUNNING"
    assert not is_stalled(resource)


def test_cancel_savepoint_mode_upgrades_with_state(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    old_job, before = deploy_and_count(
        flinkjobs, flink_rest, "cancel-mode", job_spec(flink, test_job_jar, savepointMode="cancel")
    )
    flinkjobs.patch_spec("cancel-mode", {"parallelism": 1})
    resource = wait_ready(flinkjobs, "cancel-mode")
    assert flink_rest.job_state(old_job) == "CANCELED"
    assert_restored_with_state(flink_rest, resource, old_job, before)


def test_stateless_upgrade_mode_cancels_and_starts_without_state(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    old_job, _ = deploy_and_count(
        flinkjobs, flink_rest, "stateless", job_spec(flink, test_job_jar, upgradeMode="stateless")
    )
    flinkjobs.patch_spec("stateless", {"parallelism": 1})
    resource = wait_ready(flinkjobs, "stateless")
    new_job = resource["status"]["jobId"]
    assert new_job != old_job
    assert flink_rest.job_state(old_job) == "CANCELED"
    assert flink_rest.restored_from(new_job) is None
    flink_rest.wait_state_counter_at_least(new_job, 1)
    assert flink_rest.restored_keys(new_job) == 0


def test_restore_failure_with_policy_fail_stops_and_keeps_the_savepoint(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    old_job, _ = deploy_and_count(
        flinkjobs, flink_rest, "fail-policy", job_spec(flink, test_job_jar, restoreFailurePolicy="Fail")
    )
    flinkjobs.patch_spec("fail-policy", {"args": [*RATE_ARGS, "--drop-counter"]})
    resource = flinkjobs.wait(
        "fail-policy", lambda r: r["status"].get("phase") == "Failed", "phase Failed", timeout=180
    )
    status = resource["status"]
    assert is_stalled(resource, "RestoreFailed")
    savepoint = status["lastSavepoint"]["path"]
    assert savepoint in status["message"]
    assert "Cannot map checkpoint/savepoint state" in status["message"]
    assert "operator uid `counter` (name `counter`)" in status["message"]
    assert Path(savepoint.removeprefix("file:")).exists()
    assert flink_rest.job_state(old_job) == "FINISHED"
    assert flink_rest.running_jobs() == []


def test_job_cancelled_outside_the_operator_is_reported_and_not_resubmitted(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    job_id, _ = deploy_and_count(flinkjobs, flink_rest, "outside", job_spec(flink, test_job_jar), count=10)
    flink_rest.cancel_job(job_id)
    resource = flinkjobs.wait("outside", lambda r: is_stalled(r, "JobTerminated"), "JobTerminated", timeout=60)
    assert resource["status"]["phase"] == "Failed"
    assert "CANCELED" in resource["status"]["message"]
    assert flink_rest.running_jobs() == []


def test_delete_stops_the_job_with_a_savepoint_named_in_an_event(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path
) -> None:
    job_id, _ = deploy_and_count(flinkjobs, flink_rest, "deleted", job_spec(flink, test_job_jar), count=10)
    flinkjobs.delete("deleted")
    flinkjobs.wait_gone("deleted", timeout=60)
    # The savepoint is complete when the resource is released; the job reaches FINISHED just after.
    assert flink_rest.wait_job_state(job_id, ("FINISHED", "CANCELED", "FAILED"), timeout=30) == "FINISHED"
    completed = [e for e in flinkjobs.events("deleted") if e["reason"] == "SavepointCompleted"]
    assert completed, flinkjobs.events("deleted")
    path = completed[-1]["message"].rsplit(": ", 1)[-1].rstrip(".")
    assert Path(path.removeprefix("file:")).exists()


def test_invalid_spec_is_rejected_by_the_schema_with_a_readable_message(
    crd: Path, kube: Any, namespace: str, flink: Any, test_job_jar: Path
) -> None:
    manifest = f"""
apiVersion: flinkop.io/v1alpha1
kind: FlinkJob
metadata: {{name: bad, namespace: {namespace}}}
spec:
  flinkRestUrl: {flink.rest_url}
  jar: {{uri: "ftp://example/job.jar"}}
  parallelism: 0
  upgradeMode: sometimes
"""
    result = kube.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert "spec.parallelism" in result.stderr and "greater than or equal to 1" in result.stderr
    assert "spec.upgradeMode" in result.stderr
    assert "spec.jar.uri" in result.stderr


@pytest.fixture(scope="module")
def flink_without_savepoint_dir(bed_dir: Path) -> Any:
    """A second session cluster whose configuration has no state.savepoints.dir."""
    from testbed.flink import start_flink

    cluster = start_flink(bed_dir / "flink-no-savepoint-dir", savepoints_dir=False, slots=4)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_no_savepoint_directory_anywhere_leaves_the_job_untouched_and_says_which_settings(
    operator: Any, flink_without_savepoint_dir: Any, flinkjobs: FlinkJobs, test_job_jar: Path, tmp_path: Path
) -> None:
    from testbed.flink_rest import FlinkRest

    rest = FlinkRest(flink_without_savepoint_dir.rest_url)
    job_id, _ = deploy_and_count(flinkjobs, rest, "no-dir", job_spec(flink_without_savepoint_dir, test_job_jar), 10)
    flinkjobs.patch_spec("no-dir", {"parallelism": 3})
    resource = flinkjobs.wait("no-dir", lambda r: is_stalled(r, "NoSavepointDirectory"), "NoSavepointDirectory")
    message = condition(resource, "Stalled")["message"]
    assert "spec.savepointDirectory" in message and "state.savepoints.dir" in message
    assert resource["status"]["jobId"] == job_id
    assert rest.job_state(job_id) == "RUNNING"
    assert rest.job_parallelism(job_id) == 2
    # Giving the resource a directory lets the same upgrade go ahead.
    flinkjobs.patch_spec("no-dir", {"savepointDirectory": (tmp_path / "savepoints").as_uri()})
    done = wait_ready(flinkjobs, "no-dir")
    assert done["status"]["lastSavepoint"]["path"].startswith(f"file:{tmp_path}")
    assert rest.job_parallelism(done["status"]["jobId"]) == 3
    flinkjobs.delete("no-dir")
    flinkjobs.wait_gone("no-dir")
    rest.cancel_running_jobs()


@pytest.fixture(scope="module")
def jar_server(bed_dir: Path) -> Any:
    """Serves bed_dir/jobs over http:// on loopback, as an artifact repository would."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from testbed.procs import free_port

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(bed_dir / "jobs")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_jar_over_http_with_a_wrong_digest_never_takes_the_running_job_down(
    operator: Any,
    flink: Any,
    flink_rest: Any,
    flinkjobs: FlinkJobs,
    test_job_jar: Path,
    jar_v2: Path,
    jar_server: str,
) -> None:
    import hashlib

    v1_url = f"{jar_server}/{test_job_jar.name}"
    v1_sha = hashlib.sha256(test_job_jar.read_bytes()).hexdigest()
    spec = job_spec(flink, test_job_jar)
    spec["jar"] = {"uri": v1_url, "sha256": v1_sha}
    job_id, _ = deploy_and_count(flinkjobs, flink_rest, "digest", spec, count=10)
    jars_before = {j["id"] for j in flink_rest.get("/jars")["files"]}

    flinkjobs.patch_spec("digest", {"jar": {"uri": f"{jar_server}/{jar_v2.name}", "sha256": v1_sha}})
    resource = flinkjobs.wait("digest", lambda r: is_stalled(r, "JarDigestMismatch"), "JarDigestMismatch")
    assert v1_sha in condition(resource, "Stalled")["message"]
    flinkjobs.patch_spec("digest", {"jar": {"uri": f"{jar_server}/missing.jar", "sha256": None}})
    resource = flinkjobs.wait("digest", lambda r: is_stalled(r, "JarFetchFailed"), "JarFetchFailed")
    assert "404" in condition(resource, "Stalled")["message"]
    assert flink_rest.job_state(job_id) == "RUNNING"
    assert resource["status"]["jobId"] == job_id
    assert {j["id"] for j in flink_rest.get("/jars")["files"]} == jars_before, "a refused jar never reaches Flink"

    # The right jar: the upgrade goes ahead, and the jar the old job ran is deleted from the cluster.
    v2_sha = hashlib.sha256(jar_v2.read_bytes()).hexdigest()
    flinkjobs.patch_spec("digest", {"jar": {"uri": f"{jar_server}/{jar_v2.name}", "sha256": v2_sha}})
    done = wait_ready(flinkjobs, "digest")
    assert done["status"]["jobId"] != job_id
    names = [j["name"] for j in flink_rest.get("/jars")["files"]]
    assert any(v2_sha[:20] in n for n in names)
    assert not any(v1_sha[:20] in n for n in names), names


def test_change_during_an_upgrade_is_applied_after_it(
    operator: Any, flink: Any, flink_rest: Any, flinkjobs: FlinkJobs, test_job_jar: Path, tmp_path: Path
) -> None:
    slow = tmp_path / "slow"
    spec = job_spec(flink, test_job_jar, parallelism=2)
    spec["args"] = [*RATE_ARGS, "--slow-snapshot-file", str(slow), "--slow-snapshot-ms", "3000"]
    old_job, before = deploy_and_count(flinkjobs, flink_rest, "queued", spec)
    assert flink_rest.job_state(old_job) == "RUNNING"
    slow.touch()
    flinkjobs.patch_spec("queued", {"parallelism": 3})
    flinkjobs.wait(
        "queued",
        lambda r: ((r.get("status") or {}).get("upgrade") or {}).get("step") == "Savepointing",
        "an upgrade in flight",
    )
    flinkjobs.patch_spec("queued", {"parallelism": 1})  # while the first upgrade's savepoint runs
    slow.unlink()
    resource = wait_ready(flinkjobs, "queued", timeout=180)
    status = resource["status"]
    assert flink_rest.job_parallelism(status["jobId"]) == 1
    assert flink_rest.running_jobs() == [status["jobId"]]
    upgrades = [s for s in status["savepointHistory"] if s["reason"] == "upgrade"]
    assert len(upgrades) == 2, "both changes were applied, one after the other"
    assert flink_rest.restored_from(status["jobId"]) == upgrades[0]["path"]
    assert flink_rest.wait_state_counter_at_least(status["jobId"], before + 1) > before
