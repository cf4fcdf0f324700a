"""The Kubernetes objects of one application-mode cluster (spec.cluster), as plain dicts: pure.

For a FlinkJob and one start of its job (`ClusterStart`: the job id the operator chose, the savepoint to
restore, the allowNonRestoredState flag) `build_cluster` makes:

  * a ConfigMap `<base>-config` with Flink's `config.yaml` (the spec's flinkConfiguration plus what the
    operator sets: addresses and ports, parallelism, slots, memory, the job id and restore settings)
    and `log4j-console.properties`, mounted as the pods' /opt/flink/conf;
  * a headless Service `<base>-jobmanager` (REST 8081, RPC 6123, blob 6124) selecting this start's
    JobManager pod, published before it is ready: the TaskManagers reach the JobManager by its DNS
    name `<base>-jobmanager.<namespace>` (cluster DNS answers a headless Service with the pod's IP,
    so no kube-proxy is involved), and the operator reaches REST there too;
  * a JobManager Deployment `<base>-jobmanager` (one pod, Recreate) running the image's
    `standalone-job` entry point with `--jars <jar>`, `--job-classname`, `--job-id` and the restore
    flags, then the job's args, as the official Flink image does;
  * a TaskManager Deployment `<base>-taskmanager` (Recreate) with ceil(parallelism / slots) pods,
    each advertising its own pod IP (`taskmanager.host`) and named by its pod (`taskmanager.resource-id`).

Names are fixed per FlinkJob (a new start replaces the objects in place): `cluster_names`. Every object
is owned by the FlinkJob (controller, blockOwnerDeletion) so Kubernetes' garbage collector removes it
with the FlinkJob, and labelled with the FlinkJob, the component, the deployment generation (the spec
Deployment's fingerprint) and the job id, so an old and a new cluster are told apart.

The entry point parses its command line into the restore settings and writes them over config.yaml's
(it sets allow-non-restored-state false when no savepoint flag is given), so the job id and restore
settings are passed both ways: the command line is what Flink honours, config.yaml records them.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import yaml

from flinkop.spec import AppCluster, FlinkJobSpec

API_VERSION = "flinkop.io/v1alpha1"
KIND = "FlinkJob"

FLINKJOB_LABEL = "flinkop.io/flinkjob"
COMPONENT_LABEL = "flinkop.io/component"  # jobmanager | taskmanager | config | service
GENERATION_LABEL = "flinkop.io/deployment"  # the spec Deployment's fingerprint
JOB_ID_LABEL = "flinkop.io/job-id"
CONFIG_HASH_ANNOTATION = "flinkop.io/config-hash"

MAIN_CONTAINER = "flink-main-container"
CONFIG_VOLUME = "flink-config"
CONF_DIR = "/opt/flink/conf"
REST_PORT = 8081
RPC_PORT = 6123
BLOB_PORT = 6124
TASKMANAGER_RPC_PORT = 6122

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_MAX_NAME = 63
_LONGEST_SUFFIX = len("-taskmanager")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

LOG4J_CONSOLE = """\
# Written by flinkop: log to the console (kubectl logs) and to log.file (Flink's web UI), both bounded.
monitorInterval = 30
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = ConsoleAppender
rootLogger.appenderRef.rolling.ref = RollingFileAppender
logger.pekko.name = org.apache.pekko
logger.pekko.level = INFO
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = WARN
logger.netty.name = org.jboss.netty.channel.DefaultChannelPipeline
logger.netty.level = OFF
appender.console.name = ConsoleAppender
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
appender.rolling.name = RollingFileAppender
appender.rolling.type = RollingFile
appender.rolling.append = true
appender.rolling.fileName = ${sys:log.file}
appender.rolling.filePattern = ${sys:log.file}.%i
appender.rolling.layout.type = PatternLayout
appender.rolling.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
appender.rolling.policies.type = Policies
appender.rolling.policies.size.type = SizeBasedTriggeringPolicy
appender.rolling.policies.size.size = 20MB
appender.rolling.strategy.type = DefaultRolloverStrategy
appender.rolling.strategy.max = 2
"""


class ClusterBuildError(ValueError):
    """The objects cannot be built from these inputs; the message says which input is wrong."""


@dataclass(frozen=True)
class ClusterNames:
    """The fixed names of one FlinkJob's cluster objects (DNS-1035 labels of at most 63 characters)."""

    base: str
    config_map: str
    service: str
    jobmanager: str
    taskmanager: str
    flinkjob_label: str  # the FlinkJob's name as a label value (the base name when the name does not fit)


def cluster_names(flinkjob_name: str) -> ClusterNames:
    """Names from the FlinkJob's name: the name itself when it is a DNS label short enough, otherwise a
    readable prefix of it and a hash of the whole name, so that two FlinkJobs never share a name."""
    if not flinkjob_name:
        raise ClusterBuildError("the FlinkJob has no name")
    room = _MAX_NAME - _LONGEST_SUFFIX
    clean = re.sub(r"[^a-z0-9-]", "-", flinkjob_name.lower())
    if clean == flinkjob_name and clean[0].isalpha() and len(clean) <= room and not clean.endswith("-"):
        base = clean
    else:
        digest = hashlib.sha256(flinkjob_name.encode()).hexdigest()[:8]
        prefix = clean if clean[:1].isalpha() else f"f-{clean}"
        base = f"{prefix[: room - 9].rstrip('-')}-{digest}"
    label = flinkjob_name if len(flinkjob_name) <= _MAX_NAME and _LABEL_VALUE_RE.match(flinkjob_name) else base
    return ClusterNames(
        base=base,
        config_map=f"{base}-config",
        service=f"{base}-jobmanager",
        jobmanager=f"{base}-jobmanager",
        taskmanager=f"{base}-taskmanager",
        flinkjob_label=label,
    )


def service_host(names: ClusterNames, namespace: str) -> str:
    """The JobManager's DNS name inside the cluster (resolved through the pods' search domains)."""
    return f"{names.service}.{namespace}"


@dataclass(frozen=True)
class ClusterStart:
    """One start of the job on a new cluster: the job id the operator chose (and recorded first), and
    where it restores from."""

    job_id: str
    savepoint_path: str | None = None
    allow_non_restored_state: bool = False

    def __post_init__(self) -> None:
        if not JOB_ID_RE.match(self.job_id):
            raise ClusterBuildError(f"job id {self.job_id!r} is not 32 lowercase hexadecimal digits")
        if self.savepoint_path is not None and (
            not self.savepoint_path or any(c.isspace() or ord(c) < 32 for c in self.savepoint_path)
        ):
            raise ClusterBuildError(f"savepoint path {self.savepoint_path!r} is empty or holds spaces")


@dataclass(frozen=True)
class ClusterObjects:
    """The objects of one cluster start, in the order they are applied."""

    names: ClusterNames
    generation: str  # the spec Deployment's fingerprint
    job_id: str
    config_map: dict[str, Any]
    service: dict[str, Any]
    jobmanager: dict[str, Any]
    taskmanager: dict[str, Any]

    def in_order(self) -> list[dict[str, Any]]:
        return [self.config_map, self.service, self.jobmanager, self.taskmanager]


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def flink_configuration(
    cluster: AppCluster, spec: FlinkJobSpec, names: ClusterNames, namespace: str, start: ClusterStart
) -> dict[str, Any]:
    """config.yaml's options: the spec's, then the operator's (which the spec may not set)."""
    config: dict[str, Any] = dict(cluster.configuration)
    if spec.savepoint_directory and "execution.checkpointing.savepoint-dir" not in config:
        config["execution.checkpointing.savepoint-dir"] = spec.savepoint_directory
    host = service_host(names, namespace)
    config.update(
        {
            "jobmanager.rpc.address": host,
            "jobmanager.rpc.port": RPC_PORT,
            "jobmanager.bind-host": "0.0.0.0",
            "rest.address": host,
            "rest.port": REST_PORT,
            "rest.bind-address": "0.0.0.0",
            "blob.server.port": BLOB_PORT,
            "taskmanager.bind-host": "0.0.0.0",
            "taskmanager.rpc.port": TASKMANAGER_RPC_PORT,
            "taskmanager.numberOfTaskSlots": cluster.slots,
            "parallelism.default": spec.deployment.parallelism,
            "jobmanager.memory.process.size": cluster.jobmanager.flink_memory,
            "taskmanager.memory.process.size": cluster.taskmanager.flink_memory,
            "high-availability.cluster-id": names.base,
            # Keep the JobManager up after the job ends (a stop with a savepoint): the operator reads the
            # job's end and savepoint over REST; it removes the cluster itself.
            "execution.shutdown-on-application-finish": False,
            # A main() that throws shows as a FAILED job under the job id instead of a crash loop.
            "execution.submit-failed-job-on-application-error": True,
            "$internal.pipeline.job-id": start.job_id,
            "execution.savepoint-restore.allow-non-restored-state": start.allow_non_restored_state,
        }
    )
    if start.savepoint_path:
        config["execution.savepoint.path"] = start.savepoint_path
    return config


def jobmanager_args(spec: FlinkJobSpec, start: ClusterStart) -> list[str]:
    """The official image's `standalone-job` command line for this start."""
    deployment = spec.deployment
    jar = deployment.jar_uri
    if urlparse(jar).scheme not in ("local", "http", "https"):
        raise ClusterBuildError(f"spec.jar.uri {jar!r} cannot be used by the cluster's pods (local://, http(s)://)")
    args = ["standalone-job", "--jars", jar, "--job-id", start.job_id]
    if deployment.entry_class:
        args += ["--job-classname", deployment.entry_class]
    if start.savepoint_path:
        args += ["--fromSavepoint", start.savepoint_path]
        if start.allow_non_restored_state:
            args.append("--allowNonRestoredState")
    return [*args, *deployment.args]


def _labels(names: ClusterNames, component: str, generation: str, job_id: str) -> dict[str, str]:
    return {
        FLINKJOB_LABEL: names.flinkjob_label,
        COMPONENT_LABEL: component,
        GENERATION_LABEL: generation,
        JOB_ID_LABEL: job_id,
        "app.kubernetes.io/name": "flink",
        "app.kubernetes.io/instance": names.base,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "flinkop",
    }


def _metadata(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels), "ownerReferences": [owner]}


def _container(cluster: AppCluster, role: str, args: list[str]) -> dict[str, Any]:
    resources = cluster.jobmanager if role == "jobmanager" else cluster.taskmanager
    amounts = {"cpu": resources.cpu, "memory": resources.memory}
    container: dict[str, Any] = {
        "name": MAIN_CONTAINER,
        "image": cluster.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "args": args,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        # A crash's last log lines become the container's termination message (what readiness reports).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONF_DIR, "readOnly": True}],
    }
    if role == "jobmanager":
        container["ports"] = [
            {"name": "rest", "containerPort": REST_PORT},
            {"name": "rpc", "containerPort": RPC_PORT},
            {"name": "blob", "containerPort": BLOB_PORT},
        ]
        container["readinessProbe"] = {
            "tcpSocket": {"port": REST_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
        }
    else:
        container["ports"] = [{"name": "rpc", "containerPort": TASKMANAGER_RPC_PORT}]
    return container


def _pod_spec(cluster: AppCluster, names: ClusterNames, container: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": CONFIG_VOLUME, "configMap": {"name": names.config_map}}],
        "enableServiceLinks": False,
    }
    if cluster.service_account:
        spec["serviceAccountName"] = cluster.service_account
    return spec


def merge_pod_template(template: Mapping[str, Any] | None, pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` ({metadata, spec}) laid over the user's pod template: the template gives everything the
    operator does not set (nodeSelector, tolerations, securityContext, sidecars, init containers, ...);
    labels, annotations, containers, volumes and a container's env, volumeMounts and ports are merged
    by key or name, the operator's entries winning."""
    if not template:
        return pod
    merged: dict[str, Any] = {"metadata": {}, "spec": copy.deepcopy(dict(template.get("spec") or {}))}
    theirs_meta = template.get("metadata") or {}
    for key in ("labels", "annotations"):
        combined = {**(theirs_meta.get(key) or {}), **(pod.get("metadata", {}).get(key) or {})}
        if combined:
            merged["metadata"][key] = combined
    spec = merged["spec"]
    ours = pod["spec"]
    for key, value in ours.items():
        if key == "containers":
            spec["containers"] = _merge_named(spec.get("containers") or [], value, merge_container=True)
        elif key == "volumes":
            spec["volumes"] = _merge_named(spec.get("volumes") or [], value, merge_container=False)
        else:
            spec[key] = copy.deepcopy(value)
    return merged


def _merge_named(theirs: list[Any], ours: list[dict[str, Any]], *, merge_container: bool) -> list[dict[str, Any]]:
    by_name = {item["name"]: item for item in ours}
    result: list[dict[str, Any]] = []
    for item in theirs:
        mine = by_name.pop(item["name"], None)
        if mine is None:
            result.append(copy.deepcopy(item))
        elif merge_container:
            result.append(_merge_container(item, mine))
        else:
            result.append(copy.deepcopy(mine))
    return result + [copy.deepcopy(item) for item in ours if item["name"] in by_name]


def _merge_container(theirs: Mapping[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(theirs))
    for key, value in ours.items():
        if key in ("env", "volumeMounts", "ports") and isinstance(merged.get(key), list):
            field = "mountPath" if key == "volumeMounts" else ("containerPort" if key == "ports" else "name")
            mine = {item[field] for item in value}
            merged[key] = [i for i in merged[key] if not (isinstance(i, Mapping) and i.get(field) in mine)] + value
        elif key == "resources" and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _deployment(
    name: str,
    namespace: str,
    names: ClusterNames,
    component: str,
    replicas: int,
    labels: dict[str, str],
    owner: dict[str, Any],
    pod: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, labels, owner),
        "spec": {
            "replicas": replicas,
            # Immutable: only what never changes between starts.
            "selector": {"matchLabels": {FLINKJOB_LABEL: names.flinkjob_label, COMPONENT_LABEL: component}},
            # Never two JobManagers, nor TaskManagers of two starts side by side.
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 1,
            "template": pod,
        },
    }


def build_cluster(*, name: str, namespace: str, uid: str, spec: FlinkJobSpec, start: ClusterStart) -> ClusterObjects:
    """The objects of FlinkJob `namespace/name` (uid `uid`) running `spec` in application mode, for `start`."""
    cluster = spec.cluster
    if cluster is None:
        raise ClusterBuildError("the spec has no spec.cluster: it runs on a session cluster")
    if not uid:
        raise ClusterBuildError("the FlinkJob's uid is needed for the owner references")
    names = cluster_names(name)
    generation = spec.deployment.fingerprint
    owner = owner_reference(name, uid)

    config = flink_configuration(cluster, spec, names, namespace, start)
    body = yaml.safe_dump(config, sort_keys=True, default_flow_style=False, width=1 << 16)
    config_yaml = f"# Written by flinkop for FlinkJob {namespace}/{name}.\n{body}"
    config_hash = hashlib.sha256(config_yaml.encode()).hexdigest()[:16]

    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(names.config_map, namespace, _labels(names, "config", generation, start.job_id), owner),
        "data": {"config.yaml": config_yaml, "log4j-console.properties": LOG4J_CONSOLE},
    }
    jm_labels = _labels(names, "jobmanager", generation, start.job_id)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(names.service, namespace, _labels(names, "service", generation, start.job_id), owner),
        "spec": {
            "clusterIP": "None",
            # The TaskManagers connect while the JobManager starts up, before its REST port is ready.
            "publishNotReadyAddresses": True,
            "selector": {
                FLINKJOB_LABEL: names.flinkjob_label,
                COMPONENT_LABEL: "jobmanager",
                JOB_ID_LABEL: start.job_id,
            },
            "ports": [
                {"name": "rest", "port": REST_PORT, "targetPort": REST_PORT},
                {"name": "rpc", "port": RPC_PORT, "targetPort": RPC_PORT},
                {"name": "blob", "port": BLOB_PORT, "targetPort": BLOB_PORT},
            ],
        },
    }
    pods: dict[str, dict[str, Any]] = {}
    for role, args in (
        ("jobmanager", jobmanager_args(spec, start)),
        ("taskmanager", ["taskmanager", "-Dtaskmanager.host=$(POD_IP)", "-Dtaskmanager.resource-id=$(POD_NAME)"]),
    ):
        labels = _labels(names, role, generation, start.job_id)
        pod = {
            "metadata": {"labels": labels, "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
            "spec": _pod_spec(cluster, names, _container(cluster, role, args)),
        }
        pods[role] = merge_pod_template(cluster.pod_template, pod)
    taskmanagers = cluster.taskmanagers_for(spec.deployment.parallelism)
    return ClusterObjects(
        names=names,
        generation=generation,
        job_id=start.job_id,
        config_map=config_map,
        service=service,
        jobmanager=_deployment(
            names.jobmanager, namespace, names, "jobmanager", 1, jm_labels, owner, pods["jobmanager"]
        ),
        taskmanager=_deployment(
            names.taskmanager,
            namespace,
            names,
            "taskmanager",
            taskmanagers,
            _labels(names, "taskmanager", generation, start.job_id),
            owner,
            pods["taskmanager"],
        ),
    )


def config_yaml_of(objects: ClusterObjects) -> dict[str, Any]:
    """config.yaml of `objects`, parsed (for checks and tests)."""
    loaded = yaml.safe_load(objects.config_map["data"]["config.yaml"])
    return dict(loaded) if isinstance(loaded, dict) else {}
