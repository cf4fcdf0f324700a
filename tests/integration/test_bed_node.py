"""The bed's real node (testbed.node): pods from the locally built images run on it, a Deployment is
scheduled with service-account tokens, Flink's JobManager and TaskManager pods form a session cluster
that answers at the JobManager pod's IP, and nothing in a pod routes off this machine."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from testbed.images import BUSYBOX_IMAGE
from testbed.kube import NODE_NAME, KubeCluster
from testbed.node import Node, read_host_sysctls
from testbed.node_flink import start_flink_pods

pytestmark = pytest.mark.integration

SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture
def node_ns(kube: KubeCluster, node: Node, namespace: str) -> Iterator[str]:
    """The test's namespace, once its `default` ServiceAccount exists (pods are refused before); its
    pods are deleted at the end so the next test has the node's memory."""
    _wait(lambda: _has_token(kube, namespace), 60, f"the default ServiceAccount's token in {namespace}")
    yield namespace
    kube.kubectl(
        "delete", "deployments,pods", "--all", "-n", namespace, "--grace-period=1", "--wait=false", check=False
    )


def _has_token(kube: KubeCluster, namespace: str) -> bool:
    result = kube.kubectl("get", "serviceaccount", "default", "-n", namespace, "-o", "json", check=False)
    return result.returncode == 0 and bool(json.loads(result.stdout).get("secrets"))


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def _apply(kube: KubeCluster, namespace: str, *objects: dict[str, Any]) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def _busybox_pod(name: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", script]}
            ],
        },
    }


def _pod(kube: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kube.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
    return result


def _wait_ready(kube: KubeCluster, namespace: str, target: str, timeout: int = 120) -> None:
    result = kube.kubectl(
        "wait", "--for=condition=Ready", target, "-n", namespace, f"--timeout={timeout}s",
        check=False, timeout=timeout + 10,
    )  # fmt: skip
    if result.returncode != 0:
        described = kube.kubectl("describe", target, "-n", namespace, check=False).stdout
        raise AssertionError(f"{target} not Ready in {timeout} s: {result.stderr}\n{described[-3000:]}")


def test_pod_from_a_locally_built_image_runs_and_its_logs_are_readable(kube: KubeCluster, node_ns: str) -> None:
    _apply(kube, node_ns, _busybox_pod("hello", "echo hello from the bed node; sleep 3600"))
    _wait_ready(kube, node_ns, "pod/hello")

    pod = _pod(kube, node_ns, "hello")
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["status"]["phase"] == "Running"
    logs = kube.kubectl("logs", "hello", "-n", node_ns).stdout
    assert "hello from the bed node" in logs
    # exec goes through the apiserver to the kubelet's streaming server, like logs.
    assert kube.kubectl("exec", "hello", "-n", node_ns, "--", "cat", "/etc/hostname").stdout.strip() == "hello"


def test_deployment_of_two_replicas_is_scheduled_and_its_pods_get_service_account_tokens(
    kube: KubeCluster, node_ns: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pair"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "pair"}},
            "template": {
                "metadata": {"labels": {"app": "pair"}},
                "spec": _busybox_pod("pair", f"cat {SA_TOKEN_DIR}/namespace; echo; sleep 3600")["spec"],
            },
        },
    }
    _apply(kube, node_ns, deployment)
    result = kube.kubectl(
        "rollout", "status", "deployment/pair", "-n", node_ns, "--timeout=120s", check=False, timeout=130
    )
    assert result.returncode == 0, result.stderr + kube.kubectl("describe", "pods", "-n", node_ns).stdout[-3000:]

    pods = json.loads(kube.kubectl("get", "pods", "-n", node_ns, "-l", "app=pair", "-o", "json").stdout)["items"]
    assert len(pods) == 2
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == NODE_NAME  # placed by the scheduler: the Deployment names no node
        assert pod["status"]["phase"] == "Running"
        assert kube.kubectl("logs", name, "-n", node_ns).stdout.strip() == node_ns
        token = kube.kubectl("exec", name, "-n", node_ns, "--", "cat", f"{SA_TOKEN_DIR}/token").stdout
        # A real token of the namespace's default ServiceAccount: the apiserver authenticates it.
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token.strip()},
        }
        answer = json.loads(kube.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout)
        assert answer["status"]["authenticated"] is True
        assert answer["status"]["user"]["username"] == f"system:serviceaccount:{node_ns}:default"


def test_pods_have_no_route_off_the_machine(kube: KubeCluster, node: Node, node_ns: str) -> None:
    _apply(kube, node_ns, _busybox_pod("routes", "sleep 3600"))
    _wait_ready(kube, node_ns, "pod/routes")

    v4 = kube.kubectl("exec", "routes", "-n", node_ns, "--", "ip", "-4", "route", "show", "table", "all").stdout
    v6 = kube.kubectl("exec", "routes", "-n", node_ns, "--", "ip", "-6", "route", "show", "table", "all").stdout
    resolv = kube.kubectl("exec", "routes", "-n", node_ns, "--", "cat", "/etc/resolv.conf").stdout

    assert "default" not in v4 and "default" not in v6, f"IPv4:\n{v4}\nIPv6:\n{v6}"
    pod_net = ipaddress.ip_network(node.pod_subnet)
    for line in v4.splitlines():
        destination = line.split()[1] if line.split()[0] in ("local", "broadcast") else line.split()[0]
        assert ipaddress.ip_network(destination, strict=False).subnet_of(pod_net) or destination.startswith("127."), (
            line
        )
    for line in v6.splitlines():
        destination = line.split()[1] if line.split()[0] in ("local", "multicast", "anycast") else line.split()[0]
        network = ipaddress.ip_network(destination, strict=False)
        assert network.is_link_local or network.is_loopback or network.is_multicast, line
    # The only nameserver is the bed's cluster DNS on the host's bridge address, which answers names of
    # the cluster domain and refuses every other: nothing is resolved or forwarded off the machine.
    nameservers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
    assert nameservers == [node.host_ip], resolv
    outside = kube.kubectl("exec", "routes", "-n", node_ns, "--", "nslookup", "example.com", check=False)
    assert outside.returncode != 0, outside.stdout


def test_node_leaves_the_host_sysctls_as_they_were(node: Node) -> None:
    # An unpatched kubelet sets vm.overcommit_memory, kernel.panic, ...; the bridge plugin's
    # isGateway would set net.ipv4.ip_forward. By now the node has run pods.
    assert read_host_sysctls() == node.host_sysctls_before


def test_flink_jobmanager_and_taskmanager_pods_form_a_session_cluster_answering_at_the_pod_ip(
    kube: KubeCluster, node: Node, node_ns: str
) -> None:
    # The official image's way: the JobManager's address from an env variable (here its pod IP:
    # there is no cluster DNS), every process bound to all of its pod's interfaces.
    flink = start_flink_pods(kube, node_ns, node.pod_subnet, slots=2)

    overview = requests.get(f"{flink.rest_url}/overview", timeout=5).json()
    assert overview["taskmanagers"] == 1
    assert overview["slots-total"] == 2
    assert overview["flink-version"] == "2.3.0"
    taskmanagers = requests.get(f"{flink.rest_url}/taskmanagers", timeout=5).json()["taskmanagers"]
    # The TaskManager reached the JobManager pod over the bridge, from its own pod IP.
    assert [tm["path"].split("@")[1].split(":")[0] for tm in taskmanagers] == [flink.taskmanager_ip]
    assert ipaddress.ip_address(flink.taskmanager_ip) in ipaddress.ip_network(node.pod_subnet)
