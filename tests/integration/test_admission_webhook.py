"""The validating admission webhook on the real apiserver: the operator serves it over https on
loopback with a certificate from a CA the test makes, and a ValidatingWebhookConfiguration (url +
caBundle, failurePolicy Fail) sends it the FlinkJobs of one labelled namespace only, so other tests
are not affected. Refusals reach `kubectl` with the webhook's message; the operator's own writes are
never refused.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from testbed.certs import issue_server_cert, make_ca
from testbed.flink_proxy import FlinkProxy
from testbed.flinkjobs import FlinkJobs, condition, is_ready_at_current_generation, is_stalled
from testbed.hostile_server import HostileServer
from testbed.operator_process import install_peering_crds, peer_priorities, start_operator
from testbed.procs import ManagedProcess, free_port

pytestmark = pytest.mark.integration

RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]
WEBHOOK = "validate.flinkjobs.flinkop.io"
DENIED = f'admission webhook "{WEBHOOK}" denied the request'
LABEL = "flinkop.io/webhook-test"
ACCESS_CONFIGMAP = "flinkop-cluster-access"


@dataclass
class Webhook:
    url: str
    ca_cert: Path
    namespace: str
    operator: ManagedProcess


@pytest.fixture
def webhook(kube: Any, crd: Path, own_namespace: str, bed_dir: Path) -> Iterator[Webhook]:
    """An operator for `own_namespace` serving the webhook on 127.0.0.1, and the configuration that
    sends it that namespace's FlinkJobs (the namespace is labelled; nothing else carries the label)."""
    workdir = bed_dir / f"{own_namespace}-webhook"
    ca = make_ca(workdir / "certs", "webhook-ca")
    cert, key = issue_server_cert(ca, workdir / "certs", "webhook", ip="127.0.0.1")
    port = free_port()
    serve = ("--webhook-listen", f"127.0.0.1:{port}", "--webhook-cert", str(cert), "--webhook-key", str(key))
    operator = start_operator(
        workdir,
        kube.admin_kubeconfig,
        args=("--namespace", own_namespace, *serve),
        # A FlinkJob with an invalid spec is released on delete only after this (see the last test).
        # The namespace-to-cluster mapping is read from this ConfigMap; absent (every test but one): off.
        extra_env={
            "FLINKOP_DELETE_TIMEOUT": "5",
            "FLINKOP_CLUSTER_ACCESS_CONFIGMAP": f"{own_namespace}/{ACCESS_CONFIGMAP}",
        },
    )
    name = f"flinkop-test-{own_namespace}"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": WEBHOOK,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
                "namespaceSelector": {"matchLabels": {LABEL: own_namespace}},
                "rules": [
                    {
                        "apiGroups": ["flinkop.io"],
                        "apiVersions": ["v1alpha1"],
                        "resources": ["flinkjobs"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate-flinkjob",
                    "caBundle": base64.b64encode(ca.cert.read_bytes()).decode(),
                },
            }
        ],
    }
    kube.kubectl("label", "namespace", own_namespace, f"{LABEL}={own_namespace}")
    kube.kubectl("apply", "-f", "-", input=json.dumps(configuration))
    hook = Webhook(f"https://127.0.0.1:{port}/validate-flinkjob", ca.cert, own_namespace, operator)
    try:
        wait_until_the_webhook_refuses(kube, hook)
        yield hook
    finally:
        kube.kubectl("delete", "validatingwebhookconfiguration", name, check=False)
        operator.stop()


def flinkjob(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flinkop.io/v1alpha1",
        "kind": "FlinkJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "flinkRestUrl": "http://flink.example:8081",
            "jar": {"uri": "https://artifacts.example.com/counter-1.0.jar"},
            "parallelism": 1,
            **spec,
        },
    }


def apply(kube: Any, manifest: dict[str, Any], *extra: str) -> Any:
    return kube.kubectl("apply", "-f", "-", *extra, input=json.dumps(manifest), check=False)


def wait_until_the_webhook_refuses(kube: Any, hook: Webhook, timeout: float = 60.0) -> None:
    """Until the operator serves and the apiserver calls it (both take a moment after start)."""
    probe = flinkjob(hook.namespace, "probe", drain=True, savepointMode="cancel")
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        result = apply(kube, probe, "--dry-run=server")
        if DENIED in result.stderr:
            return
        last = result.stderr or result.stdout
        if not hook.operator.alive():
            break
        time.sleep(0.2)
    raise AssertionError(f"the webhook did not refuse within {timeout:g} s: {last}\n{hook.operator.tail(40)}")


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout:g} s")


def review(hook: Webhook, operation: str, new: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sends an AdmissionReview straight to the webhook, as the apiserver does, and returns its answer."""
    request = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "flinkop.io", "version": "v1alpha1", "kind": "FlinkJob"},
            "resource": {"group": "flinkop.io", "version": "v1alpha1", "resource": "flinkjobs"},
            "name": new["metadata"]["name"],
            "namespace": hook.namespace,
            "operation": operation,
            "userInfo": {"username": "test"},
            "object": new,
            "oldObject": old,
            "dryRun": False,
        },
    }
    answer = requests.post(hook.url, json=request, verify=str(hook.ca_cert), timeout=10)
    answer.raise_for_status()
    response: dict[str, Any] = answer.json()["response"]
    assert response["uid"] == request["request"]["uid"]
    return response


def test_specs_the_schema_cannot_check_are_refused_with_the_reason_and_a_valid_one_is_accepted(
    kube: Any, webhook: Webhook
) -> None:
    ns = webhook.namespace
    drain = apply(kube, flinkjob(ns, "drain", drain=True, savepointMode="cancel"))
    assert drain.returncode != 0 and DENIED in drain.stderr, drain.stderr
    assert "spec.drain: true works only with spec.savepointMode: stop" in drain.stderr

    directory = apply(kube, flinkjob(ns, "directory", savepointDirectory="/data/savepoints"))
    assert directory.returncode != 0 and DENIED in directory.stderr, directory.stderr
    assert "spec.savepointDirectory '/data/savepoints' is not a URI" in directory.stderr
    assert "file:///data/sp" in directory.stderr, "the message shows the form that works"

    good = apply(kube, flinkjob(ns, "good", drain=True, savepointDirectory="s3://bucket/sp", state="suspended"))
    assert good.returncode == 0, good.stderr
    assert kube.kubectl("get", "flinkjob", "good", "-n", ns, check=False).returncode == 0
    for refused in ("drain", "directory"):
        assert kube.kubectl("get", "flinkjob", refused, "-n", ns, check=False).returncode != 0


def test_the_webhook_itself_refuses_a_malformed_sha256_and_a_jar_uri_it_cannot_fetch(webhook: Webhook) -> None:
    # The CRD's schema refuses these first when a request goes through the apiserver; the webhook
    # refuses them as well (for a schema without those patterns), so it is asked directly here.
    ns = webhook.namespace
    sha = review(webhook, "CREATE", flinkjob(ns, "sha", jar={"uri": "file:///jobs/a.jar", "sha256": "abc123"}))
    assert sha["allowed"] is False
    assert sha["status"]["message"] == "spec.jar.sha256 'abc123' is not 64 hexadecimal digits"

    s3 = review(webhook, "CREATE", flinkjob(ns, "s3", jar={"uri": "s3://bucket/a.jar"}))
    assert s3["allowed"] is False
    assert "has scheme 's3'; use file://, http:// or https://" in s3["status"]["message"]

    ok = review(webhook, "CREATE", flinkjob(ns, "ok", jar={"uri": "file:///jobs/a.jar", "sha256": "a" * 64}))
    assert ok["allowed"] is True, ok


def test_flink_rest_url_change_is_refused_while_the_job_runs_saying_how_to_move_it_and_allowed_once_suspended(
    kube: Any, webhook: Webhook, flink: Any, flink_rest: Any, proxy: FlinkProxy, test_job_jar: Path
) -> None:
    ns = webhook.namespace
    jobs = FlinkJobs(kube.api_client(), ns)
    manifest = flinkjob(ns, "mover", flinkRestUrl=proxy.url, jar={"uri": test_job_jar.as_uri()}, args=RATE_ARGS)
    assert apply(kube, manifest).returncode == 0
    running = jobs.wait("mover", is_ready_at_current_generation, "Ready", timeout=120)  # the operator's writes pass
    job_id = running["status"]["jobId"]

    move = ["patch", "flinkjob", "mover", "-n", ns, "--type=merge", "-p"]
    refused = kube.kubectl(*move, json.dumps({"spec": {"flinkRestUrl": flink.rest_url}}), check=False)
    assert refused.returncode != 0 and DENIED in refused.stderr, refused.stderr
    message = refused.stderr
    assert f"spec.flinkRestUrl cannot change from {proxy.url} while job {job_id} runs there" in message
    for step in ("spec.state: suspended", "delete this FlinkJob", "spec.initialSavepointPath"):
        assert step in message, message
    assert jobs.get("mover")["spec"]["flinkRestUrl"] == proxy.url
    assert flink_rest.job_state(job_id) == "RUNNING"

    other_change = kube.kubectl(*move, json.dumps({"spec": {"savepointTimeoutSeconds": 300}}), check=False)
    assert other_change.returncode == 0, other_change.stderr

    jobs.patch_spec("mover", {"state": "suspended"})
    suspended = jobs.wait("mover", lambda r: (r.get("status") or {}).get("phase") == "Suspended", "Suspended")
    assert suspended["status"]["lastSavepoint"]["path"]

    def move_accepted() -> bool:  # refused while a stop is still in flight (status.upgrade), as it should be
        moved = kube.kubectl(*move, json.dumps({"spec": {"flinkRestUrl": flink.rest_url}}), check=False)
        assert moved.returncode == 0 or DENIED in moved.stderr, moved.stderr
        return bool(moved.returncode == 0)

    wait_until(move_accepted, "flinkRestUrl change accepted once the job is suspended")
    assert jobs.get("mover")["spec"]["flinkRestUrl"] == flink.rest_url


def test_a_flinkjob_made_invalid_before_the_webhook_can_still_be_annotated_and_deleted_but_not_changed(
    kube: Any, webhook: Webhook
) -> None:
    ns = webhook.namespace
    kube.kubectl("label", "namespace", ns, f"{LABEL}-")  # as if the webhook were not installed yet
    invalid = flinkjob(ns, "old-invalid", drain=True, savepointMode="cancel")
    created = apply(kube, invalid)
    assert created.returncode == 0, created.stderr
    jobs = FlinkJobs(kube.api_client(), ns)
    stalled = jobs.wait("old-invalid", lambda r: is_stalled(r, "InvalidSpec"), "Stalled with InvalidSpec", timeout=60)
    assert "flinkop.io/finalizer" in stalled["metadata"].get("finalizers", [])
    kube.kubectl("label", "namespace", ns, f"{LABEL}={ns}")
    wait_until_the_webhook_refuses(kube, webhook)

    annotated = kube.kubectl("annotate", "flinkjob", "old-invalid", "-n", ns, "team=streaming", check=False)
    assert annotated.returncode == 0, annotated.stderr
    changed = kube.kubectl(
        "patch", "flinkjob", "old-invalid", "-n", ns, "--type=merge", "-p", '{"spec":{"parallelism":2}}', check=False
    )
    assert changed.returncode != 0 and DENIED in changed.stderr and "spec.drain" in changed.stderr, changed.stderr
    jobs.delete("old-invalid")
    jobs.wait_gone("old-invalid", timeout=60)  # the operator's finalizer removal is not refused


def test_a_standby_replica_paused_by_peering_answers_admission_reviews_too(
    kube: Any, crd: Path, own_namespace: str, bed_dir: Path
) -> None:
    # deploy/webhook/ puts both replicas behind one Service: the one that is not acting must answer.
    install_peering_crds(kube)
    peering = "flinkop-webhook-test"
    workdir = bed_dir / f"{own_namespace}-standby-webhook"
    ca = make_ca(workdir / "certs", "webhook-ca")
    cert, key = issue_server_cert(ca, workdir / "certs", "webhook", ip="127.0.0.1")
    ports = {name: free_port() for name in ("replica-a", "replica-b")}

    def serve(port: int) -> tuple[str, ...]:
        return ("--webhook-listen", f"127.0.0.1:{port}", "--webhook-cert", str(cert), "--webhook-key", str(key))

    replicas = {
        name: start_operator(
            workdir,
            kube.admin_kubeconfig,
            name=name,
            args=("--namespace", own_namespace, "--peering", peering, *serve(port)),
            extra_env={"POD_ID": name},
        )
        for name, port in ports.items()
    }
    try:
        wait_until(lambda: set(peer_priorities(kube, peering, own_namespace)) == set(replicas), "both replicas peered")
        priorities = peer_priorities(kube, peering, own_namespace)
        standby = min(priorities, key=lambda name: priorities[name])
        url = f"https://127.0.0.1:{ports[standby]}/validate-flinkjob"
        hook = Webhook(url, ca.cert, own_namespace, replicas[standby])

        def refused() -> bool:
            try:
                answer = review(hook, "CREATE", flinkjob(own_namespace, "x", drain=True, savepointMode="cancel"))
            except requests.ConnectionError:
                return False  # not listening yet
            assert answer["allowed"] is False and "spec.drain" in answer["status"]["message"], answer
            return True

        wait_until(refused, f"an answer from the standby {standby}")
        assert peer_priorities(kube, peering, own_namespace) == priorities, "both still live: the standby stays paused"
    finally:
        for replica in replicas.values():
            replica.stop()


def access_configmap(namespace: str, *urls: str) -> dict[str, Any]:
    rules = [
        {
            "name": "team-test",
            "namespaces": [namespace],
            "flinkRestUrls": list(urls),
            "savepointPrefixes": ["file:///allowed/"],
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ACCESS_CONFIGMAP, "namespace": namespace},
        "data": {"rules.yaml": json.dumps(rules)},
    }


def test_the_namespace_to_cluster_mapping_is_enforced_on_every_pass_and_by_the_webhook_as_its_configmap_changes(
    kube: Any, webhook: Webhook, flink: Any
) -> None:
    ns = webhook.namespace
    jobs = FlinkJobs(kube.api_client(), ns)
    other = HostileServer().start()  # a loopback endpoint the mapping will not allow; it records what reaches it
    try:
        # No ConfigMap yet: no mapping, as before this feature.
        early = flinkjob(ns, "early", flinkRestUrl=other.url(""), jar={"uri": other.url("/good/none.jar")})
        assert apply(kube, early).returncode == 0
        wait_until(lambda: bool(other.seen), "a request from the operator while no mapping is set")

        assert apply(kube, access_configmap(ns, flink.rest_url)).returncode == 0
        refused = jobs.wait("early", lambda r: is_stalled(r, "ClusterNotAllowed"), "Stalled ClusterNotAllowed")
        message = refused["status"]["message"]
        assert f"spec.flinkRestUrl {other.url('')} is not allowed for namespace {ns}" in message
        assert f"rule team-test allows {flink.rest_url}" in message
        assert f"ConfigMap {ns}/{ACCESS_CONFIGMAP}" in message
        seen = len(other.seen)
        time.sleep(7)  # over two observe intervals (3 s on the bed): passes run, none asks the endpoint
        assert len(other.seen) == seen, other.paths()[seen:]

        disallowed = apply(kube, flinkjob(ns, "elsewhere", flinkRestUrl=other.url("")), "--dry-run=server")
        assert DENIED in disallowed.stderr and "ClusterNotAllowed" in disallowed.stderr, disallowed.stderr
        assert "rule team-test" in disallowed.stderr
        path = apply(
            kube,
            flinkjob(ns, "path", flinkRestUrl=flink.rest_url, savepointDirectory="file:///other-team/sp"),
            "--dry-run=server",
        )
        assert DENIED in path.stderr and "SavepointPathNotAllowed: spec.savepointDirectory" in path.stderr, path.stderr
        metadata = apply(kube, flinkjob(ns, "imds", flinkRestUrl="http://169.254.169.254"), "--dry-run=server")
        assert DENIED in metadata.stderr and "DeniedNetwork: spec.flinkRestUrl" in metadata.stderr, metadata.stderr
        allowed = apply(
            kube,
            flinkjob(ns, "fine", flinkRestUrl=flink.rest_url, savepointDirectory="file:///allowed/team/sp"),
            "--dry-run=server",
        )
        assert allowed.returncode == 0, allowed.stderr

        # The ConfigMap changes: the operator reads it again, and the FlinkJob is no longer refused.
        assert apply(kube, access_configmap(ns, flink.rest_url, other.url(""))).returncode == 0
        wait_until(lambda: len(other.seen) > seen, "a request once the mapping allows the endpoint")
        # The pass that asked the endpoint records its outcome after its reads: wait for that status.
        wait_until(
            lambda: condition(jobs.get("early"), "Stalled").get("reason") != "ClusterNotAllowed",
            "the stall ClusterNotAllowed lifted once the mapping allows the endpoint",
        )
    finally:
        kube.kubectl("delete", "configmap", ACCESS_CONFIGMAP, "-n", ns, check=False)
        other.close()
