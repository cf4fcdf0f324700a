"""FlinkJob resources seen from a test: create, change, read and wait on the real apiserver."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

GROUP, VERSION, PLURAL = "flinkop.io", "v1alpha1", "flinkjobs"


class WaitTimeout(AssertionError):
    pass


class FlinkJobs:
    """The FlinkJobs of one namespace, through a kubernetes ApiClient."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.core: Any = client.CoreV1Api(api_client)

    def create(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FlinkJob",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": dict(spec),
        }
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return result

    def exists(self, name: str) -> bool:
        from kubernetes.client import ApiException

        try:
            self.get(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch_spec(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": dict(changes)}
        )
        return result

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items
        return [{"type": e.type, "reason": e.reason, "message": e.message} for e in items]

    def wait(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 120.0,
        interval: float = 0.5,
    ) -> dict[str, Any]:
        """Waits until `predicate(resource)` holds; the error shows what was last seen."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.get(name)
            if predicate(last):
                return last
            time.sleep(interval)
        status = last.get("status") or {}
        raise WaitTimeout(
            f"{self.namespace}/{name}: no {what} within {timeout:g} s; last status: phase={status.get('phase')} "
            f"jobState={status.get('jobState')} message={status.get('message')!r} "
            f"upgrade={status.get('upgrade')} conditions={status.get('conditions')}"
        )

    def wait_gone(self, name: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.exists(name):
                return
            time.sleep(0.5)
        raise WaitTimeout(f"{self.namespace}/{name} still exists after {timeout:g} s: {self.status(name)}")


def condition(resource: Mapping[str, Any], kind: str) -> dict[str, Any]:
    for c in (resource.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def is_ready_at_current_generation(resource: Mapping[str, Any]) -> bool:
    ready = condition(resource, "Ready")
    status = resource.get("status") or {}
    generation = resource["metadata"]["generation"]
    return (
        ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and status.get("observedGeneration") == generation
    )


def is_stalled(resource: Mapping[str, Any], reason: str | None = None) -> bool:
    stalled = condition(resource, "Stalled")
    return stalled.get("status") == "True" and (reason is None or stalled.get("reason") == reason)


def check_one_upgrade_finished(
    flink_rest: Any, status: Mapping[str, Any], *, old_job: str, recorded: Mapping[str, Any], counter_before: int
) -> str:
    """After an operator died in the middle of an upgrade and another pass finished it: exactly one job
    runs, the one the dead operator recorded if it got that far, restored from the recorded savepoint,
    with one upgrade savepoint in the history and the counts continued. Returns the new job's id."""
    new_job = str(status["jobId"])
    assert new_job != old_job
    if recorded.get("newJobId"):
        assert new_job == recorded["newJobId"], "the job id recorded before the submission must be used"
    assert flink_rest.running_jobs() == [new_job], "exactly one job runs"
    savepoint = status["lastSavepoint"]["path"]
    assert flink_rest.restored_from(new_job) == savepoint
    if recorded.get("savepointPath"):
        assert savepoint == recorded["savepointPath"]
    upgrade_savepoints = [s for s in status["savepointHistory"] if s["reason"] == "upgrade"]
    assert len(upgrade_savepoints) == 1, status["savepointHistory"]
    assert flink_rest.wait_state_counter_at_least(new_job, counter_before + 1) > counter_before
    assert flink_rest.restored_keys(new_job) > 0
    return new_job


def cancel_recorded_jobs(kube: Any, namespace: str) -> None:
    """Cancels, on their session clusters, the jobs the FlinkJobs in `namespace` record (their own
    clusters in application mode go with their objects). Errors are ignored: a job may be gone."""
    listed = kube.kubectl("get", "flinkjobs", "-n", namespace, "-o", "json", check=False)
    if listed.returncode != 0:
        return
    for item in json.loads(listed.stdout).get("items", []):
        spec, status = item.get("spec") or {}, item.get("status") or {}
        url = spec.get("flinkRestUrl")
        if not url or spec.get("cluster"):
            continue
        for job_id in {status.get("jobId"), (status.get("upgrade") or {}).get("newJobId")} - {None}:
            with contextlib.suppress(requests.RequestException):
                requests.patch(f"{url.rstrip('/')}/jobs/{job_id}", params={"mode": "cancel"}, timeout=5)


def release_all(kube: Any, namespace: str) -> None:
    """Drops the finalizers of every FlinkJob in `namespace` (no operator will finish with them), one
    patch each: `kubectl patch` takes no `--all`."""
    listed = kube.kubectl("get", "flinkjobs", "-n", namespace, "-o", "name", check=False)
    patch = '{"metadata":{"finalizers":null}}'
    for name in listed.stdout.split() if listed.returncode == 0 else ():
        kube.kubectl("patch", name, "-n", namespace, "--type=merge", "-p", patch, check=False)
