"""Application-mode FlinkJobs on the bed's real node, for the demo (`python -m testbed demo-app`) and
bench/b4_app_upgrade.py: the test job's image in two tags, the host directory every pod mounts for
savepoints and checkpoints, the FlinkJob spec, and where a JobManager's REST API answers.

The image is the bed's Flink image plus the test job's jar under /opt/flink/job/ (testbed.images),
imported into the node's containerd once and tagged twice (the same content): a change of
`spec.cluster.image` between the tags is an upgrade that changes nothing else. Savepoints and
checkpoints go to a host directory mounted through `spec.cluster.podTemplate` (a hostPath: one node).
A process on the host reaches a JobManager at its pod IP (there is no kube-proxy); an operator running
on the host is told so by FLINKOP_APP_REST_ADDRESS=pod-ip.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.images import JOB_DIR

if TYPE_CHECKING:
    from testbed.node import Node

JOB_IMAGES = ("localhost/flinkop-testjob:v1", "localhost/flinkop-testjob:v2")
DATA_MOUNT = "/flink-data"
RATE_ARGS = ("--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000")
FLINKJOB_LABEL = "flinkop.io/flinkjob"
COMPONENT_LABEL = "flinkop.io/component"
JOB_ID_LABEL = "flinkop.io/job-id"
REST_PORT = 8081


def import_job_images(node: Node, jar: Path) -> tuple[str, str]:
    """Builds the job's image (cached), imports it into the node's containerd and tags it twice."""
    from testbed.images import build_flink_job_image

    node.import_images([build_flink_job_image(jar, JOB_IMAGES[0])])
    node.ctr("images", "tag", "--force", *JOB_IMAGES)
    return JOB_IMAGES


def make_data_dir(path: Path) -> Path:
    """The host directory for savepoints and checkpoints, writable by the pods' Flink user (9999)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def app_spec(
    image: str,
    data_dir: Path,
    *,
    cpu: str = "1",
    parallelism: int = 2,
    args: Sequence[str] = RATE_ARGS,
    **changes: Any,
) -> dict[str, Any]:
    """A FlinkJob spec in application mode: the test job from `image`, savepoints and checkpoints in
    `data_dir` (mounted at DATA_MOUNT), `cpu` for the JobManager and for each TaskManager (requested
    and limited alike), 2 slots per TaskManager. `changes` are further top-level spec fields."""
    spec: dict[str, Any] = {
        "cluster": {
            "image": image,
            "imagePullPolicy": "Never",
            "flinkConfiguration": {
                "state.backend.type": "hashmap",
                "taskmanager.memory.managed.size": "32m",
                "execution.checkpointing.dir": f"file://{DATA_MOUNT}/checkpoints",
            },
            "jobManager": {"resources": {"cpu": cpu, "memory": "900Mi"}},
            "taskManager": {"resources": {"cpu": cpu, "memory": "1000Mi"}, "slots": 2},
            "podTemplate": {
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "volumes": [{"name": "data", "hostPath": {"path": str(data_dir), "type": "Directory"}}],
                    "containers": [
                        {"name": "flink-main-container", "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT}]}
                    ],
                }
            },
        },
        "jar": {"uri": f"local://{JOB_DIR}/flinkop-testjob.jar"},
        "args": list(args),
        "parallelism": parallelism,
        "savepointDirectory": f"file://{DATA_MOUNT}/savepoints",
    }
    spec.update(changes)
    return spec


def jobmanager_selector(flinkjob_label: str) -> str:
    """The label selector of a FlinkJob's JobManager pods (flinkop.app_cluster's labels)."""
    return f"{FLINKJOB_LABEL}={flinkjob_label},{COMPONENT_LABEL}=jobmanager"


def jobmanager_rest(pods: Sequence[Mapping[str, Any]], not_job_ids: Collection[str] = ()) -> tuple[str, str] | None:
    """(job id, REST URL) of the first JobManager pod among `pods` (JSON dicts) that runs a job id not in
    `not_job_ids`, is Running with an IP and is not being deleted; None when there is none (yet)."""
    for pod in pods:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        job_id = (meta.get("labels") or {}).get(JOB_ID_LABEL)
        ip = status.get("podIP")
        if not job_id or job_id in not_job_ids or meta.get("deletionTimestamp"):
            continue
        if status.get("phase") != "Running" or not ip:
            continue
        host = f"[{ip}]" if ":" in str(ip) else str(ip)
        return str(job_id), f"http://{host}:{REST_PORT}"
    return None


def wait_jobmanager_rest(
    core: Any,
    namespace: str,
    flinkjob_label: str,
    *,
    not_job_ids: Collection[str] = (),
    timeout: float = 300.0,
    interval: float = 0.05,
) -> tuple[str, str, float]:
    """Lists the FlinkJob's JobManager pods through `core` (a kubernetes CoreV1Api) every `interval`
    seconds until one runs a job id not in `not_job_ids` with an IP: (job id, REST URL, when seen)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = core.list_namespaced_pod(
            namespace, label_selector=jobmanager_selector(flinkjob_label), limit=50, _request_timeout=10
        )
        found = jobmanager_rest(core.api_client.sanitize_for_serialization(listed).get("items") or [], not_job_ids)
        if found is not None:
            return found[0], found[1], time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no JobManager pod of {namespace}/{flinkjob_label} running a job other than "
                f"{sorted(not_job_ids)} with an IP within {timeout:.0f} s"
            )
        time.sleep(interval)
