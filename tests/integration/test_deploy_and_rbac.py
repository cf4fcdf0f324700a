"""The operator's install manifests on the real apiserver: `kubectl apply -k deploy/` is accepted,
and the operator, run under exactly the RBAC rules from deploy/, does a full savepoint upgrade and
is refused anything beyond them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
from testbed.operator_process import start_operator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]


@pytest.fixture
def operator_user_bound_to_deploy_rbac(kube: Any, crd: Path) -> Iterator[str]:
    """The bed's non-admin user `flinkop-operator`, bound to deploy/rbac.yaml's ClusterRole."""
    documents = list(yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()))
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "flinkop-test-operator-user"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flinkop-operator"}],
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(binding))
    try:
        yield role["metadata"]["name"]
    finally:
        kube.kubectl("delete", "clusterrolebinding", "flinkop-test-operator-user", check=False)


def test_deploy_kustomization_is_accepted_by_the_apiserver(kube: Any, crd: Path) -> None:
    kube.kubectl("create", "namespace", "flinkop-system", check=False)
    result = kube.kubectl("apply", "-k", str(REPO / "deploy"), "--dry-run=server")
    for kind in ("customresourcedefinition", "serviceaccount", "clusterrole", "clusterrolebinding", "deployment"):
        assert kind in result.stdout, result.stdout


def test_operator_with_only_the_deploy_rbac_upgrades_a_job_and_is_refused_anything_else(
    kube: Any,
    flink: Any,
    flink_rest: Any,
    own_namespace: str,
    test_job_jar: Path,
    bed_dir: Path,
    operator_user_bound_to_deploy_rbac: str,
) -> None:
    # Cluster-wide, as deploy/operator.yaml runs it (the session operator leaves own-* alone, and no
    # other FlinkJob exists while this test runs).
    workdir = bed_dir / f"{own_namespace}-rbac"
    operator = start_operator(workdir, kube.operator_kubeconfig)
    try:
        jobs = FlinkJobs(kube.api_client(), own_namespace)
        spec = {
            "flinkRestUrl": flink.rest_url,
            "jar": {"uri": test_job_jar.as_uri()},
            "parallelism": 2,
            "args": RATE_ARGS,
        }
        jobs.create("least", spec)
        old_job = jobs.wait("least", is_ready_at_current_generation, "Ready", timeout=120)["status"]["jobId"]
        before = flink_rest.wait_state_counter_at_least(old_job, 100)
        jobs.patch_spec("least", {"parallelism": 3})
        done = jobs.wait("least", is_ready_at_current_generation, "Ready after the upgrade", timeout=120)
        new_job = done["status"]["jobId"]
        assert flink_rest.restored_from(new_job) == done["status"]["lastSavepoint"]["path"]
        assert flink_rest.wait_state_counter_at_least(new_job, before + 1) > before
        assert any(e["reason"] == "SavepointCompleted" for e in jobs.events("least")), "Events are allowed"
        jobs.delete("least")
        jobs.wait_gone("least", timeout=60)
        log = operator.tail(2000)
        assert "403" not in log and "Forbidden" not in log, log[-3000:]
    finally:
        operator.stop()
        flink_rest.cancel_running_jobs()
    refused = kube.kubectl("get", "secrets", "-n", "default", kubeconfig=kube.operator_kubeconfig, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    for verb, resource in (("delete", "flinkjobs"), ("create", "pods"), ("list", "configmaps")):
        can = kube.kubectl("auth", "can-i", verb, resource, "-A", kubeconfig=kube.operator_kubeconfig, check=False)
        assert can.stdout.strip() == "no", f"{verb} {resource}: {can.stdout}"
