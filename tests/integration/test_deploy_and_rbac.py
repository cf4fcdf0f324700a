"""The operator's install manifests on the real apiserver: `kubectl apply -k deploy/` is accepted (and
so is deploy/ with the webhook component), and the operator, run as deploy/operator.yaml runs it (with
peering, and the namespace-to-cluster ConfigMap in its own namespace) under exactly the RBAC rules from
deploy/, does a full savepoint upgrade and is refused anything beyond them, Secrets other than by name
and ConfigMaps outside its namespace included."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation, is_stalled
from testbed.operator_process import install_peering_crds, start_operator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "flinkop-system"  # deploy/kustomization.yaml's namespace
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
    # The namespaced Role (ConfigMaps in the operator's own namespace), bound the same way there.
    kube.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    local = next(d for d in documents if d["kind"] == "Role")
    local["metadata"]["namespace"] = OPERATOR_NAMESPACE
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(local))
    local_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "flinkop-test-operator-user", "namespace": OPERATOR_NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": local["metadata"]["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flinkop-operator"}],
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(local_binding))
    try:
        yield role["metadata"]["name"]
    finally:
        kube.kubectl("delete", "clusterrolebinding", "flinkop-test-operator-user", check=False)
        kube.kubectl("delete", "rolebinding", "flinkop-test-operator-user", "-n", OPERATOR_NAMESPACE, check=False)


def operator_args_as_deployed() -> tuple[str, ...]:
    """deploy/operator.yaml's args, without the health and metrics endpoints (ports of their own in a pod)."""
    deployment = yaml.safe_load((REPO / "deploy" / "operator.yaml").read_text())
    args = list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    for endpoint in ("--liveness", "--metrics"):
        i = args.index(endpoint)
        del args[i : i + 2]
    return tuple(args)


def cluster_access_env_as_deployed() -> dict[str, str]:
    """deploy/operator.yaml's FLINKOP_CLUSTER_ACCESS_CONFIGMAP, and the POD_NAMESPACE its pod would get."""
    deployment = yaml.safe_load((REPO / "deploy" / "operator.yaml").read_text())
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAMESPACE"] is None, "POD_NAMESPACE comes from the pod (fieldRef)"
    return {
        "FLINKOP_CLUSTER_ACCESS_CONFIGMAP": env["FLINKOP_CLUSTER_ACCESS_CONFIGMAP"],
        "POD_NAMESPACE": OPERATOR_NAMESPACE,
    }


def test_deploy_kustomization_is_accepted_by_the_apiserver(kube: Any, crd: Path) -> None:
    kube.kubectl("create", "namespace", "flinkop-system", check=False)
    result = kube.kubectl("apply", "-k", str(REPO / "deploy"), "--dry-run=server")
    for kind in ("customresourcedefinition", "serviceaccount", "clusterrole", "clusterrolebinding", "deployment"):
        assert kind in result.stdout, result.stdout
    for crd_name in ("flinkjobs.flinkop.io", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd_name}" in result.stdout, result.stdout


def test_deploy_with_the_webhook_component_is_accepted_by_the_apiserver_but_for_cert_manager_objects(
    kube: Any, crd: Path, tmp_path: Path
) -> None:
    # deploy/ with `components: [webhook]`, as its kustomization.yaml says to enable it.
    deploy = os.path.relpath(REPO / "deploy", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [deploy], "components": [f"{deploy}/webhook"]})
    )
    built = list(yaml.safe_load_all(kube.kubectl("kustomize", str(tmp_path)).stdout))
    cert_manager = sorted(d["kind"] for d in built if d["apiVersion"].startswith("cert-manager.io/"))
    assert cert_manager == ["Certificate", "Issuer"], "cert-manager's CRDs are not on the bed; nothing else is left out"
    rest = [d for d in built if not d["apiVersion"].startswith("cert-manager.io/")]
    kube.kubectl("create", "namespace", "flinkop-system", check=False)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(rest))
    assert "validatingwebhookconfiguration.admissionregistration.k8s.io/flinkop" in result.stdout, result.stdout
    assert "service/flinkop-webhook" in result.stdout, result.stdout
    webhook = next(d for d in rest if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"][0]
    assert webhook["clientConfig"]["service"] == {
        "name": "flinkop-webhook",
        "namespace": "flinkop-system",
        "path": "/validate-flinkjob",
        "port": 443,
    }
    args = next(d for d in rest if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--webhook-listen=0.0.0.0:9443" in args and "--peering" in args, args


def test_operator_with_only_the_deploy_rbac_upgrades_a_job_and_is_refused_anything_else(
    kube: Any,
    flink: Any,
    flink_rest: Any,
    own_namespace: str,
    test_job_jar: Path,
    bed_dir: Path,
    operator_user_bound_to_deploy_rbac: str,
) -> None:
    # Cluster-wide and with peering, as deploy/operator.yaml runs it (the session operator leaves own-*
    # alone, and no other FlinkJob exists while this test runs).
    install_peering_crds(kube)
    workdir = bed_dir / f"{own_namespace}-rbac"
    args = operator_args_as_deployed()
    peering = args[args.index("--peering") + 1]
    env = cluster_access_env_as_deployed()
    configmap = env["FLINKOP_CLUSTER_ACCESS_CONFIGMAP"]
    rules = [{"name": "bed", "namespaces": [own_namespace], "flinkRestUrls": [flink.rest_url]}]
    access = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap, "namespace": OPERATOR_NAMESPACE},
        "data": {"rules.yaml": json.dumps(rules)},
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(access))
    operator = start_operator(workdir, kube.operator_kubeconfig, args=args, extra_env=env)
    try:
        peers = wait_for_peers(kube, peering, operator)
        assert len(peers) == 1, f"the operator keeps itself alive in ClusterKopfPeering {peering}: {peers}"
        jobs = FlinkJobs(kube.api_client(), own_namespace)
        # The mapping is read (and watched) with the Role's rights: a cluster it does not name is refused.
        jobs.create(
            "elsewhere", {"flinkRestUrl": "http://127.0.0.1:1", "jar": {"uri": test_job_jar.as_uri()}, "parallelism": 1}
        )
        jobs.wait("elsewhere", lambda r: is_stalled(r, "ClusterNotAllowed"), "Stalled ClusterNotAllowed", timeout=60)
        jobs.delete("elsewhere")
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
        # A word of its own: the hex ids of jobs and triggers in the log may contain "403".
        assert not re.search(r"\b403\b|Forbidden", log), log[-3000:]
    finally:
        operator.stop()
        flink_rest.cancel_running_jobs()
        kube.kubectl("delete", "clusterkopfpeering", peering, check=False)
        kube.kubectl("delete", "configmap", configmap, "-n", OPERATOR_NAMESPACE, check=False)
    # Secrets: a FlinkJob's Secret can be read by name, but none can be listed or watched.
    can_get = kube.kubectl(
        "auth", "can-i", "get", "secrets/flink-auth", "-n", own_namespace, kubeconfig=kube.operator_kubeconfig
    )
    assert can_get.stdout.strip() == "yes", "deploy/rbac.yaml grants get on secrets (restAuthSecretRef)"
    refused = kube.kubectl("get", "secrets", "-n", "default", kubeconfig=kube.operator_kubeconfig, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    for verb in ("get", "list", "watch"):  # the namespace-to-cluster ConfigMap, in its own namespace only
        own = kube.kubectl(
            "auth", "can-i", verb, "configmaps", "-n", OPERATOR_NAMESPACE, kubeconfig=kube.operator_kubeconfig
        )
        assert own.stdout.strip() == "yes", f"{verb} configmaps in {OPERATOR_NAMESPACE}"
    for verb in ("list", "watch"):  # other namespaces' ConfigMaps: only its application clusters', by name
        elsewhere = kube.kubectl(
            "auth", "can-i", verb, "configmaps", "-n", own_namespace, kubeconfig=kube.operator_kubeconfig, check=False
        )
        assert elsewhere.stdout.strip() == "no", f"{verb} configmaps in {own_namespace}"
    out_of_scope = (
        ("list", "secrets"),
        ("watch", "secrets"),
        ("delete", "flinkjobs"),
        ("create", "pods"),
        ("get", "pods"),
        ("watch", "pods"),
        ("patch", "deployments"),
        ("list", "deployments"),
        ("list", "services"),
        ("create", "secrets"),
        ("list", "configmaps"),
        ("create", "validatingwebhookconfigurations"),
        ("patch", "clusterkopfpeerings/another-operator"),
        ("create", "kopfpeerings"),
    )
    for verb, resource in out_of_scope:
        can = kube.kubectl("auth", "can-i", verb, resource, "-A", kubeconfig=kube.operator_kubeconfig, check=False)
        assert can.stdout.strip() == "no", f"{verb} {resource}: {can.stdout}"


def wait_for_peers(kube: Any, peering: str, operator: Any, timeout: float = 60.0) -> dict[str, Any]:
    """The live peers in ClusterKopfPeering `peering`, once the operator has created it and joined."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = kube.kubectl("get", "clusterkopfpeering", peering, "-o", "json", check=False)
        if got.returncode == 0:
            peers = {k: v for k, v in (json.loads(got.stdout).get("status") or {}).items() if v}
            if peers:
                return peers
        assert operator.alive(), operator.tail(40)
        time.sleep(0.2)
    raise AssertionError(f"no peer in ClusterKopfPeering {peering} within {timeout:g} s\n{operator.tail(40)}")
