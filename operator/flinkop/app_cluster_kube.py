"""Applying, reading and deleting an application-mode cluster's objects (flinkop.app_cluster) through the
Kubernetes API: one bounded call after another, never a wait.

  * `apply(objects)` creates each object, or replaces it when it exists (409): idempotent by name, so
    a pass that crashed half-way applies again. An object of that name not owned by the same FlinkJob
    (uid) is never replaced.
  * `delete(names, ...)` deletes a cluster's objects, optionally only those of one deployment
    generation or job id (read first, deleted with the uid as precondition), and returns what it did.
  * `scale_taskmanagers(names, ...)` sets the TaskManagers' replicas alone (an in-place rescale).
  * `readiness(names, ...)` reads the JobManager and TaskManager pods: ready/total/wanted per component
    and why a pod cannot start (image missing, unschedulable, crash-looping with its last words, ...).
  * `rest_url(names, ...)` is where the operator reaches the JobManager's REST API: the Service's cluster
    DNS name (`RestAddress.SERVICE`, the default), or the JobManager pod's IP (`RestAddress.POD_IP`) for
    an operator that cannot resolve cluster DNS names (it runs outside the cluster, or the cluster has
    no DNS): the environment variable FLINKOP_APP_REST_ADDRESS=pod-ip selects it.

Every call has a request timeout and every operation a total deadline; lists are bounded; errors
(`AppClusterError`) say which call on which object failed, with the apiserver's message bounded.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes

from flinkop.app_cluster import (
    COMPONENT_LABEL,
    FLINKJOB_LABEL,
    GENERATION_LABEL,
    JOB_ID_LABEL,
    REST_PORT,
    ClusterNames,
    ClusterObjects,
)

REST_ADDRESS_ENV = "FLINKOP_APP_REST_ADDRESS"
MAX_PODS = 200  # pods read per component: more than MAX_TASKMANAGERS would never be wanted at once
MAX_MESSAGE = 500  # characters of an apiserver or pod message kept
MAX_TERMINATION_MESSAGE = 1000  # characters of a crashed container's last words kept

# Waiting reasons that mean the pod cannot start until something changes.
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
START_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff")


class AppClusterError(RuntimeError):
    """A call to the Kubernetes API about the cluster's objects failed; the message says which.
    `permanent`: trying again cannot help until a person acts (an object of that name is not this
    FlinkJob's); otherwise the call may succeed later (timeouts, conflicts, an object being deleted)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class RestAddress(enum.Enum):
    SERVICE = "service"  # http://<service>.<namespace>.svc:8081 (cluster DNS)
    POD_IP = "pod-ip"  # http://<JobManager pod IP>:8081 (no cluster DNS where the operator runs)


def rest_address_from_env(environ: Mapping[str, str]) -> RestAddress:
    """FLINKOP_APP_REST_ADDRESS (service, the default, or pod-ip); ValueError naming it otherwise."""
    value = environ.get(REST_ADDRESS_ENV, "").strip() or RestAddress.SERVICE.value
    try:
        return RestAddress(value)
    except ValueError:
        raise ValueError(f"{REST_ADDRESS_ENV}={value[:40]!r}: use service or pod-ip") from None


@dataclass(frozen=True)
class PodProblem:
    pod: str
    reason: str  # ImageMissing, Unschedulable, CrashLoopBackOff, ... (Kubernetes' own reason where it has one)
    message: str

    def __str__(self) -> str:
        return f"pod {self.pod}: {self.reason}: {self.message}" if self.message else f"pod {self.pod}: {self.reason}"


@dataclass(frozen=True)
class ComponentReadiness:
    ready: int  # pods Ready
    total: int  # pods there (not being deleted)
    wanted: int | None  # the Deployment's replicas; None when it does not exist
    problems: tuple[PodProblem, ...] = ()

    @property
    def all_ready(self) -> bool:
        return self.wanted is not None and self.ready >= self.wanted and self.total >= self.wanted


@dataclass(frozen=True)
class ClusterReadiness:
    jobmanager: ComponentReadiness
    taskmanager: ComponentReadiness

    @property
    def all_ready(self) -> bool:
        return self.jobmanager.all_ready and self.taskmanager.all_ready

    @property
    def problems(self) -> tuple[PodProblem, ...]:
        return self.jobmanager.problems + self.taskmanager.problems

    def summary(self) -> str:
        """One sentence for status: the counts, and the first reason a pod cannot start."""
        parts = []
        for role, component in (("JobManager", self.jobmanager), ("TaskManagers", self.taskmanager)):
            wanted = "no Deployment" if component.wanted is None else f"{component.ready}/{component.wanted} ready"
            parts.append(f"{role} {wanted}")
        text = ", ".join(parts)
        if self.problems:
            text += f"; {self.problems[0]}"
            if len(self.problems) > 1:
                text += f" (and {len(self.problems) - 1} more)"
        return text


def _bounded(text: Any, limit: int = MAX_MESSAGE) -> str:
    value = " ".join(str(text or "").split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def pod_problem(pod: Mapping[str, Any]) -> PodProblem | None:
    """Why this pod (a JSON dict) cannot start or keeps failing, or None."""
    name = str(pod.get("metadata", {}).get("name", "?"))
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "Unschedulable"
            return PodProblem(name, str(reason), _bounded(condition.get("message")))
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in IMAGE_REASONS:
            image = container.get("image", "")
            return PodProblem(name, "ImageMissing", _bounded(f"image {image} cannot be pulled ({reason}): "
                                                               f"{waiting.get('message', '')}"))  # fmt: skip
        if reason in START_REASONS:
            terminated = (container.get("lastState") or {}).get("terminated") or {}
            detail = waiting.get("message") or ""
            if terminated:
                last = terminated.get("message") or ""
                detail = (
                    f"container {container.get('name')} exited with code {terminated.get('exitCode')} "
                    f"({terminated.get('reason', '')}), {container.get('restartCount', 0)} restarts"
                    + (f"; last words: {_bounded(last, MAX_TERMINATION_MESSAGE)}" if last else "")
                )
            return PodProblem(name, str(reason), _bounded(detail, MAX_TERMINATION_MESSAGE + 200))
    return None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


_KINDS: dict[str, tuple[str, str]] = {
    # kind -> (API class attribute, method suffix)
    "ConfigMap": ("core", "config_map"),
    "Service": ("core", "service"),
    "Deployment": ("apps", "deployment"),
}


class AppClusterKube:
    """The cluster objects of FlinkJobs, through one kubernetes ApiClient (the operator's)."""

    def __init__(self, api_client: Any, *, request_timeout: float = 10.0, deadline: float = 30.0) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.request_timeout = request_timeout
        self.deadline = deadline

    # -- helpers -------------------------------------------------------------------------------------

    def _call(self, what: str, ends: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise AppClusterError(f"{what}: not started, the operation's {self.deadline:.0f} s deadline passed")
        try:
            return fn(*args, _request_timeout=min(self.request_timeout, remaining), **kwargs)
        except kubernetes.client.ApiException as exc:
            raise AppClusterError(f"{what} failed: {exc.status} {exc.reason}: {_bounded(_api_message(exc))}") from exc
        except Exception as exc:  # urllib3 timeouts and connection errors
            raise AppClusterError(f"{what} failed: {type(exc).__name__}: {_bounded(exc)}") from exc

    def _method(self, kind: str, verb: str) -> Callable[..., Any]:
        api_name, suffix = _KINDS[kind]
        api = self.core if api_name == "core" else self.apps
        return getattr(api, f"{verb}_namespaced_{suffix}")  # type: ignore[no-any-return]

    def _read(self, kind: str, namespace: str, name: str, ends: float) -> dict[str, Any] | None:
        try:
            obj = self._method(kind, "read")(name, namespace, _request_timeout=self._timeout(ends))
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise AppClusterError(
                f"read {kind} {namespace}/{name} failed: {exc.status} {exc.reason}: {_bounded(_api_message(exc))}"
            ) from exc
        except Exception as exc:
            raise AppClusterError(
                f"read {kind} {namespace}/{name} failed: {type(exc).__name__}: {_bounded(exc)}"
            ) from exc
        return dict(self.core.api_client.sanitize_for_serialization(obj))

    def _timeout(self, ends: float) -> float:
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise AppClusterError(f"the operation's {self.deadline:.0f} s deadline passed")
        return min(self.request_timeout, remaining)

    # -- apply ---------------------------------------------------------------------------------------

    def apply(self, objects: ClusterObjects) -> list[str]:
        """Creates or replaces every object of `objects`, in order. Returns what it did, one line per object."""
        ends = time.monotonic() + self.deadline
        done = []
        for obj in objects.in_order():
            done.append(self._create_or_replace(obj, ends))
        return done

    def _create_or_replace(self, obj: dict[str, Any], ends: float) -> str:
        kind, meta = obj["kind"], obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        owner_uid = meta["ownerReferences"][0]["uid"]
        try:
            self._method(kind, "create")(namespace, obj, _request_timeout=self._timeout(ends), _preload_content=False)
            return f"created {kind} {name}"
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise AppClusterError(
                    f"create {kind} {namespace}/{name} failed: {exc.status} {exc.reason}: {_bounded(_api_message(exc))}"
                ) from exc
        except AppClusterError:
            raise
        except Exception as exc:
            raise AppClusterError(
                f"create {kind} {namespace}/{name} failed: {type(exc).__name__}: {_bounded(exc)}"
            ) from exc
        for _attempt in range(3):  # replace at the version read; another writer in between: read again
            current = self._read(kind, namespace, name, ends)
            if current is None:  # deleted since: create it again
                self._call(
                    f"create {kind} {namespace}/{name}",
                    ends,
                    self._method(kind, "create"),
                    namespace,
                    obj,
                    _preload_content=False,  # the answer is not needed (and some clients mis-read it)
                )
                return f"created {kind} {name}"
            owners = [o.get("uid") for o in current["metadata"].get("ownerReferences") or [] if o.get("controller")]
            if owners != [owner_uid]:
                raise AppClusterError(
                    f"{kind} {namespace}/{name} exists and is not owned by this FlinkJob (controller uid "
                    f"{owners[0] if owners else 'none'}); the operator does not take over objects it did not make: "
                    "delete or rename it",
                    permanent=True,
                )
            if current["metadata"].get("deletionTimestamp"):
                raise AppClusterError(
                    f"{kind} {namespace}/{name} is being deleted; it is applied again once it is gone"
                )
            body = {**obj, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
            try:
                self._method(kind, "replace")(
                    name, namespace, body, _request_timeout=self._timeout(ends), _preload_content=False
                )
                return f"replaced {kind} {name}"
            except kubernetes.client.ApiException as exc:
                if exc.status == 409:
                    continue
                raise AppClusterError(
                    f"replace {kind} {namespace}/{name} failed: {exc.status} {exc.reason}: "
                    f"{_bounded(_api_message(exc))}"
                ) from exc
            except Exception as exc:
                raise AppClusterError(
                    f"replace {kind} {namespace}/{name} failed: {type(exc).__name__}: {_bounded(exc)}"
                ) from exc
        raise AppClusterError(
            f"replace {kind} {namespace}/{name}: it kept changing under the operator (409 three times)"
        )

    def scale_taskmanagers(self, namespace: str, names: ClusterNames, owner_uid: str, replicas: int) -> str:
        """Sets the TaskManager Deployment's replicas only (an in-place rescale through the adaptive
        scheduler), leaving the pods' template, and so the running pods, as they are."""
        if not 0 <= replicas <= 1024:
            raise AppClusterError(f"{replicas} TaskManagers is out of range (0..1024)")
        ends = time.monotonic() + self.deadline
        for _attempt in range(3):
            current = self._read("Deployment", namespace, names.taskmanager, ends)
            if current is None:
                raise AppClusterError(f"Deployment {namespace}/{names.taskmanager} does not exist: nothing to scale")
            owners = [o.get("uid") for o in current["metadata"].get("ownerReferences") or [] if o.get("controller")]
            if owners != [owner_uid]:
                raise AppClusterError(f"Deployment {namespace}/{names.taskmanager} is not owned by this FlinkJob")
            if current.get("spec", {}).get("replicas") == replicas:
                return f"Deployment {names.taskmanager} already has {replicas} replicas"
            current["spec"]["replicas"] = replicas
            try:
                self._method("Deployment", "replace")(
                    names.taskmanager,
                    namespace,
                    current,
                    _request_timeout=self._timeout(ends),
                    _preload_content=False,
                )
                return f"scaled Deployment {names.taskmanager} to {replicas}"
            except kubernetes.client.ApiException as exc:
                if exc.status == 409:
                    continue
                raise AppClusterError(
                    f"replace Deployment {namespace}/{names.taskmanager} failed: {exc.status} {exc.reason}: "
                    f"{_bounded(_api_message(exc))}"
                ) from exc
            except Exception as exc:
                raise AppClusterError(
                    f"replace Deployment {namespace}/{names.taskmanager} failed: {type(exc).__name__}: {_bounded(exc)}"
                ) from exc
        raise AppClusterError(f"scale Deployment {namespace}/{names.taskmanager}: it kept changing (409 three times)")

    # -- delete --------------------------------------------------------------------------------------

    def delete(
        self,
        namespace: str,
        names: ClusterNames,
        owner_uid: str,
        *,
        generation: str | None = None,
        job_id: str | None = None,
    ) -> list[str]:
        """Deletes the cluster's objects owned by FlinkJob `owner_uid` (TaskManagers first, the ConfigMap
        last), only those labelled with `generation` and/or `job_id` when given. Objects already gone or
        of another generation are left as they are. Returns what it deleted."""
        ends = time.monotonic() + self.deadline
        deleted = []
        for kind, name in (
            ("Deployment", names.taskmanager),
            ("Deployment", names.jobmanager),
            ("Service", names.service),
            ("ConfigMap", names.config_map),
        ):
            current = self._read(kind, namespace, name, ends)
            if current is None or current["metadata"].get("deletionTimestamp"):
                continue
            labels = current["metadata"].get("labels") or {}
            owners = [o.get("uid") for o in current["metadata"].get("ownerReferences") or [] if o.get("controller")]
            if owners != [owner_uid]:
                continue
            if generation is not None and labels.get(GENERATION_LABEL) != generation:
                continue
            if job_id is not None and labels.get(JOB_ID_LABEL) != job_id:
                continue
            options = kubernetes.client.V1DeleteOptions(
                propagation_policy="Background",
                preconditions=kubernetes.client.V1Preconditions(uid=current["metadata"]["uid"]),
            )
            try:
                self._method(kind, "delete")(
                    name, namespace, body=options, _request_timeout=self._timeout(ends), _preload_content=False
                )
            except kubernetes.client.ApiException as exc:
                if exc.status in (404, 409):  # gone, or replaced by a newer object since it was read
                    continue
                raise AppClusterError(
                    f"delete {kind} {namespace}/{name} failed: {exc.status} {exc.reason}: {_bounded(_api_message(exc))}"
                ) from exc
            except Exception as exc:
                raise AppClusterError(
                    f"delete {kind} {namespace}/{name} failed: {type(exc).__name__}: {_bounded(exc)}"
                ) from exc
            deleted.append(f"deleted {kind} {name}")
        return deleted

    # -- read ----------------------------------------------------------------------------------------

    def look(self, namespace: str, names: ClusterNames, owner_uid: str, via: RestAddress) -> ClusterLook:
        """What a pass needs of the FlinkJob's cluster, in four reads at most (each object once): the job
        its JobManager Deployment runs, its pods' readiness, and its JobManager's REST URL."""
        ends = time.monotonic() + self.deadline
        jm_deployment = self._read("Deployment", namespace, names.jobmanager, ends)
        job_id = _job_id_of(jm_deployment, owner_uid)
        if job_id is None:
            return ClusterLook(None)
        jm_pods = self._pods(namespace, names, "jobmanager", job_id, ends)
        tm_deployment = self._read("Deployment", namespace, names.taskmanager, ends)
        tm_pods = self._pods(namespace, names, "taskmanager", job_id, ends)
        readiness = ClusterReadiness(_component(jm_deployment, jm_pods), _component(tm_deployment, tm_pods))
        url = f"http://{names.service}.{namespace}.svc:{REST_PORT}" if via is RestAddress.SERVICE else _pod_url(jm_pods)
        return ClusterLook(job_id, readiness, url)

    def _pods(self, namespace: str, names: ClusterNames, component: str, job_id: str | None, ends: float) -> list[Any]:
        selector = f"{FLINKJOB_LABEL}={names.flinkjob_label},{COMPONENT_LABEL}={component}"
        if job_id is not None:
            selector += f",{JOB_ID_LABEL}={job_id}"
        listed = self._call(
            f"list {component} pods in {namespace}",
            ends,
            self.core.list_namespaced_pod,
            namespace,
            label_selector=selector,
            limit=MAX_PODS,
        )
        pods = self.core.api_client.sanitize_for_serialization(listed).get("items") or []
        return [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]

    def readiness(self, namespace: str, names: ClusterNames, job_id: str | None = None) -> ClusterReadiness:
        """The JobManager's and TaskManagers' pods (of `job_id`'s start when given): ready, there, wanted,
        and why any cannot start."""
        ends = time.monotonic() + self.deadline
        components = []
        for component, deployment_name in (("jobmanager", names.jobmanager), ("taskmanager", names.taskmanager)):
            deployment = self._read("Deployment", namespace, deployment_name, ends)
            components.append(_component(deployment, self._pods(namespace, names, component, job_id, ends)))
        return ClusterReadiness(jobmanager=components[0], taskmanager=components[1])


@dataclass(frozen=True)
class ClusterLook:
    """The FlinkJob's cluster as one pass sees it: `job_id` None when it has none (never created, being
    deleted, or not this FlinkJob's); `rest_url` None while its JobManager has no address (pod-ip: no
    running JobManager pod with an IP)."""

    job_id: str | None
    readiness: ClusterReadiness | None = None
    rest_url: str | None = None


def _job_id_of(deployment: Mapping[str, Any] | None, owner_uid: str) -> str | None:
    """The job id a JobManager Deployment runs (its pods' label), when it is the FlinkJob's and stays."""
    if deployment is None or deployment["metadata"].get("deletionTimestamp"):
        return None
    owners = [o.get("uid") for o in deployment["metadata"].get("ownerReferences") or [] if o.get("controller")]
    if owners != [owner_uid]:
        return None
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    job_id = labels.get(JOB_ID_LABEL)
    return str(job_id) if job_id else None


def _component(deployment: Mapping[str, Any] | None, pods: list[Any]) -> ComponentReadiness:
    wanted = None if deployment is None else int(deployment.get("spec", {}).get("replicas") or 0)
    problems = tuple(p for p in (pod_problem(pod) for pod in pods) if p is not None)
    return ComponentReadiness(
        ready=sum(1 for pod in pods if _pod_ready(pod)), total=len(pods), wanted=wanted, problems=problems
    )


def _pod_url(pods: list[Any]) -> str | None:
    """The REST URL of the first running JobManager pod with an IP."""
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or (pod.get("status") or {}).get("phase") != "Running":
            continue
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            continue
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"http://{host}:{REST_PORT}"
    return None


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body or "")
    except ValueError:
        return str(exc.body or "")
