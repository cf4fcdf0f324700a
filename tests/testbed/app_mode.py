"""Application-mode FlinkJobs for the bed's real node: a spec whose cluster runs the bed's job image,
with savepoints and checkpoints in a host directory every pod mounts (a hostPath through the pod
template: there is one node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.images import JOB_DIR

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]
DATA_MOUNT = "/flink-data"


def app_spec(image: str, data_dir: Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cluster": {
            "image": image,
            "imagePullPolicy": "Never",
            "flinkConfiguration": {
                "state.backend.type": "hashmap",
                "taskmanager.memory.managed.size": "32m",
                "execution.checkpointing.dir": f"file://{DATA_MOUNT}/checkpoints",
            },
            "jobManager": {"resources": {"cpu": "1", "memory": "900Mi"}},
            "taskManager": {"resources": {"cpu": "1", "memory": "1000Mi"}, "slots": 2},
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
        "args": RATE_ARGS,
        "parallelism": 2,
        "savepointDirectory": f"file://{DATA_MOUNT}/savepoints",
    }
    spec.update(changes)
    return spec
