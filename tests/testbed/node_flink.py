"""A Flink 2.3 session cluster as pods on the bed's node (testbed.node), from the bed's Flink image:
one JobManager pod, then one TaskManager pod told the JobManager's pod IP (bare pods, no Service: they
find each other by IP), both sharing a host directory for savepoints and
checkpoints (a hostPath volume: one node). The host reaches the REST API at the JobManager's pod IP.
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from testbed.images import FLINK_IMAGE, FLINK_UID
from testbed.kube import KubeCluster

DATA_MOUNT = "/flink-data"


@dataclass(frozen=True)
class FlinkPods:
    namespace: str
    jobmanager_ip: str
    taskmanager_ip: str
    rest_url: str
    data_dir: Path | None  # the host directory mounted at DATA_MOUNT in both pods


def flink_pod(
    name: str, role: str, jobmanager_address: str, properties: str, data_dir: Path | None = None
) -> dict[str, Any]:
    """A JobManager (`role` jobmanager) or TaskManager pod of the bed's Flink image. `properties`
    are FLINK_PROPERTIES lines (the entry point substitutes ${POD_IP} and other variables)."""
    container: dict[str, Any] = {
        "name": role,
        "image": FLINK_IMAGE,
        "imagePullPolicy": "Never",
        "args": [role],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "JOB_MANAGER_RPC_ADDRESS", "value": jobmanager_address},
            {"name": "FLINK_PROPERTIES", "value": properties},
        ],
        "ports": [{"name": "rest", "containerPort": 8081}, {"name": "rpc", "containerPort": 6123}],
        "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "1Gi"}},
    }
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsUser": FLINK_UID, "runAsGroup": FLINK_UID},
        "containers": [container],
    }
    if data_dir is not None:
        container["volumeMounts"] = [{"name": "flink-data", "mountPath": DATA_MOUNT}]
        spec["volumes"] = [{"name": "flink-data", "hostPath": {"path": str(data_dir), "type": "Directory"}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "flink", "component": role}},
        "spec": spec,
    }


def session_properties(slots: int, data_dir: Path | None) -> str:
    """Small memory sizes (the node is shared), the TaskManager's own pod IP as its address."""
    lines = [
        "jobmanager.memory.process.size: 900m",
        "taskmanager.memory.process.size: 1000m",
        "taskmanager.memory.managed.size: 32m",
        f"taskmanager.numberOfTaskSlots: {slots}",
        "taskmanager.host: ${POD_IP}",
        "state.backend.type: hashmap",
    ]
    if data_dir is not None:
        lines += [
            f"state.savepoints.dir: file://{DATA_MOUNT}/savepoints",
            f"execution.checkpointing.dir: file://{DATA_MOUNT}/checkpoints",
        ]
    return "\n".join(lines) + "\n"


def _pod_ip(kube: KubeCluster, namespace: str, name: str) -> str:
    result = kube.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return ""
    return str(json.loads(result.stdout).get("status", {}).get("podIP", ""))


def _has_default_service_account(kube: KubeCluster, namespace: str) -> bool:
    result = kube.kubectl("get", "serviceaccount", "default", "-n", namespace, "-o", "json", check=False)
    return result.returncode == 0 and bool(json.loads(result.stdout).get("secrets"))


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return value


def start_flink_pods(
    kube: KubeCluster,
    namespace: str,
    pod_subnet: str,
    *,
    slots: int = 2,
    data_dir: Path | None = None,
    timeout: float = 180.0,
) -> FlinkPods:
    """Starts the JobManager pod, then the TaskManager pod, and waits until the TaskManager's slots
    show in the JobManager's REST API, called from the host at the JobManager's pod IP."""
    # Pods are refused until the controller-manager has made the namespace's default ServiceAccount.
    _wait(lambda: _has_default_service_account(kube, namespace), 60, f"ServiceAccount default in {namespace}")
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o777)  # the Flink user (9999) writes savepoints there
    properties = session_properties(slots, data_dir)
    kube.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(flink_pod("jobmanager", "jobmanager", "$(POD_IP)", properties, data_dir)),
    )  # fmt: skip
    jm_ip = _wait(lambda: _pod_ip(kube, namespace, "jobmanager"), 60, "the JobManager's pod IP")
    if ipaddress.ip_address(jm_ip) not in ipaddress.ip_network(pod_subnet):
        raise AssertionError(f"JobManager pod IP {jm_ip} outside the node's pod network {pod_subnet}")
    kube.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(flink_pod("taskmanager", "taskmanager", jm_ip, properties, data_dir)),
    )  # fmt: skip
    rest_url = f"http://{jm_ip}:8081"

    def slots_shown() -> bool:
        try:
            overview = requests.get(f"{rest_url}/overview", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        return int(overview.get("slots-total", 0)) >= slots

    try:
        _wait(slots_shown, timeout, f"{slots} TaskManager slots at {rest_url}")
    except TimeoutError as error:
        logs = "\n".join(
            f"--- {pod} ---\n" + kube.kubectl("logs", pod, "-n", namespace, "--tail=30", check=False).stdout
            for pod in ("jobmanager", "taskmanager")
        )
        raise TimeoutError(f"{error}\n{logs}") from None
    tm_ip = _pod_ip(kube, namespace, "taskmanager")
    return FlinkPods(namespace, jm_ip, tm_ip, rest_url, data_dir)
