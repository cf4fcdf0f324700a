"""The Kubernetes half of the bed does what the operator's tests rely on: CRDs with structural
schemas, status and scale subresources, generation bumps, and RBAC that refuses a user without rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from testbed.kube import KubeCluster

pytestmark = pytest.mark.integration

GROUP = "bedcheck.flinkop.dev"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
NAMESPACE = "bed-kube-check"

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["parallelism"],
                                "properties": {
                                    "parallelism": {"type": "integer", "minimum": 1},
                                    "image": {"type": "string"},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "parallelism": {"type": "integer"},
                                    "phase": {"type": "string"},
                                },
                            },
                        },
                    }
                },
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.parallelism",
                        "statusReplicasPath": ".status.parallelism",
                    },
                },
                "additionalPrinterColumns": [
                    {"name": "Parallelism", "type": "integer", "jsonPath": ".spec.parallelism"},
                ],
            }
        ],
    },
}


def widget(name: str, parallelism: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"parallelism": parallelism, "image": "example/job:1"},
    }


@pytest.fixture(scope="module")
def crd(kube: KubeCluster) -> Iterator[None]:
    kube.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{CRD_NAME}")
    kube.kubectl("create", "namespace", NAMESPACE)
    try:
        yield
    finally:
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        kube.kubectl("delete", "crd", CRD_NAME, "--wait=false", check=False)


@pytest.fixture(scope="module")
def custom(kube: KubeCluster, crd: None) -> Iterator[client.CustomObjectsApi]:
    api_client = kube.api_client()
    try:
        yield client.CustomObjectsApi(api_client)
    finally:
        api_client.close()


def get_widget(api: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    result: dict[str, Any] = api.get_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, name)
    return result


def test_kubeconfigs_verify_the_apiserver_serving_certificate(kube: KubeCluster) -> None:
    assert kube.ca_file is not None, "the kubeconfigs fell back to insecure-skip-tls-verify"
    for path in (kube.admin_kubeconfig, kube.operator_kubeconfig):
        cluster = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]
        assert cluster["server"] == kube.server
        assert cluster["certificate-authority-data"]
        assert "insecure-skip-tls-verify" not in cluster


def test_crd_with_structural_schema_becomes_established(kube: KubeCluster, crd: None) -> None:
    conditions = json.loads(kube.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)["status"]["conditions"]
    by_type = {c["type"]: c["status"] for c in conditions}
    assert by_type.get("Established") == "True"
    assert by_type.get("NonStructuralSchema", "False") == "False"


def test_custom_resource_is_stored_and_listed_with_printer_columns(kube: KubeCluster, crd: None) -> None:
    kube.kubectl("apply", "-f", "-", input=json.dumps(widget("listed", 3)))
    out = kube.kubectl("get", "widgets", "-n", NAMESPACE, "listed").stdout
    header, row = out.strip().splitlines()
    assert header.split() == ["NAME", "PARALLELISM"]
    assert row.split() == ["listed", "3"]


def test_schema_rejects_parallelism_below_minimum_naming_the_field(kube: KubeCluster, crd: None) -> None:
    result = kube.kubectl("apply", "-f", "-", input=json.dumps(widget("invalid", 0)), check=False)
    assert result.returncode != 0
    assert "spec.parallelism" in result.stderr
    assert "should be greater than or equal to 1" in result.stderr
    missing = kube.kubectl("get", "widget", "invalid", "-n", NAMESPACE, check=False)
    assert "NotFound" in missing.stderr


def test_schema_rejection_is_a_422_through_the_python_client(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, widget("bad", -2))
    assert caught.value.status == 422
    assert "spec.parallelism" in caught.value.body


def test_kubectl_scale_sets_spec_through_the_scale_subresource(
    kube: KubeCluster, custom: client.CustomObjectsApi
) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, widget("scaled", 2))
    custom.patch_namespaced_custom_object_status(
        GROUP, "v1alpha1", NAMESPACE, PLURAL, "scaled", {"status": {"parallelism": 2}}
    )
    kube.kubectl("scale", "widget/scaled", "-n", NAMESPACE, "--replicas=5")
    assert get_widget(custom, "scaled")["spec"]["parallelism"] == 5
    scale = custom.get_namespaced_custom_object_scale(GROUP, "v1alpha1", NAMESPACE, PLURAL, "scaled")
    assert scale["spec"]["replicas"] == 5
    assert scale["status"]["replicas"] == 2


def test_scale_subresource_enforces_the_schema_minimum(kube: KubeCluster, crd: None) -> None:
    kube.kubectl("apply", "-f", "-", input=json.dumps(widget("scaled-to-zero", 1)))
    result = kube.kubectl("scale", "widget/scaled-to-zero", "-n", NAMESPACE, "--replicas=0", check=False)
    assert result.returncode != 0
    assert "spec.parallelism" in result.stderr


def test_generation_bumps_on_spec_change_but_not_on_status_change(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, widget("gen", 1))
    assert created["metadata"]["generation"] == 1

    custom.patch_namespaced_custom_object_status(
        GROUP, "v1alpha1", NAMESPACE, PLURAL, "gen", {"status": {"phase": "Running", "parallelism": 1}}
    )
    after_status = get_widget(custom, "gen")
    assert after_status["metadata"]["generation"] == 1
    assert after_status["status"]["phase"] == "Running"

    custom.patch_namespaced_custom_object(
        GROUP, "v1alpha1", NAMESPACE, PLURAL, "gen", {"spec": {"image": "example/job:2"}}
    )
    after_spec = get_widget(custom, "gen")
    assert after_spec["metadata"]["generation"] == 2
    assert after_spec["status"]["phase"] == "Running"  # the main resource does not touch status


def test_status_written_through_the_main_resource_is_ignored(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, widget("no-status", 1))
    custom.patch_namespaced_custom_object(
        GROUP, "v1alpha1", NAMESPACE, PLURAL, "no-status", {"status": {"phase": "Forged"}}
    )
    assert get_widget(custom, "no-status").get("status", {}).get("phase") != "Forged"


def test_stale_resource_version_is_a_409_conflict(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, widget("cas", 1))
    custom.patch_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, "cas", {"spec": {"parallelism": 2}})
    stale = dict(created, spec={"parallelism": 7})
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(GROUP, "v1alpha1", NAMESPACE, PLURAL, "cas", stale)
    assert caught.value.status == 409


def test_operator_user_without_rbac_rules_is_refused_secrets(kube: KubeCluster) -> None:
    result = kube.kubectl("get", "secrets", "-A", kubeconfig=kube.operator_kubeconfig, check=False)
    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert 'User "flinkop-operator" cannot list resource "secrets"' in result.stderr

    api_client = kube.api_client(kube.operator_kubeconfig)
    try:
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(api_client).list_secret_for_all_namespaces()
        assert caught.value.status == 403
    finally:
        api_client.close()


def test_admin_user_may_list_secrets(kube: KubeCluster) -> None:
    assert kube.kubectl("auth", "can-i", "list", "secrets", "-A").stdout.strip() == "yes"
    kube.kubectl("get", "secrets", "-A")


def test_operator_user_gains_exactly_the_access_a_role_grants(kube: KubeCluster, crd: None) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "widget-reader", "namespace": NAMESPACE},
        "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "widget-reader", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flinkop-operator"}],
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}))

    def can(*args: str) -> str:
        return kube.kubectl("auth", "can-i", *args, kubeconfig=kube.operator_kubeconfig, check=False).stdout.strip()

    deadline = time.monotonic() + 10  # the RBAC authorizer reads from an informer cache
    while can("list", PLURAL + "." + GROUP, "-n", NAMESPACE) != "yes" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert can("list", PLURAL + "." + GROUP, "-n", NAMESPACE) == "yes"
    assert can("patch", PLURAL + "." + GROUP, "-n", NAMESPACE) == "no"
    assert can("list", PLURAL + "." + GROUP, "-n", "default") == "no"
    assert can("list", "secrets", "-n", NAMESPACE) == "no"
