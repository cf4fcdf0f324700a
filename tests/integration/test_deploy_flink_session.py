"""deploy/flink-session/ (a Flink session cluster for people who have none), its example-jars
server, the kind overlay of `make e2e-kind` and the FlinkJob samples that use them: accepted by the
real apiserver (`--dry-run=server`), and consistent with one another (the samples' URLs name the
session's Services, savepoints land on the volume every Flink pod mounts, Flink's memory fits the
containers). The bed has no kubelet, so the pods themselves run only in `make e2e-kind`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from testbed.flink import FLINK_VERSION

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SESSION = REPO / "deploy" / "flink-session"
EXAMPLE_JARS = SESSION / "example-jars"
KIND_OVERLAY = REPO / "tests" / "e2e" / "kind"
SAMPLES = REPO / "deploy" / "samples"
# Dry-run by test_rescaling_and_gitops.py::test_samples_are_accepted_by_the_apiserver (and the KEDA
# one checked there by its shape: KEDA's CRD is not on the bed). Every other sample is dry-run here.
SAMPLES_CHECKED_ELSEWHERE = {"counter-job.yaml", "policies.yaml", "hpa.yaml", "keda-scaledobject.yaml"}


def rendered(kube: Any, kustomization: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(kube.kubectl("kustomize", str(kustomization)).stdout) if d]


def one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def flink_deployments(kube: Any) -> dict[str, dict[str, Any]]:
    documents = rendered(kube, SESSION)
    return {name: one(documents, "Deployment", name) for name in ("flink-jobmanager", "flink-taskmanager")}


def flink_config() -> dict[str, Any]:
    config = yaml.safe_load((SESSION / "config.yaml").read_text())
    assert isinstance(config, dict)
    return config


def flink_jobs_in_samples() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted(SAMPLES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") == "FlinkJob"
    ]


def test_flink_session_kustomization_is_accepted_by_the_apiserver(kube: Any) -> None:
    # Server dry-run cannot create namespace flink and put objects in it in the same call.
    kube.kubectl("create", "namespace", "flink", check=False)
    result = kube.kubectl("apply", "-k", str(SESSION), "--dry-run=server")
    for created in (
        "namespace/flink",
        "configmap/flink-config-",
        "persistentvolumeclaim/flink-data",
        "service/flink-jobmanager",
        "deployment.apps/flink-jobmanager",
        "deployment.apps/flink-taskmanager",
    ):
        assert created in result.stdout, result.stdout


def test_example_jars_server_and_the_e2e_kind_overlay_are_accepted_by_the_apiserver(kube: Any) -> None:
    kube.kubectl("create", "namespace", "flink", check=False)
    result = kube.kubectl("apply", "-k", str(EXAMPLE_JARS), "--dry-run=server")
    assert "deployment.apps/flink-example-jars" in result.stdout and "service/flink-example-jars" in result.stdout
    result = kube.kubectl("apply", "-k", str(KIND_OVERLAY), "--dry-run=server")
    for created in ("deployment.apps/flink-jobmanager", "deployment.apps/flink-example-jars"):
        assert created in result.stdout, result.stdout
    # kind's local-path storage has no ReadWriteMany; one node, so ReadWriteOnce is enough there.
    volume = one(rendered(kube, KIND_OVERLAY), "PersistentVolumeClaim", "flink-data")
    assert volume["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert one(rendered(kube, SESSION), "PersistentVolumeClaim", "flink-data")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]


def test_samples_not_dry_run_elsewhere_are_accepted_by_the_apiserver(crd: Path, kube: Any, namespace: str) -> None:
    samples = sorted(p for p in SAMPLES.glob("*.yaml") if p.name not in SAMPLES_CHECKED_ELSEWHERE)
    assert "session-state-machine.yaml" in [p.name for p in samples]
    for sample in samples:
        result = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(sample))
        assert "(server dry run)" in result.stdout, f"{sample.name}: {result.stdout}"


def test_every_flinkjob_sample_points_at_the_session_jobmanager_service(kube: Any) -> None:
    services = {
        f"{d['metadata']['name']}.{d['metadata']['namespace']}.svc": {p["port"] for p in d["spec"]["ports"]}
        for d in rendered(kube, SESSION) + rendered(kube, EXAMPLE_JARS)
        if d["kind"] == "Service"
    }
    jobs = flink_jobs_in_samples()
    assert "state-machine" in [job["metadata"]["name"] for _, job in jobs]
    for sample, job in jobs:
        rest = urlsplit(job["spec"]["flinkRestUrl"])
        assert rest.hostname == "flink-jobmanager.flink.svc", (sample, rest)
        assert rest.port in services[rest.hostname], (sample, rest)
        jar = urlsplit(job["spec"]["jar"]["uri"])
        if (jar.hostname or "").endswith(".flink.svc"):  # served in the cluster: by example-jars
            assert jar.hostname in services and jar.port in services[jar.hostname], (sample, jar)
            # what the example-jars init container copies: the image's examples/streaming/*.jar
            assert re.fullmatch(r"/[A-Za-z]+\.jar", jar.path), (sample, jar.path)


def test_savepoints_and_checkpoints_land_on_the_volume_every_flink_pod_mounts(kube: Any) -> None:
    config = flink_config()
    directories = [config["execution.checkpointing.savepoint-dir"], config["execution.checkpointing.dir"]]
    for name, deployment in flink_deployments(kube).items():
        pod = deployment["spec"]["template"]["spec"]
        claims = {
            v["name"] for v in pod["volumes"] if (v.get("persistentVolumeClaim") or {}).get("claimName") == "flink-data"
        }
        (container,) = pod["containers"]
        mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
        assert mounts, f"{name} does not mount the flink-data volume"
        for directory in directories:
            assert any(urlsplit(directory).path.startswith(m.rstrip("/") + "/") for m in mounts), (name, directory)


def test_flink_process_memory_fits_each_container_memory_limit(kube: Any) -> None:
    config = flink_config()
    process_mebibytes = {
        "flink-jobmanager": config["jobmanager.memory.process.size"],
        "flink-taskmanager": config["taskmanager.memory.process.size"],
    }
    units = {"Mi": 1, "Gi": 1024}
    for name, deployment in flink_deployments(kube).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        limit = re.fullmatch(r"(\d+)(Mi|Gi)", container["resources"]["limits"]["memory"])
        process = re.fullmatch(r"(\d+)m", process_mebibytes[name])
        assert limit and process, (name, container["resources"], process_mebibytes[name])
        assert int(process[1]) == int(limit[1]) * units[limit[2]], f"{name}: Flink's process size != memory limit"


def test_session_pods_run_non_root_with_resource_limits_and_probes(kube: Any) -> None:
    deployments = [d for d in rendered(kube, SESSION) + rendered(kube, EXAMPLE_JARS) if d["kind"] == "Deployment"]
    assert len(deployments) == 3
    for deployment in deployments:
        name, pod = deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), (name, container["name"])
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), (name, container["name"])
        for container in pod["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, (name, container["name"])


def test_session_runs_the_flink_version_the_bed_tests_against(kube: Any) -> None:
    images = {
        container["image"]
        for d in rendered(kube, SESSION) + rendered(kube, EXAMPLE_JARS)
        if d["kind"] == "Deployment"
        for container in d["spec"]["template"]["spec"].get("initContainers", [])
        + d["spec"]["template"]["spec"]["containers"]
        if container["image"].startswith("flink:")
    }
    assert images == {f"flink:{FLINK_VERSION}-scala_2.12-java17"}
