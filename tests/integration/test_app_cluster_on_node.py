"""Application mode on the bed's real node: the operator runs FlinkJobs' own Flink 2.3 clusters, and the
building blocks it uses (flinkop.app_cluster's objects, applied and read by flinkop.app_cluster_kube).

The job's jar is in an image (the bed's Flink image plus the test job under /opt/flink/job/, as a team
would build theirs); savepoints and checkpoints go to a host directory every pod mounts (a hostPath in the
FlinkJob's pod template: one node). The TaskManagers reach the JobManager by its headless Service's name
through the bed's cluster DNS; the operator and this test process, outside the cluster, reach REST at the
JobManager's pod IP (FLINKOP_APP_REST_ADDRESS=pod-ip). The operator runs as the bed's non-admin operator
user bound to deploy/rbac.yaml's ClusterRole (plus listing namespaces, for `--namespace`), except in the
crash test, which restarts its own; the building-block tests act as that user too.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flinkop.app_cluster import FLINKJOB_LABEL, GENERATION_LABEL, JOB_ID_LABEL, ClusterStart, build_cluster
from flinkop.app_cluster_kube import AppClusterError, AppClusterKube, ClusterReadiness, RestAddress
from flinkop.spec import parse_spec
from testbed.app_jobs import DATA_MOUNT, RATE_ARGS, app_spec
from testbed.flink_rest import FlinkRest
from testbed.images import build_flink_job_image
from testbed.kube import KubeCluster
from testbed.node import Node

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def job_images(node: Node, test_job_jar: Path) -> tuple[str, str]:
    """Two tags of the job's image (the same content, one tar imported, then tagged): a change of
    spec.cluster.image between them."""
    refs = ("localhost/flinkop-testjob:v1", "localhost/flinkop-testjob:v2")
    node.import_images([build_flink_job_image(test_job_jar, refs[0])])
    node.ctr("images", "tag", "--force", *refs)
    return refs


@pytest.fixture(scope="module")
def clusters(kube: KubeCluster, crd: Path) -> Iterator[AppClusterKube]:
    """AppClusterKube as the bed's non-admin operator user, bound to deploy/rbac.yaml's ClusterRole only:
    what it does here is what deploy/'s RBAC allows."""
    role = next(
        d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d["kind"] == "ClusterRole"
    )
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "flinkop-test-app-cluster"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flinkop-operator"}],
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(binding))
    try:
        yield AppClusterKube(kube.api_client(kube.operator_kubeconfig))
    finally:
        kube.kubectl("delete", "clusterrolebinding", "flinkop-test-app-cluster", check=False)


@pytest.fixture
def data_dir(bed_dir: Path) -> Path:
    path = bed_dir / f"app-data-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    path.chmod(0o777)  # the Flink user (9999) writes savepoints and checkpoints there
    return path


def _has_token(kube: KubeCluster, namespace: str) -> bool:
    result = kube.kubectl("get", "serviceaccount", "default", "-n", namespace, "-o", "json", check=False)
    return result.returncode == 0 and bool(json.loads(result.stdout).get("secrets"))


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)
    return value


def create_flinkjob(kube: KubeCluster, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The FlinkJob in the apiserver (through the CRD's schema), as it reads back."""
    body = {"apiVersion": "flinkop.io/v1alpha1", "kind": "FlinkJob", "metadata": {"name": name}, "spec": spec}
    kube.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    return dict(json.loads(kube.kubectl("get", "flinkjob", name, "-n", namespace, "-o", "json").stdout))


def start_cluster(
    clusters: AppClusterKube, flinkjob: dict[str, Any], start: ClusterStart, spec: dict[str, Any] | None = None
) -> Any:
    meta = flinkjob["metadata"]
    objects = build_cluster(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        spec=parse_spec(spec if spec is not None else flinkjob["spec"]),
        start=start,
    )
    clusters.apply(objects)
    return objects


def wait_ready(clusters: AppClusterKube, namespace: str, objects: Any, timeout: float = 180) -> ClusterReadiness:
    seen: list[ClusterReadiness] = []

    def ready() -> ClusterReadiness | None:
        readiness = clusters.readiness(namespace, objects.names, objects.job_id)
        seen.append(readiness)
        return readiness if readiness.all_ready else None

    try:
        return _wait(ready, timeout, "the cluster's pods to be ready")  # type: ignore[no-any-return]
    except AssertionError as error:
        raise AssertionError(f"{error}; last readiness: {seen[-1].summary() if seen else 'none'}") from None


def pod_logs(kube: KubeCluster, namespace: str) -> str:
    pods = kube.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split()
    return "\n".join(
        f"--- {pod} ---\n" + kube.kubectl("logs", pod, "-n", namespace, "--tail=40", check=False).stdout for pod in pods
    )


def owned_objects(kube: KubeCluster, namespace: str, flinkjob_label: str) -> list[str]:
    result = kube.kubectl(
        "get", "configmaps,services,deployments,replicasets,pods", "-n", namespace,
        "-l", f"{FLINKJOB_LABEL}={flinkjob_label}", "-o", "name", check=False,
    )  # fmt: skip
    return result.stdout.split()


def test_readiness_names_a_missing_image_an_unschedulable_pod_and_a_crash_loop(
    kube: KubeCluster,
    node: Node,
    clusters: AppClusterKube,
    own_app_ns: str,
    data_dir: Path,
    job_images: tuple[str, str],
) -> None:
    small = {"resources": {"cpu": "100m", "memory": "200Mi"}}  # pods that never run Flink: leave the node's CPUs free
    missing_spec = app_spec("localhost/no-such-image:1", data_dir)
    missing_spec["cluster"].update(jobManager=small, taskManager=small)
    missing = create_flinkjob(kube, own_app_ns, "missing-image", missing_spec)
    huge_spec = app_spec(job_images[0], data_dir)
    huge_spec["cluster"]["jobManager"] = {"resources": {"cpu": "1", "memory": "500Gi"}}
    huge_spec["cluster"]["taskManager"] = {"resources": {"cpu": "1", "memory": "500Gi"}}
    huge = create_flinkjob(kube, own_app_ns, "too-big", huge_spec)
    crash_spec = app_spec(job_images[0], data_dir)
    crash_spec["cluster"].update(jobManager=small, taskManager=small)
    crash_spec["cluster"]["podTemplate"]["spec"]["containers"][0]["command"] = [
        "bash", "-c", "echo 'cannot start: the configuration is broken' >&2; exit 3",
    ]  # fmt: skip
    crashing = create_flinkjob(kube, own_app_ns, "crashing", crash_spec)

    started = {
        name: start_cluster(clusters, flinkjob, ClusterStart(uuid.uuid4().hex))
        for name, flinkjob in (("missing", missing), ("huge", huge), ("crashing", crashing))
    }

    def problem(name: str, reason: str) -> Any:
        objects = started[name]
        readiness = clusters.readiness(own_app_ns, objects.names, objects.job_id)
        found = [p for p in readiness.jobmanager.problems if p.reason == reason]
        return (readiness, found[0]) if found else None

    readiness, image = _wait(lambda: problem("missing", "ImageMissing"), 60, "an ImageMissing problem")
    assert "localhost/no-such-image:1" in image.message and "ErrImageNeverPull" in image.message
    assert readiness.jobmanager.ready == 0 and not readiness.all_ready
    assert "ImageMissing" in readiness.summary() and "JobManager 0/1 ready" in readiness.summary()

    readiness, unschedulable = _wait(lambda: problem("huge", "Unschedulable"), 60, "an Unschedulable problem")
    assert "Insufficient memory" in unschedulable.message
    assert any(p.reason == "Unschedulable" for p in readiness.taskmanager.problems)

    readiness, crash = _wait(lambda: problem("crashing", "CrashLoopBackOff"), 120, "a CrashLoopBackOff problem")
    assert "exited with code 3" in crash.message
    assert "cannot start: the configuration is broken" in crash.message

    # A pass's one look at a cluster: the job its JobManager runs, the same readiness, and no address
    # while no JobManager pod runs; nothing of a cluster the FlinkJob does not own.
    objects = started["missing"]
    look = clusters.look(own_app_ns, objects.names, missing["metadata"]["uid"], RestAddress.POD_IP)
    assert look.job_id == objects.job_id and look.rest_url is None
    assert look.readiness is not None and [p.reason for p in look.readiness.jobmanager.problems] == ["ImageMissing"]
    apart = clusters.readiness(own_app_ns, objects.names, objects.job_id)
    assert (look.readiness.jobmanager.wanted, look.readiness.taskmanager.wanted) == (1, apart.taskmanager.wanted)
    assert look.readiness.taskmanager.total == apart.taskmanager.total > 0
    by_service = clusters.look(own_app_ns, objects.names, missing["metadata"]["uid"], RestAddress.SERVICE)
    assert by_service.rest_url == f"http://{objects.names.service}.{own_app_ns}.svc:8081"
    assert clusters.look(own_app_ns, objects.names, crashing["metadata"]["uid"], RestAddress.SERVICE).job_id is None

    # Deleting one generation's objects by its label leaves another FlinkJob's cluster alone.
    deleted = clusters.delete(own_app_ns, objects.names, missing["metadata"]["uid"], generation="not-this-one")
    assert deleted == []
    deleted = clusters.delete(own_app_ns, objects.names, missing["metadata"]["uid"], generation=objects.generation)
    assert len(deleted) == 4
    # The garbage collector removes the ReplicaSets and pods after their Deployments (background
    # propagation), pods after their grace period: under a full `make test` on 2 cores that took
    # over 60 s once.
    _wait(lambda: not owned_objects(kube, own_app_ns, "missing-image"), 180, "the missing-image cluster to be gone")
    assert owned_objects(kube, own_app_ns, "too-big") and owned_objects(kube, own_app_ns, "crashing")


def test_kubectl_explain_describes_the_cluster_section(kube: KubeCluster, crd: Path) -> None:
    # The CRD's schema is published (no anyOf that Kubernetes 1.20's OpenAPI builder rejects).
    def explained() -> str | None:
        result = kube.kubectl("explain", "flinkjob.spec.cluster", check=False)
        return result.stdout if result.returncode == 0 else None

    text = _wait(explained, 30, "kubectl explain flinkjob.spec.cluster")
    assert "Application mode" in text
    for field in ("image", "flinkConfiguration", "jobManager", "taskManager", "serviceAccount", "podTemplate"):
        assert field in text
    resources = kube.kubectl("explain", "flinkjob.spec.cluster.taskManager.resources").stdout
    assert "cpu" in resources and "memory" in resources


def test_apply_is_idempotent_scaling_changes_only_replicas_a_foreign_object_is_never_taken_over(
    kube: KubeCluster, clusters: AppClusterKube, crd: Path, tmp_path: Path
) -> None:
    # The apiserver alone (no node needed): objects are only stored.
    namespace = f"app-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    try:
        flinkjob = create_flinkjob(kube, namespace, "idem", app_spec("localhost/flink:1", tmp_path))
        uid = flinkjob["metadata"]["uid"]
        first = start_cluster(clusters, flinkjob, ClusterStart(uuid.uuid4().hex))
        again = build_cluster(
            name="idem",
            namespace=namespace,
            uid=uid,
            spec=parse_spec(flinkjob["spec"]),
            start=ClusterStart(first.job_id),
        )
        assert clusters.apply(again) == [
            "replaced ConfigMap idem-config",
            "replaced Service idem-jobmanager",
            "replaced Deployment idem-jobmanager",
            "replaced Deployment idem-taskmanager",
        ]
        # An in-place rescale changes the TaskManagers' replicas and nothing else.
        before = json.loads(kube.kubectl("get", "deployment", "idem-taskmanager", "-n", namespace, "-o", "json").stdout)
        assert clusters.scale_taskmanagers(namespace, first.names, uid, 3) == "scaled Deployment idem-taskmanager to 3"
        after = json.loads(kube.kubectl("get", "deployment", "idem-taskmanager", "-n", namespace, "-o", "json").stdout)
        assert after["spec"]["replicas"] == 3
        assert after["spec"]["template"] == before["spec"]["template"]
        # Another owner's object of the same name is never replaced.
        other = create_flinkjob(kube, namespace, "other", app_spec("localhost/flink:1", tmp_path))
        foreign = build_cluster(
            name="idem",
            namespace=namespace,
            uid=other["metadata"]["uid"],
            spec=parse_spec(other["spec"]),
            start=ClusterStart(uuid.uuid4().hex),
        )
        with pytest.raises(AppClusterError, match=r"ConfigMap .*/idem-config exists and is not owned by this FlinkJob"):
            clusters.apply(foreign)
        # Deleting another job id's objects leaves these; this job id's removes all four.
        assert clusters.delete(namespace, first.names, uid, job_id=uuid.uuid4().hex) == []
        assert clusters.delete(namespace, first.names, other["metadata"]["uid"]) == []  # not its owner
        assert clusters.delete(namespace, first.names, uid, job_id=first.job_id) == [
            "deleted Deployment idem-taskmanager",
            "deleted Deployment idem-jobmanager",
            "deleted Service idem-jobmanager",
            "deleted ConfigMap idem-config",
        ]
        assert clusters.delete(namespace, first.names, uid) == []  # already gone: nothing to do
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# -- the operator runs application mode --------------------------------------------------------------


@pytest.fixture
def own_app_ns(kube: KubeCluster, node: Node, crd: Path) -> Iterator[str]:
    """A namespace of its own for a test (`own-*`: the session's operator leaves those alone; this module's
    operators serve it)."""
    name = f"own-app-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", name)
    _wait(lambda: _has_token(kube, name), 60, f"the default ServiceAccount's token in {name}")
    yield name
    # No operator serves it any more: FlinkJobs left (a test that failed) are released, so that no other
    # operator of the session (one serving every namespace) finds them in a namespace being deleted.
    from testbed.flinkjobs import release_all

    release_all(kube, name)
    kube.kubectl("delete", "flinkjobs", "--all", "-n", name, "--wait=false", check=False)
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def app_operator(kube: KubeCluster, clusters: AppClusterKube, own_app_ns: str, bed_dir: Path) -> Iterator[Any]:
    """The operator as the bed's non-admin user (deploy/rbac.yaml's ClusterRole, bound by `clusters`),
    serving `own_app_ns`, reaching JobManagers at their pod IPs (it runs outside the node's pods).

    Plus the right to list namespaces, for this test only: kopf lists them when told `--namespace`
    (deploy/ runs the operator cluster-wide, which needs no such list); without it kopf retries for a
    minute before it falls back to the namespace given."""
    from testbed.operator_process import start_operator

    kube.kubectl(
        "apply", "-f", "-",
        input=yaml.safe_dump_all([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "flinkop-test-list-namespaces"},
             "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "flinkop-test-list-namespaces"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "flinkop-test-list-namespaces"},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flinkop-operator"}]},
        ]),
    )  # fmt: skip
    proc = start_operator(
        bed_dir / f"app-operator-{own_app_ns}",
        kube.operator_kubeconfig,
        name="app-operator",
        extra_env={"FLINKOP_APP_REST_ADDRESS": "pod-ip"},
        args=("--namespace", own_app_ns),
    )
    try:
        yield proc
    finally:
        # FlinkJobs a test left go while their operator runs: a final savepoint, then the cluster.
        kube.kubectl("delete", "flinkjobs", "--all", "-n", own_app_ns, "--timeout=120s", check=False, timeout=150)
        proc.stop()
        kube.kubectl("delete", "clusterrolebinding,clusterrole", "flinkop-test-list-namespaces", check=False)


def _jobmanager_job_ids(kube: KubeCluster, namespace: str, name: str) -> set[str]:
    selector = f"{FLINKJOB_LABEL}={name},flinkop.io/component=jobmanager"
    pods = json.loads(kube.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]
    return {p["metadata"]["labels"][JOB_ID_LABEL] for p in pods if not p["metadata"].get("deletionTimestamp")}


def _deployments(kube: KubeCluster, namespace: str, name: str) -> list[str]:
    result = kube.kubectl("get", "deployments", "-n", namespace, "-l", f"{FLINKJOB_LABEL}={name}", "-o", "name")
    return result.stdout.split()


def test_the_operator_deploys_upgrades_rescales_suspends_resumes_and_deletes_an_application_cluster_keeping_state(
    kube: KubeCluster,
    node: Node,
    own_app_ns: str,
    app_operator: Any,
    data_dir: Path,
    job_images: tuple[str, str],
) -> None:
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation

    jobs = FlinkJobs(kube.api_client(), own_app_ns)
    def adaptive(image: str) -> dict[str, Any]:  # Flink's adaptive scheduler: in-place rescaling
        spec = app_spec(image, data_dir, cpu="500m")  # 2 CPUs on the node: a JobManager and two TaskManagers
        spec["cluster"]["flinkConfiguration"]["jobmanager.scheduler"] = "adaptive"
        return spec

    jobs.create("app", adaptive(job_images[0]))

    def ready(what: str) -> dict[str, Any]:
        try:
            return jobs.wait("app", is_ready_at_current_generation, what, timeout=300, interval=1)
        except AssertionError:
            print(pod_logs(kube, own_app_ns))
            raise

    # (a) Deploy: the operator creates the cluster; the job runs under the id the status recorded first.
    first = ready("Ready after the first deploy")["status"]
    job1 = first["jobId"]
    assert first["phase"] == "Running" and first["clusterReadiness"].startswith("JobManager 1/1 ready")
    assert _jobmanager_job_ids(kube, own_app_ns, "app") == {job1}
    url = _wait(lambda: _rest_url(kube, own_app_ns, job1), 60, "the JobManager's pod IP")
    rest1 = FlinkRest(url)
    assert [j["jid"] for j in rest1.jobs_overview()] == [job1] and rest1.restored_from(job1) is None
    # The TaskManager found the JobManager by the Service's DNS name and registered from its pod.
    assert rest1.get("/overview")["taskmanagers"] == 1 and rest1.get("/overview")["slots-total"] == 2
    selector = f"{FLINKJOB_LABEL}=app,flinkop.io/component=taskmanager"
    tm_pods = json.loads(kube.kubectl("get", "pods", "-n", own_app_ns, "-l", selector, "-o", "json").stdout)["items"]
    assert [tm["id"] for tm in rest1.get("/taskmanagers")["taskmanagers"]] == [p["metadata"]["name"] for p in tm_pods]
    config = {e["key"]: e["value"] for e in rest1.get("/jobmanager/config")}
    assert config["jobmanager.rpc.address"] == f"app-jobmanager.{own_app_ns}"
    # Inside the cluster the Service's name answers REST (what an operator in the cluster uses by default).
    host, port = f"app-jobmanager.{own_app_ns}.svc", 8081
    request = f"GET /jobs/overview HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n"
    probe = f"exec 3<>/dev/tcp/{host}/{port}; printf '{request}' >&3; cat <&3"
    answer = kube.kubectl("exec", tm_pods[0]["metadata"]["name"], "-n", own_app_ns, "--", "bash", "-c", probe).stdout
    assert "200 OK" in answer and job1 in answer, answer[-500:]
    count_before = rest1.wait_state_counter_at_least(job1, 100, timeout=120)

    # (b) Upgrade (another image): stop with a savepoint, a new cluster for a new job id from it, the state kept.
    jobs.patch_spec("app", {"cluster": adaptive(job_images[1])["cluster"]})
    second = ready("Ready after the image upgrade")["status"]
    job2 = second["jobId"]
    assert job2 != job1 and second["lastSavepoint"]["reason"] == "upgrade"
    savepoint = second["lastSavepoint"]["path"]
    assert (data_dir / "savepoints" / Path(savepoint).name).is_dir()
    assert second["deployedSpec"]["cluster"]["image"] == job_images[1]
    assert _jobmanager_job_ids(kube, own_app_ns, "app") == {job2}
    # Only the new start's pods remain: its deployment generation and job id.
    pods = json.loads(kube.kubectl("get", "pods", "-n", own_app_ns, "-l", f"{FLINKJOB_LABEL}=app", "-o", "json").stdout)
    live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    assert {p["metadata"]["labels"][GENERATION_LABEL] for p in live} == {second["deployedSpecFingerprint"]}
    assert {p["metadata"]["labels"][JOB_ID_LABEL] for p in live} == {job2}
    rest2 = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, job2), 60, "the new JobManager's pod IP"))
    assert rest2.restored_from(job2) == savepoint
    assert rest2.wait_state_counter_at_least(job2, count_before + 1, timeout=120) > count_before
    assert rest2.restored_keys(job2) > 0

    # (b2) A parallelism change in place (the adaptive scheduler): the same job, a second TaskManager first.
    jobs.patch_spec("app", {"parallelism": 3})
    rescaled = ready("Ready after the in-place rescale")["status"]
    assert rescaled["jobId"] == job2 and rescaled["parallelism"] == 3
    assert rest2.job_parallelism(job2) == 3 and rest2.get("/overview")["taskmanagers"] == 2
    assert rescaled["lastSavepoint"]["path"] == savepoint, "no savepoint: the job was not stopped"
    # Flink keeps a job's start-time across an in-place rescale: it is not taken for a restarted JobManager.
    assert rescaled["jobStartTime"] == second["jobStartTime"]
    assert "JobManagerRestarted" not in {e["reason"] for e in jobs.events("app")}

    # (c) Suspend: a savepoint, recorded, then the cluster goes.
    jobs.patch_spec("app", {"state": "suspended"})
    suspended = jobs.wait(
        "app",
        lambda r: (r.get("status") or {}).get("phase") == "Suspended"
        and (r.get("status") or {}).get("clusterReadiness") == "no cluster"
        and not _deployments(kube, own_app_ns, "app"),
        "Suspended with its cluster removed",
        timeout=180,
        interval=1,
    )["status"]
    assert suspended["lastSavepoint"]["reason"] == "suspend"
    assert suspended["clusterReadiness"] == "no cluster"

    # (d) Resume: a new cluster from the suspend savepoint.
    jobs.patch_spec("app", {"state": "running"})
    resumed = ready("Ready after the resume")["status"]
    job3 = resumed["jobId"]
    assert job3 not in (job1, job2)
    rest3 = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, job3), 60, "the resumed JobManager's pod IP"))
    assert rest3.restored_from(job3) == suspended["lastSavepoint"]["path"]
    assert resumed["startedFrom"] == suspended["lastSavepoint"]["path"]

    # (d2) Its JobManager pod is deleted. Without high availability the new pod runs the same job id again
    # from the savepoint in its start arguments: the status and a Warning Event say so.
    jm_selector = f"{FLINKJOB_LABEL}=app,flinkop.io/component=jobmanager"
    kube.kubectl("delete", "pods", "-n", own_app_ns, "-l", jm_selector, "--wait=false")
    restarted = jobs.wait(
        "app",
        lambda r: (r.get("status") or {}).get("jobStartTime", "") > resumed["jobStartTime"]
        and (r.get("status") or {}).get("phase") == "Running",
        "the job started again by a new JobManager, and seen",
        timeout=240,
        interval=1,
    )["status"]
    assert restarted["jobId"] == job3 and restarted["startedFrom"] == resumed["startedFrom"]
    warned = [e for e in jobs.events("app") if e["reason"] == "JobManagerRestarted"]
    assert len(warned) == 1 and warned[0]["type"] == "Warning"
    assert job3 in warned[0]["message"] and resumed["startedFrom"] in warned[0]["message"]
    rest3 = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, job3), 60, "the new JobManager's pod IP"))
    assert rest3.restored_from(job3) == resumed["startedFrom"]
    assert _jobmanager_job_ids(kube, own_app_ns, "app") == {job3}

    # (e) A manual savepoint through the JobManager, with a history of one: retention disposes of the
    # upgrade's savepoint through the JobManager, never the one the running cluster was started from.
    jobs.patch_spec("app", {"savepointNonce": 1, "savepointHistoryLimit": 1})

    def kept(r: dict[str, Any]) -> bool:
        s = r.get("status") or {}
        history = [p["reason"] for p in s.get("savepointHistory") or []]
        return s.get("savepointNonce") == 1 and history == ["manual", "suspend"] and not s.get("disposal")

    trimmed = jobs.wait("app", kept, "a manual savepoint and the history trimmed", timeout=120, interval=1)["status"]
    assert trimmed["jobId"] == job3 and trimmed["lastSavepoint"]["reason"] == "manual"
    on_disk = {p.name for p in (data_dir / "savepoints").iterdir()}
    assert Path(savepoint).name not in on_disk, "the upgrade's savepoint was disposed of"
    assert {Path(p["path"]).name for p in trimmed["savepointHistory"]} <= on_disk

    # (e2) Periodic savepoints through the JobManager, every 10 s, counted from the last one's trigger.
    jobs.patch_spec("app", {"savepointIntervalSeconds": 10})
    periodic = jobs.wait(
        "app",
        lambda r: ((r.get("status") or {}).get("lastSavepoint") or {}).get("reason") == "periodic",
        "a periodic savepoint",
        timeout=60,
        interval=1,
    )["status"]
    assert periodic["jobId"] == job3 and Path(periodic["lastSavepoint"]["path"]).name in {
        p.name for p in (data_dir / "savepoints").iterdir()
    }
    assert resumed["startedFrom"] in [p["path"] for p in periodic["savepointHistory"]], "still kept"
    jobs.patch_spec("app", {"savepointIntervalSeconds": None})

    # (f) Delete: a final savepoint, then the cluster goes with the FlinkJob.
    jobs.delete("app")
    jobs.wait_gone("app", timeout=180)
    finals = sorted((data_dir / "savepoints").iterdir(), key=lambda p: p.stat().st_mtime)
    assert finals[-1].name.startswith(f"savepoint-{job3[:6]}")
    _wait(lambda: not owned_objects(kube, own_app_ns, "app"), 180, "the garbage collector to remove the cluster")


def _rest_url(kube: KubeCluster, namespace: str, job_id: str) -> str | None:
    pods = json.loads(
        kube.kubectl("get", "pods", "-n", namespace, "-l", f"{JOB_ID_LABEL}={job_id},flinkop.io/component=jobmanager",
                     "-o", "json").stdout
    )["items"]  # fmt: skip
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if ip and pod["status"].get("phase") == "Running":
            return f"http://{ip}:8081"
    return None


def test_a_new_version_whose_cluster_cannot_start_is_rolled_back_to_the_last_stable_one_from_the_same_savepoint(
    kube: KubeCluster,
    node: Node,
    own_app_ns: str,
    app_operator: Any,
    data_dir: Path,
    job_images: tuple[str, str],
) -> None:
    """The new image is missing: status says so (clusterReadiness, message), and past
    stabilityTimeoutSeconds the last stable spec runs again from the upgrade's savepoint; then a fixed
    spec upgrades as usual."""
    from testbed.flinkjobs import FlinkJobs, condition, is_ready_at_current_generation

    jobs = FlinkJobs(kube.api_client(), own_app_ns)
    jobs.create("app", app_spec(job_images[0], data_dir, stabilityTimeoutSeconds=120))
    try:
        job1 = jobs.wait("app", is_ready_at_current_generation, "Ready", timeout=300, interval=1)["status"]["jobId"]
        rest1 = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, job1), 60, "the JobManager's pod IP"))
        count_before = rest1.wait_state_counter_at_least(job1, 100, timeout=120)

        missing = "localhost/flinkop-testjob:missing"
        jobs.patch_spec("app", {"cluster": {**app_spec(missing, data_dir)["cluster"]}})
        waiting = jobs.wait(
            "app",
            lambda r: "ImageMissing" in str((r.get("status") or {}).get("clusterReadiness")),
            "the missing image named in status.clusterReadiness",
            timeout=120,
            interval=1,
        )["status"]
        assert waiting["phase"] == "Upgrading" and missing in waiting["clusterReadiness"]
        assert "is not running yet" in waiting["message"]

        rolled = jobs.wait(
            "app",
            lambda r: (r.get("status") or {}).get("phase") == "Running"
            and ((r.get("status") or {}).get("failure") or {}).get("reason") == "UnstableStart",
            "the rollback to the last stable spec running",
            timeout=300,
            interval=1,
        )
        status = rolled["status"]
        assert status["deployedSpec"]["cluster"]["image"] == job_images[0]
        assert condition(rolled, "Ready").get("status") == "False"
        assert missing in status["failure"]["message"]
        job2 = status["jobId"]
        assert _jobmanager_job_ids(kube, own_app_ns, "app") == {job2}
        rest2 = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, job2), 60, "the rolled-back JobManager's pod IP"))
        assert rest2.restored_from(job2) == status["lastSavepoint"]["path"]
        assert rest2.wait_state_counter_at_least(job2, count_before + 1, timeout=120) > count_before

        # A fixed spec (an image that exists) lifts the stall and upgrades from a new savepoint.
        jobs.patch_spec("app", {"cluster": {**app_spec(job_images[1], data_dir)["cluster"]}})
        fixed = jobs.wait("app", is_ready_at_current_generation, "Ready after the fix", timeout=300, interval=1)
        assert fixed["status"]["deployedSpec"]["cluster"]["image"] == job_images[1]
        assert not fixed["status"].get("failure")
    except AssertionError:
        print(pod_logs(kube, own_app_ns))
        raise


def test_the_operator_killed_mid_upgrade_in_application_mode_finishes_it_after_restart_with_one_job_and_the_state(
    kube: KubeCluster,
    node: Node,
    own_app_ns: str,
    data_dir: Path,
    job_images: tuple[str, str],
    bed_dir: Path,
) -> None:
    """SIGKILL while the upgrade's savepoint runs, and again right after the new start is recorded (the
    cluster applied or not yet): each time a new operator finishes the upgrade from the status. The second
    change is of the parallelism alone: in application mode an upgrade too, with the TaskManagers following."""
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
    from testbed.operator_process import start_operator

    workdir = bed_dir / f"crash-operator-{own_app_ns}"

    def operator() -> Any:
        return start_operator(
            workdir,
            kube.admin_kubeconfig,
            name="crash-operator",
            extra_env={"FLINKOP_APP_REST_ADDRESS": "pod-ip"},
            args=("--namespace", own_app_ns),
        )

    slow = data_dir / "slow-snapshots"
    args = [*RATE_ARGS, "--slow-snapshot-file", f"{DATA_MOUNT}/slow-snapshots", "--slow-snapshot-ms", "3000"]
    jobs = FlinkJobs(kube.api_client(), own_app_ns)
    proc = operator()
    try:
        jobs.create("crash", app_spec(job_images[0], data_dir, cpu="500m", args=args))
        job = jobs.wait("crash", is_ready_at_current_generation, "Ready", timeout=300, interval=1)["status"]["jobId"]
        # An image change, killed while its savepoint runs; then a parallelism change (3 at 2 slots each: two
        # TaskManagers), killed right after its start is recorded.
        changes = (
            ({"cluster": {**app_spec(job_images[1], data_dir, cpu="500m")["cluster"]}}, "savepointing"),
            ({"parallelism": 3}, "submitting"),
        )
        for n, (change, kill_when) in enumerate(changes):
            rest = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, job), 60, "the JobManager's pod IP"))  # noqa: B023
            before = rest.wait_state_counter_at_least(job, 100, timeout=120)
            if kill_when == "savepointing":
                slow.touch()  # the savepoint takes seconds: the operator dies while Flink works on it
            jobs.patch_spec("crash", change)

            def reached(r: dict[str, Any], when: str = kill_when) -> bool:
                up = (r.get("status") or {}).get("upgrade") or {}
                if when == "savepointing":
                    return up.get("step") == "Savepointing" and bool(up.get("triggerId"))
                return bool(up.get("newJobId")) and up.get("step") in ("Submitting", "Starting")

            recorded = jobs.wait("crash", reached, f"the upgrade at {kill_when}", timeout=120, interval=0.1)
            proc.kill()
            slow.unlink(missing_ok=True)
            upgrade = recorded["status"]["upgrade"]
            proc = operator()
            done = jobs.wait("crash", is_ready_at_current_generation, f"Ready after kill {n}", timeout=300, interval=1)
            status = done["status"]
            new_job = status["jobId"]
            assert new_job != job and status["deployedSpec"]["cluster"]["image"] == job_images[1]
            if upgrade.get("newJobId"):
                assert new_job == upgrade["newJobId"], "the job id recorded before the start must be used"
            assert _jobmanager_job_ids(kube, own_app_ns, "crash") == {new_job}, "exactly one JobManager runs"
            rest = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, new_job), 60, "the new JobManager's pod IP"))  # noqa: B023
            assert [j["jid"] for j in rest.jobs_overview()] == [new_job]
            assert rest.restored_from(new_job) == status["lastSavepoint"]["path"]
            upgrades = [s for s in status["savepointHistory"] if s["reason"] == "upgrade"]
            assert len(upgrades) == n + 1, status["savepointHistory"]
            assert rest.wait_state_counter_at_least(new_job, before + 1, timeout=120) > before
            parallelism = int(change.get("parallelism", 2))
            assert rest.job_parallelism(new_job) == parallelism == status["parallelism"]
            assert rest.get("/overview")["taskmanagers"] == -(-parallelism // 2)  # TaskManagers follow it
            job = new_job
    except AssertionError:
        print(pod_logs(kube, own_app_ns))
        raise
    finally:
        slow.unlink(missing_ok=True)
        proc.stop()


def test_a_job_moves_from_a_session_cluster_to_its_own_cluster_and_back_through_suspend_keeping_its_state(
    kube: KubeCluster,
    node: Node,
    own_app_ns: str,
    app_operator: Any,
    flink: Any,
    test_job_jar: Path,
    data_dir: Path,
    job_images: tuple[str, str],
) -> None:
    """Suspend on the session cluster, then the mode changed with `state: running`: the job starts on its own
    cluster from the suspend savepoint; and back. The savepoints are in one directory that the bed's session
    cluster (on this host) and the pods (a hostPath at the same path) both reach."""
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation

    savepoints = data_dir / "savepoints"
    savepoints.mkdir()
    savepoints.chmod(0o777)  # the pods' Flink user (9999) writes its savepoints beside the host's
    shared = {"savepointDirectory": savepoints.as_uri()}
    cluster = app_spec(job_images[0], data_dir)["cluster"]
    container = cluster["podTemplate"]["spec"]["containers"][0]
    container["volumeMounts"].append({"name": "data", "mountPath": str(data_dir)})  # the host's paths, as they are
    session = {"flinkRestUrl": flink.rest_url, "jar": {"uri": test_job_jar.as_uri()}, "parallelism": 2,
               "args": list(RATE_ARGS), **shared}  # fmt: skip
    jobs = FlinkJobs(kube.api_client(), own_app_ns)
    jobs.create("mover", session)

    def ready(what: str) -> dict[str, Any]:
        return jobs.wait("mover", is_ready_at_current_generation, what, timeout=300, interval=1)["status"]

    def suspend() -> dict[str, Any]:
        jobs.patch_spec("mover", {"state": "suspended"})
        return jobs.wait(
            "mover", lambda r: (r.get("status") or {}).get("phase") == "Suspended", "Suspended", timeout=180
        )["status"]

    try:
        on_session = ready("Ready on the session cluster")["jobId"]
        session_rest = FlinkRest(flink.rest_url)
        count = session_rest.wait_state_counter_at_least(on_session, 100, timeout=120)
        parked = suspend()
        assert parked["lastSavepoint"]["path"].startswith(savepoints.as_uri().replace("file://", "file:"))

        # To its own cluster: the mode and `state: running` in one change.
        to_app = {"flinkRestUrl": None, "cluster": cluster, "jar": {"uri": f"local:///opt/flink/job/{test_job_jar.name}"}}
        jobs.patch_spec("mover", {**to_app, "state": "running"})
        on_app = ready("Ready on its own cluster")
        app_job = on_app["jobId"]
        app_rest = FlinkRest(_wait(lambda: _rest_url(kube, own_app_ns, app_job), 60, "the JobManager's pod IP"))
        assert app_rest.restored_from(app_job) == parked["lastSavepoint"]["path"]
        count = app_rest.wait_state_counter_at_least(app_job, count + 1, timeout=120)
        assert session_rest.running_jobs() == [] or app_job not in session_rest.running_jobs()

        # And back to the session cluster.
        parked = suspend()
        _wait(lambda: not _deployments(kube, own_app_ns, "mover"), 120, "its cluster removed")
        jobs.patch_spec("mover", {**session, "cluster": None, "state": "running"})
        back = ready("Ready on the session cluster again")["jobId"]
        assert session_rest.restored_from(back) == parked["lastSavepoint"]["path"]
        assert session_rest.wait_state_counter_at_least(back, count + 1, timeout=120) > count
        jobs.delete("mover")
        jobs.wait_gone("mover", timeout=120)
    except AssertionError:
        print(pod_logs(kube, own_app_ns))
        raise
