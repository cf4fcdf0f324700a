"""High availability: two operator processes peer through a KopfPeering object; only the one with the
highest priority handles FlinkJobs. When it is killed with SIGKILL in the middle of a savepoint
upgrade, the standby takes over once the dead one's keep-alive expires and finishes the upgrade from
the status's write-ahead record: exactly one job runs, restored from the recorded savepoint, counts
continued. The kill points are made exact by the fault proxy in front of the real Flink REST API.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from testbed.flink_proxy import FlinkProxy
from testbed.flinkjobs import FlinkJobs, check_one_upgrade_finished, is_ready_at_current_generation
from testbed.operator_process import install_peering_crds, peer_priorities, start_operator
from testbed.procs import ManagedProcess

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]
PEERING = "flinkop-ha"
LIFETIME_SECONDS = "5"  # a killed operator's keep-alive counts for this long; then the standby acts


@pytest.fixture(scope="module")
def peering_crds(kube: Any) -> None:
    install_peering_crds(kube)


@pytest.fixture(scope="module")
def jar_v2(test_job_jar: Path, bed_dir: Path) -> Path:
    """The same program in a jar with other bytes: a jar change that keeps every operator."""
    v2 = bed_dir / "jobs" / "flinkop-testjob-ha-v2.jar"
    if not v2.exists():
        shutil.copy(test_job_jar, v2)
        with zipfile.ZipFile(v2, "a") as zf:
            zf.writestr("FLINKOP-TEST-VERSION", "ha-2\n")
    return v2


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:g} s")


def log_lines(operator: ManagedProcess) -> list[dict[str, Any]]:
    text = operator.log_path.read_text() if operator.log_path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def handled(operator: ManagedProcess, flinkjob: str) -> int:
    """How many log lines the operator wrote while handling this FlinkJob (namespace/name)."""
    return sum(1 for line in log_lines(operator) if line.get("flinkjob") == flinkjob)


def resumes(operator: ManagedProcess) -> int:
    """How often kopf resumed this operator after a pause in favour of another peer."""
    return sum(1 for line in log_lines(operator) if line.get("message", "").startswith("Resuming operations"))


def paused(operator: ManagedProcess) -> bool:
    """kopf starts a peer paused and logs each resume and pause after that: the last one tells."""
    said = [
        line["message"]
        for line in log_lines(operator)
        if line.get("message", "").startswith(("Resuming operations", "Pausing operations"))
    ]
    return not said or said[-1].startswith("Pausing")


def start_peer(workdir: Path, kube: Any, namespace: str, name: str) -> ManagedProcess:
    return start_operator(
        workdir,
        kube.admin_kubeconfig,
        name=name,
        args=("--namespace", namespace, "--peering", PEERING, "--log-format", "json"),
        extra_env={"FLINKOP_PEERING_LIFETIME": LIFETIME_SECONDS, "POD_ID": name},  # POD_ID: kopf's peer identity
    )


KILL_POINTS = ["stop-requested", "new-job-submitted"]


@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_standby_finishes_an_upgrade_after_the_active_operator_is_killed_with_one_job_and_state_continued(
    kill_point: str,
    kube: Any,
    crd: Path,
    peering_crds: None,
    flink: Any,
    flink_rest: Any,
    proxy: FlinkProxy,
    own_namespace: str,
    test_job_jar: Path,
    jar_v2: Path,
    bed_dir: Path,
) -> None:
    workdir = bed_dir / f"{own_namespace}-ha"
    first = start_peer(workdir, kube, own_namespace, "peer-a")
    second = start_peer(workdir, kube, own_namespace, "peer-b")
    operators = {"peer-a": first, "peer-b": second}
    try:
        wait_until(
            lambda: set(peer_priorities(kube, PEERING, own_namespace)) == set(operators),
            "both peers in the KopfPeering",
        )
        priorities = peer_priorities(kube, PEERING, own_namespace)
        assert len(set(priorities.values())) == 2, f"priorities must differ, else kopf pauses both: {priorities}"
        active_name = max(priorities, key=lambda identity: priorities[identity])
        active = operators[active_name]
        standby = next(op for name, op in operators.items() if name != active_name)
        wait_until(lambda: paused(standby), "the lower-priority peer paused")
        flinkjob = f"{own_namespace}/ha"

        jobs = FlinkJobs(kube.api_client(), own_namespace)
        jobs.create(
            "ha",
            {"flinkRestUrl": proxy.url, "jar": {"uri": test_job_jar.as_uri()}, "parallelism": 2, "args": RATE_ARGS},
        )
        ready = jobs.wait("ha", is_ready_at_current_generation, "Ready", timeout=120)
        old_job = ready["status"]["jobId"]
        before = flink_rest.wait_state_counter_at_least(old_job, 100)
        wait_until(lambda: handled(active, flinkjob) > 0, "the higher-priority operator's handling in its log")

        if kill_point == "stop-requested":  # the stop with savepoint never reaches Flink
            hold = proxy.hold("POST", r"^/jobs/[0-9a-f]+/stop$")
        else:  # Flink starts the new job; the operator dies before it hears so
            hold = proxy.hold("POST", r"^/jars/[^/]+/run$", after_forward=True)
        jobs.patch_spec("ha", {"jar": {"uri": jar_v2.as_uri()}})
        assert hold.arrived.wait(60), f"the active operator never got to {kill_point}"
        assert handled(standby, flinkjob) == 0, "the standby must not act while the active operator lives"
        resumes_before = resumes(standby)
        active.kill()
        proxy.release(hold, drop=True)  # the answer dies with the operator
        recorded = jobs.status("ha").get("upgrade") or {}
        if kill_point == "stop-requested":
            assert recorded.get("step") == "Savepointing" and recorded.get("triggerId"), recorded
        else:
            assert recorded.get("savepointPath") and recorded.get("newJobId"), recorded
            assert recorded["newJobId"] in flink_rest.running_jobs(), "Flink runs the new job the dead operator started"

        done = jobs.wait("ha", is_ready_at_current_generation, "Ready after the takeover", timeout=180)
        status = done["status"]
        wait_until(lambda: handled(standby, flinkjob) > 0, "the standby's handling in its log")  # written after status
        assert resumes(standby) > resumes_before, "the standby resumed once the killed operator's keep-alive expired"
        check_one_upgrade_finished(flink_rest, status, old_job=old_job, recorded=recorded, counter_before=before)
        assert status["lastStableSpec"]["jarUri"] == jar_v2.as_uri()
    finally:
        for op in operators.values():
            op.stop()
