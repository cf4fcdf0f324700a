"""deploy/ for real on the bed's node: `kubectl apply -k deploy/` (rendered, with the bed's operator
image), the operator running as deploy/'s pods under the ServiceAccount `flinkop` with exactly
deploy/rbac.yaml's rules, doing a savepoint upgrade of a FlinkJob on the Flink session cluster of
deploy/flink-session/, running on the same node (its changes: see `flink_session_from_deploy`), then
an application-mode FlinkJob's own cluster, upgraded while both operator pods are deleted under their
Deployment.
The operator serves every namespace, as deployed (with `--namespace` it would peer through
namespaced KopfPeerings, which deploy/'s RBAC does not grant); the FlinkJob lives in an `own-*`
namespace, which the session's own operator leaves alone.

What the bed changes in the rendered manifests, and why (nothing of the RBAC):
  * image `localhost/flinkop:0.1.0`, imagePullPolicy Never: built locally (testbed.images), no registry;
  * FLINKOP_JAR_ALLOWED_HOSTS, a placeholder in deploy/: the host's bridge address, where the jar is served;
  * the apiserver's address: there is no kube-proxy for the `kubernetes` Service's ClusterIP, so
    KUBERNETES_SERVICE_HOST is `kubernetes.default.svc` (a name in the apiserver's serving
    certificate), which hostAliases maps to the host's address on the pod bridge, where a forwarder
    (testbed.tcp_forward) relays to the apiserver on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
import yaml
from testbed.app_jobs import DATA_MOUNT, app_spec
from testbed.flink_rest import FlinkRest
from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
from testbed.images import FLINK_IMAGE, OPERATOR_IMAGE, build_flink_job_image
from testbed.kube import NODE_NAME, KubeCluster
from testbed.node import Node
from testbed.tcp_forward import TcpForwarder

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "flinkop-system"
SESSION_NAMESPACE = "flink"
RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]


@pytest.fixture
def apiserver_for_pods(kube: KubeCluster, node: Node) -> Iterator[tuple[str, int]]:
    """The apiserver as pods reach it: the host's bridge address, relayed to 127.0.0.1."""
    target = urlparse(kube.server)
    assert target.hostname and target.port
    forwarder = TcpForwarder(node.host_ip, (target.hostname, target.port))
    try:
        yield forwarder.address
    finally:
        forwarder.close()


@pytest.fixture
def jar_server(node: Node, test_job_jar: Path) -> Iterator[str]:
    """The test job's jar over HTTP at the host's bridge address, for the operator pod to fetch."""
    handler = functools.partial(_QuietHandler, directory=str(test_job_jar.parent))
    server = http.server.ThreadingHTTPServer((node.host_ip, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{node.host_ip}:{server.server_address[1]}/{test_job_jar.name}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def rendered_deploy(kube: KubeCluster, apiserver: tuple[str, int]) -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/`, with the bed's changes to the operator Deployment (module docstring)."""
    documents = [d for d in yaml.safe_load_all(kube.kubectl("kustomize", str(REPO / "deploy")).stdout) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["image"] = OPERATOR_IMAGE
    container["imagePullPolicy"] = "Never"
    # The jar host allow-list is a placeholder every installation fills in: here, the host's address
    # on the pod bridge, where the bed serves the test job's jar (jar_server).
    container["env"] = [
        *(e for e in container.get("env", []) if e["name"] != "FLINKOP_JAR_ALLOWED_HOSTS"),
        {"name": "FLINKOP_JAR_ALLOWED_HOSTS", "value": apiserver[0]},
        {"name": "KUBERNETES_SERVICE_HOST", "value": "kubernetes.default.svc"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(apiserver[1])},
    ]
    pod["hostAliases"] = [{"ip": apiserver[0], "hostnames": ["kubernetes.default.svc"]}]
    return documents


@pytest.fixture
def deployed_operator(
    kube: KubeCluster, node: Node, crd: Path, own_namespace: str, apiserver_for_pods: tuple[str, int]
) -> Iterator[list[dict[str, Any]]]:
    documents = rendered_deploy(kube, apiserver_for_pods)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    try:
        result = kube.kubectl(
            "rollout", "status", "deployment/flinkop", "-n", OPERATOR_NAMESPACE, "--timeout=180s",
            check=False, timeout=190,
        )  # fmt: skip
        assert result.returncode == 0, (
            result.stderr + kube.kubectl("describe", "pods", "-n", OPERATOR_NAMESPACE, check=False).stdout[-4000:]
        )
        yield documents
    finally:
        for pod in _operator_pods(kube):
            name = pod["metadata"]["name"]
            print(
                f"--- {name} ---\n"
                + kube.kubectl("logs", name, "-n", OPERATOR_NAMESPACE, "--tail=30", check=False).stdout
            )
        # Not the CRDs: the session's other tests use them.
        kube.kubectl("delete", "deployment", "flinkop", "-n", OPERATOR_NAMESPACE, "--wait=false", check=False)
        for kind in ("clusterrolebinding", "clusterrole"):
            kube.kubectl("delete", kind, "flinkop", check=False)
        kube.kubectl("delete", "namespace", OPERATOR_NAMESPACE, "--wait=false", check=False)


@dataclass(frozen=True)
class FlinkSession:
    rest_url: str  # at the JobManager's pod IP
    data_dir: Path  # the host directory behind the PersistentVolumeClaim flink-data


@pytest.fixture
def flink_session_from_deploy(
    kube: KubeCluster, node: Node, bed_dir: Path, apiserver_for_pods: tuple[str, int]
) -> Iterator[FlinkSession]:
    """`kubectl kustomize deploy/flink-session/` on the node, with the bed's changes: the local Flink
    image (imagePullPolicy Never), a hostPath PersistentVolume for the claim flink-data, the
    apiserver's address for Flink's Kubernetes high availability (as for the operator: no kube-proxy
    for the `kubernetes` Service), and, for the TaskManagers, `flink-jobmanager` mapped to the
    JobManager's pod IP (hostAliases: no cluster DNS, no kube-proxy behind the Service). The
    JobManager starts first, so its IP is known."""
    to_apiserver = {"ip": apiserver_for_pods[0], "hostnames": ["kubernetes.default.svc"]}
    documents = [
        d for d in yaml.safe_load_all(kube.kubectl("kustomize", str(REPO / "deploy" / "flink-session")).stdout) if d
    ]
    for doc in documents:
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                container["image"] = FLINK_IMAGE
                container["imagePullPolicy"] = "Never"
            for container in pod["containers"]:
                container["env"] = [
                    *container.get("env", []),
                    {"name": "KUBERNETES_SERVICE_HOST", "value": "kubernetes.default.svc"},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": str(apiserver_for_pods[1])},
                ]
            pod["hostAliases"] = [to_apiserver]
            if doc["metadata"]["name"] == "flink-jobmanager":
                # With high availability the JobManager reaches its own advertised address
                # (flink-jobmanager, the Service): itself, here, with no cluster DNS.
                pod["hostAliases"].append(
                    {"ip": "127.0.0.1", "hostnames": ["flink-jobmanager", f"flink-jobmanager.{SESSION_NAMESPACE}.svc"]}
                )
    data_dir = bed_dir / "flink-session-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o777)  # hostPath: fsGroup does not apply; the Flink user is 9999
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "flink-data-bed"},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": SESSION_NAMESPACE, "name": "flink-data"},
            "hostPath": {"path": str(data_dir), "type": "Directory"},
        },
    }
    taskmanagers = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "flink-taskmanager"
    )
    kube.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump_all([volume, *(d for d in documents if d is not taskmanagers)])
    )
    try:
        jm_ip = _wait_for(lambda: _pod_ip(kube, SESSION_NAMESPACE, "component=jobmanager"), 120, "the JobManager's IP")
        taskmanagers["spec"]["template"]["spec"]["hostAliases"] = [
            to_apiserver,
            {"ip": jm_ip, "hostnames": ["flink-jobmanager", f"flink-jobmanager.{SESSION_NAMESPACE}.svc"]},
        ]
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(taskmanagers))
        rest_url = f"http://{jm_ip}:8081"
        try:
            _wait_for(lambda: _slots(rest_url) >= 4, 240, f"two TaskManagers' 4 slots at {rest_url}")
        except AssertionError:
            print(kube.kubectl("describe", "pods", "-n", SESSION_NAMESPACE, check=False).stdout[-4000:])
            for pod in kube.kubectl("get", "pods", "-n", SESSION_NAMESPACE, "-o", "name", check=False).stdout.split():
                print(
                    f"--- {pod} ---\n"
                    + kube.kubectl("logs", pod, "-n", SESSION_NAMESPACE, "--tail=30", check=False).stdout
                )
            raise
        yield FlinkSession(rest_url, data_dir)
    finally:
        kube.kubectl("delete", "namespace", SESSION_NAMESPACE, "--wait=false", check=False)
        kube.kubectl("delete", "persistentvolume", "flink-data-bed", "--wait=false", check=False)


def _pod_ip(kube: KubeCluster, namespace: str, selector: str) -> str:
    result = kube.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json", check=False)
    if result.returncode != 0:
        return ""
    items = json.loads(result.stdout)["items"]
    return str(items[0]["status"].get("podIP", "")) if len(items) == 1 else ""


def _jobmanager_url(kube: KubeCluster, namespace: str, job_id: str) -> str:
    """REST at the pod IP of the JobManager running `job_id` (its TaskManagers carry the same job id)."""
    selector = f"flinkop.io/job-id={job_id},flinkop.io/component=jobmanager"
    return f"http://{_wait_for(lambda: _pod_ip(kube, namespace, selector), 60, 'the JobManager pod IP')}:8081"


def _slots(rest_url: str) -> int:
    try:
        return int(requests.get(f"{rest_url}/overview", timeout=2).json().get("slots-total", 0))
    except (requests.RequestException, ValueError):
        return 0


def _wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return value


def _operator_pods(kube: KubeCluster) -> list[dict[str, Any]]:
    result = kube.kubectl(
        "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=flinkop", "-o", "json", check=False
    )
    return list(json.loads(result.stdout)["items"]) if result.returncode == 0 else []


def test_operator_deployed_from_deploy_runs_as_its_service_account_and_upgrades_a_job_through_a_savepoint(
    kube: KubeCluster,
    node: Node,
    own_namespace: str,
    jar_server: str,
    deployed_operator: list[dict[str, Any]],
    flink_session_from_deploy: FlinkSession,
    test_job_jar: Path,
    bed_dir: Path,
) -> None:
    # The operator runs as deploy/'s pods, with deploy/'s ServiceAccount and its token.
    pods = _operator_pods(kube)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["spec"]["serviceAccountName"] == "flinkop"
        assert pod["status"]["phase"] == "Running"
    rbac_kinds = ("ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Role", "RoleBinding")
    rbac = [d for d in deployed_operator if d["kind"] in rbac_kinds]
    shipped = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d]
    def by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        return {(d["kind"], d["metadata"]["name"]): d.get("rules") for d in docs}

    assert by_name(rbac) == by_name(shipped)  # exactly deploy/'s objects and rules

    flink = flink_session_from_deploy
    rest = FlinkRest(flink.rest_url)
    jobs = FlinkJobs(kube.api_client(), own_namespace)
    jobs.create(
        "counter",
        {"flinkRestUrl": flink.rest_url, "jar": {"uri": jar_server}, "parallelism": 1, "args": list(RATE_ARGS)},
    )
    first = jobs.wait("counter", is_ready_at_current_generation, "Ready at the current generation", timeout=180)
    old_job = first["status"]["jobId"]
    count_before = rest.wait_state_counter_at_least(old_job, 100)

    jobs.patch_spec("counter", {"parallelism": 2})
    upgraded = jobs.wait("counter", is_ready_at_current_generation, "Ready after the upgrade", timeout=180)

    status = upgraded["status"]
    new_job = status["jobId"]
    assert new_job != old_job
    assert rest.job_state(new_job) == "RUNNING"
    assert rest.job_parallelism(new_job) == 2
    savepoint = status["lastSavepoint"]["path"]
    assert savepoint.startswith("file:/flink-data/savepoints/")
    assert rest.restored_from(new_job) == savepoint
    # The savepoint is on the pods' shared volume, which is a directory of this host.
    assert (flink.data_dir / "savepoints" / Path(savepoint).name).is_dir()
    assert rest.wait_state_counter_at_least(new_job, count_before + 1) > count_before
    # deploy/flink-session/ runs with Flink's Kubernetes high availability, as its ServiceAccount:
    # the leader and the running job's metadata are in ConfigMaps of its namespace.
    assert rest.get("/jobmanager/config") and any(
        e.get("key") == "high-availability.type" and e.get("value") == "kubernetes"
        for e in rest.get("/jobmanager/config")
    )
    configmaps = kube.kubectl("get", "configmaps", "-n", SESSION_NAMESPACE, "-o", "name").stdout.split()
    assert "configmap/flink-session-cluster-config-map" in configmaps, configmaps
    assert f"configmap/flink-session-{new_job}-config-map" in configmaps, configmaps

    jobs.delete("counter")  # the operator pod stops the job with a final savepoint, then lets it go
    jobs.wait_gone("counter", timeout=120)
    assert rest.running_jobs() == []

    # Application mode through the same operator pods: their own cluster for a FlinkJob, reached at its
    # Service's DNS name (FLINKOP_APP_REST_ADDRESS unset: the default for an operator in the cluster).
    # The upgrade's savepoint is slowed down, and meanwhile both operator pods are deleted under their
    # Deployment (forced, no grace): the pods that replace it finish the upgrade from the status.
    images = ("localhost/flinkop-testjob:deploy-v1", "localhost/flinkop-testjob:deploy-v2")
    node.import_images([build_flink_job_image(test_job_jar, images[0])])
    node.ctr("images", "tag", "--force", *images)
    data_dir = bed_dir / f"deploy-app-data-{own_namespace}"
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o777)  # the Flink user (9999) writes savepoints and checkpoints there
    slow = data_dir / "slow-snapshots"
    args = [*RATE_ARGS, "--slow-snapshot-file", f"{DATA_MOUNT}/slow-snapshots", "--slow-snapshot-ms", "4000"]
    # The node has 2 CPUs: the session cluster's TaskManagers go (they are done), and each pod of the
    # application cluster asks for half a CPU (the session's JobManager and the operator pods stay).
    kube.kubectl("scale", "deployment", "flink-taskmanager", "-n", SESSION_NAMESPACE, "--replicas=0")
    jobs.create("app", app_spec(images[0], data_dir, cpu="500m", args=args))
    try:
        app_first = jobs.wait("app", is_ready_at_current_generation, "application mode Ready", timeout=300)["status"]
        app_job = app_first["jobId"]
        app_rest = FlinkRest(_jobmanager_url(kube, own_namespace, app_job))
        app_count = app_rest.wait_state_counter_at_least(app_job, 100, timeout=120)

        slow.touch()
        jobs.patch_spec("app", {"cluster": {**app_spec(images[1], data_dir, cpu="500m")["cluster"]}})
        jobs.wait(
            "app",
            lambda r: ((r.get("status") or {}).get("upgrade") or {}).get("step") == "Savepointing",
            "the upgrade's savepoint under way",
            timeout=120,
            interval=0.2,
        )
        before = {p["metadata"]["name"] for p in _operator_pods(kube)}
        kube.kubectl(
            "delete", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=flinkop",
            "--grace-period=0", "--force", "--wait=false",
        )  # fmt: skip
        slow.unlink(missing_ok=True)
        done = jobs.wait("app", is_ready_at_current_generation, "application mode Ready after the upgrade", timeout=300)
        assert not before & {p["metadata"]["name"] for p in _operator_pods(kube)}, "the pods were replaced"
        app_status = done["status"]
        app_new = app_status["jobId"]
        assert app_new != app_job and app_status["deployedSpec"]["cluster"]["image"] == images[1]
        upgrades = [p for p in app_status["savepointHistory"] if p["reason"] == "upgrade"]
        assert len(upgrades) == 1 and upgrades[0]["path"] == app_status["lastSavepoint"]["path"]
        app_rest = FlinkRest(_jobmanager_url(kube, own_namespace, app_new))
        assert [j["jid"] for j in app_rest.jobs_overview()] == [app_new]
        assert app_rest.restored_from(app_new) == app_status["lastSavepoint"]["path"]
        assert app_rest.wait_state_counter_at_least(app_new, app_count + 1, timeout=120) > app_count

        jobs.delete("app")  # a final savepoint through the JobManager, then the cluster goes with it
        jobs.wait_gone("app", timeout=180)
        def cluster_objects() -> list[str]:
            selector = "flinkop.io/flinkjob=app"
            kinds = "deployments,services,configmaps"
            found = kube.kubectl("get", kinds, "-n", own_namespace, "-l", selector, "-o", "name")
            return list(found.stdout.split())

        _wait_for(lambda: not cluster_objects(), 120, "the garbage collector to remove the cluster")
    finally:
        slow.unlink(missing_ok=True)
