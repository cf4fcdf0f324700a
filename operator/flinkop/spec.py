"""The FlinkJob spec as plain values: parsed, defaulted and checked beyond what the CRD schema can.

`Deployment` is the part of the spec that defines the running Flink job: a change to it is an
upgrade. Its `fingerprint` is stored in status to tell which spec a job runs. In application mode
(`spec.cluster`) the cluster the job runs on is part of it too (`AppCluster`: image, Flink
configuration, resources, slots, service account, pod template), so changing any of them is an upgrade,
and an image change is a program change like a jar change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any
from urllib.parse import ParseResult, urlparse

SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
JAR_SCHEMES = ("file", "http", "https")
APP_JAR_SCHEMES = ("local", "http", "https")  # application mode: a path inside the image, or fetched by Flink
ALLOW_NON_RESTORED = ("Never", "Always", "OnJarChange")
PULL_POLICIES = ("IfNotPresent", "Always", "Never")

# Bounds on the application-mode cluster section (untrusted input: it becomes a ConfigMap and pod specs).
MAX_IMAGE_CHARS = 512
MAX_CONFIG_ENTRIES = 200
MAX_CONFIG_KEY_CHARS = 200
MAX_CONFIG_VALUE_CHARS = 4096
MAX_CONFIG_TOTAL_CHARS = 64 * 1024
MAX_POD_TEMPLATE_CHARS = 32 * 1024
MAX_SLOTS = 256
MAX_TASKMANAGERS = 1024
MAX_CPU = Decimal(1024)
MIN_MEMORY = Decimal(2**20)  # 1Mi: Flink itself refuses sizes too small to run in, saying which
MAX_MEMORY = Decimal(2**44)  # 16Ti
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
CONFIG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes' quantity syntax (k8s.io/apimachinery resource.Quantity): a signed decimal number and a
# binary-SI suffix, a decimal-SI suffix or a decimal exponent.
QUANTITY_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_QUANTITY_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
# Flink options the operator sets itself in application mode, and where the spec says them instead.
RESERVED_CONFIG = {
    "jobmanager.rpc.address": "the operator sets it to the cluster's Service",
    "jobmanager.rpc.port": "the operator uses 6123",
    "rest.port": "the operator uses 8081",
    "rest.bind-port": "the operator uses 8081",
    "blob.server.port": "the operator uses 6124",
    "taskmanager.rpc.port": "the operator uses 6122",
    "parallelism.default": "set spec.parallelism",
    "taskmanager.numberOfTaskSlots": "set spec.cluster.taskManager.slots",
    "jobmanager.memory.process.size": "set spec.cluster.jobManager.resources.memory",
    "taskmanager.memory.process.size": "set spec.cluster.taskManager.resources.memory",
    "$internal.pipeline.job-id": "the operator chooses the job id",
    "execution.savepoint.path": "set spec.initialSavepointPath; the operator restores from its savepoints itself",
    "execution.savepoint-restore.allow-non-restored-state": "set spec.allowNonRestoredState",
    "execution.shutdown-on-application-finish": "the operator keeps the JobManager up to read the job's end",
    "pipeline.jars": "set spec.jar.uri",
    "high-availability.cluster-id": "the operator names the cluster after the FlinkJob",
}


# A pass with no access to the Kubernetes API for application clusters (flinkop.reconcile.run_pass
# without `app_kube`) stalls a FlinkJob with spec.cluster with this, saying why; the operator always has it.
APPLICATION_MODE_UNAVAILABLE = (
    "ApplicationModeUnavailable",
    "spec.cluster (application mode) needs the operator's access to the Kubernetes API for the job's own "
    "cluster, which this pass was not given: nothing was created.",
)


class SpecError(ValueError):
    """The spec cannot be acted on; the message names the field and what is wrong."""


def parse_quantity(value: Any, field: str) -> Decimal:
    """A Kubernetes quantity (`500m`, `2`, `1.5Gi`, `2e9`; an integer or a decimal number is taken as
    it is) as a Decimal; SpecError naming `field` for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SpecError(f"{field} {_show(value)} must be a Kubernetes quantity such as 500m, 2, 1Gi or 1536Mi")
    text = str(value) if not isinstance(value, float) else repr(value)
    match = QUANTITY_RE.match(text) if len(text) <= 40 else None
    if match is None:
        raise SpecError(f"{field} {_show(value)} is not a Kubernetes quantity (such as 500m, 2, 1Gi or 1536Mi)")
    number, suffix = match.group(1), match.group(2)
    try:
        if suffix and suffix[0] in "eE":
            exponent = int(suffix[1:])
            if abs(exponent) > 30:
                raise SpecError(f"{field} {_show(value)} is out of range")
            amount = Decimal(number) * Decimal(10) ** exponent
        else:
            amount = Decimal(number) * _QUANTITY_FACTORS[suffix]
    except InvalidOperation:
        raise SpecError(f"{field} {_show(value)} is not a Kubernetes quantity") from None
    return amount


@dataclass(frozen=True)
class Resources:
    """A pod's CPU and memory as Kubernetes quantities (as written), requested and limited alike."""

    cpu: str
    memory: str

    @property
    def memory_bytes(self) -> int:
        return int(parse_quantity(self.memory, "memory"))

    @property
    def flink_memory(self) -> str:
        """The memory as a Flink size (whole mebibytes): the process size Flink divides up."""
        return f"{self.memory_bytes // 2**20}m"

    def to_dict(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory}


@dataclass(frozen=True)
class AppCluster:
    """The application-mode cluster section (`spec.cluster`): the Flink cluster the operator runs for
    this job alone. Frozen and hashable; the Flink configuration as sorted pairs, the pod template as
    canonical JSON."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    flink_configuration: tuple[tuple[str, str], ...] = ()
    jobmanager: Resources = Resources("1", "1600Mi")
    taskmanager: Resources = Resources("1", "1728Mi")
    slots: int = 1
    service_account: str | None = None
    pod_template_json: str | None = None  # canonical JSON (sorted keys) of spec.cluster.podTemplate

    @property
    def configuration(self) -> dict[str, str]:
        return dict(self.flink_configuration)

    @property
    def pod_template(self) -> dict[str, Any] | None:
        return json.loads(self.pod_template_json) if self.pod_template_json else None

    def taskmanagers_for(self, parallelism: int) -> int:
        """TaskManagers a job of `parallelism` needs: ceil(parallelism / slots)."""
        return -(-parallelism // self.slots)

    def savepoint_directory(self, spec_directory: str | None) -> str | None:
        """Where savepoints go: spec.savepointDirectory, else the configuration's savepoint directory
        (Flink 2's key, then the older one). None: nowhere, which the operator must report."""
        config = self.configuration
        return (
            spec_directory
            or config.get("execution.checkpointing.savepoint-dir")
            or config.get("state.savepoints.dir")
            or None
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "imagePullPolicy": self.image_pull_policy,
            "flinkConfiguration": dict(self.flink_configuration),
            "jobManager": {"resources": self.jobmanager.to_dict()},
            "taskManager": {"resources": self.taskmanager.to_dict(), "slots": self.slots},
            "serviceAccount": self.service_account,
            "podTemplate": self.pod_template,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AppCluster:
        """The inverse of to_dict (status.deployedSpec and friends), checked as a spec is."""
        return _parse_cluster(d, "cluster")


@dataclass(frozen=True)
class Deployment:
    jar_uri: str
    jar_sha256: str | None
    entry_class: str | None
    args: tuple[str, ...]
    parallelism: int
    restart_nonce: int | None = None
    cluster: AppCluster | None = None  # application mode: the job's own cluster; None on a session cluster

    @cached_property
    def fingerprint(self) -> str:
        # Computed once per value: every pass compares fingerprints several times (B3's idle profile).
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "jarUri": self.jar_uri,
            "jarSha256": self.jar_sha256,
            "entryClass": self.entry_class,
            "args": list(self.args),
            "parallelism": self.parallelism,
            "restartNonce": self.restart_nonce,
        }
        if self.cluster is not None:  # absent in session mode: session-mode fingerprints stay as they were
            d["cluster"] = self.cluster.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Deployment:
        return cls(
            jar_uri=str(d["jarUri"]),
            jar_sha256=d.get("jarSha256"),
            entry_class=d.get("entryClass"),
            args=tuple(str(a) for a in d.get("args") or ()),
            parallelism=int(d["parallelism"]),
            restart_nonce=d.get("restartNonce"),
            cluster=AppCluster.from_dict(d["cluster"]) if d.get("cluster") else None,
        )

    @property
    def taskmanagers(self) -> int | None:
        """Application mode: the TaskManagers this parallelism needs; None on a session cluster."""
        return self.cluster.taskmanagers_for(self.parallelism) if self.cluster is not None else None

    def only_parallelism_differs(self, other: Deployment) -> bool:
        """A rescale: same program, same restart nonce, another parallelism."""
        return (
            self.parallelism != other.parallelism
            and not self.program_changed(other)
            and self.restart_nonce == other.restart_nonce
            and self.cluster == other.cluster  # a configuration or resources change is an upgrade
        )

    def program_changed(self, other: Deployment) -> bool:
        """True when jar, entry class, args or (application mode) the image differ: what `OnJarChange`
        looks at. A move between session and application mode counts as one (the jar may differ)."""
        return (
            self.jar_uri != other.jar_uri
            or (self.jar_sha256 or "").lower() != (other.jar_sha256 or "").lower()
            or self.entry_class != other.entry_class
            or self.args != other.args
            or (self.cluster.image if self.cluster else None) != (other.cluster.image if other.cluster else None)
        )


@dataclass(frozen=True)
class FlinkJobSpec:
    flink_rest_url: str  # "" in application mode (spec.cluster): the operator finds its own JobManager
    deployment: Deployment
    state: str = "running"
    upgrade_mode: str = "savepoint"
    savepoint_mode: str = "stop"
    drain: bool = False
    savepoint_directory: str | None = None
    allow_non_restored_state: str = "Never"
    restore_failure_policy: str = "Rollback"
    initial_savepoint_path: str | None = None
    savepoint_timeout_seconds: int = 600
    savepoint_nonce: int | None = None
    savepoint_interval_seconds: int | None = None
    savepoint_history_limit: int = 10
    savepoint_max_age_seconds: int | None = None
    dispose_savepoints_on_delete: bool = False
    rescale_mode: str = "Auto"
    min_rescale_interval_seconds: int = 60
    in_place_rescale_timeout_seconds: int = 120
    stability_timeout_seconds: int = 300  # a start must pass the stability gate within this
    restart_lost_jobs: bool = True  # a job its cluster no longer lists starts again from the last savepoint
    scale_selector: str | None = None
    rest_auth_secret: str | None = None  # Secret (same namespace): `token`, or `username` and `password`
    tls_ca_secret: tuple[str, str] | None = None  # (Secret name, key) of the CA that signs Flink's certificate
    tls_insecure_skip_verify: bool = False

    @property
    def cluster(self) -> AppCluster | None:
        """Application mode's cluster section (part of the deployment: changing it is an upgrade)."""
        return self.deployment.cluster

    @property
    def application_mode(self) -> bool:
        return self.deployment.cluster is not None

    def attempt_key(self, deployment: Deployment) -> str:
        """What a failed attempt at `deployment` is remembered by (`status.failure.fingerprint`): the
        deployment and every policy field that can make the next attempt at it go differently. A
        stall that needs a person lifts when any of them changes."""
        policy = [
            self.allow_non_restored_state,
            self.restore_failure_policy,
            self.upgrade_mode,
            self.savepoint_mode,
            self.drain,
            self.savepoint_directory,
            self.initial_savepoint_path,
            self.rescale_mode,
            self.in_place_rescale_timeout_seconds,
            self.stability_timeout_seconds,
            self.restart_lost_jobs,
        ]
        return hashlib.sha256(json.dumps([deployment.fingerprint, policy]).encode()).hexdigest()[:16]

    def allow_non_restored_for(self, previous: Deployment | None, target: Deployment) -> bool:
        """The `-n` flag for restoring `target` from a savepoint of `previous`, by the policy."""
        if self.allow_non_restored_state == "Always":
            return True
        if self.allow_non_restored_state == "OnJarChange":
            return previous is not None and target.program_changed(previous)
        return False


def _bool(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"spec.{key} {value!r} must be true or false")
    return value


def _enum(spec: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = spec.get(key, default)
    if value not in allowed:
        raise SpecError(f"spec.{key} is {value!r}; it must be one of {', '.join(allowed)}")
    return str(value)


def _positive_int(spec: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = spec.get(key)
    if value is None:  # absent, or null in the manifest: the default
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"spec.{key} {value!r} must be an integer >= 1")
    return value


def _non_negative_int(spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key)
    if value is None:  # absent, or null in the manifest: the default
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SpecError(f"spec.{key} {value!r} must be an integer >= 0")
    return value


def _optional(spec: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    """spec[key] when it is of `kind` (or absent/null: None); SpecError naming the field otherwise."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"spec.{key} {_show(value)} must be {what}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:119] + "…"


def _url(value: str, field: str) -> ParseResult:
    """urlparse, with what it raises or lets through (spaces, control characters, a bad port) as SpecError."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise SpecError(f"{field} {_show(value)} contains spaces or control characters")
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError as exc:
        raise SpecError(f"{field} {_show(value)} is not a valid URL ({exc})") from None
    return parsed


def parse_spec(spec: Mapping[str, Any]) -> FlinkJobSpec:
    """Parses a FlinkJob's spec, with the contract's defaults. Raises SpecError, naming the field,
    for what the CRD schema cannot reject on Kubernetes 1.20 (cross-field rules, formats), and for
    anything else a spec may hold: the webhook and every pass run this on untrusted input."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")
    url = spec.get("flinkRestUrl")
    cluster_section = spec.get("cluster")
    if url is not None and cluster_section is not None:
        raise SpecError(
            "spec.flinkRestUrl and spec.cluster are both set; set exactly one: spec.flinkRestUrl to run the job "
            "on a session cluster somebody else runs, or spec.cluster to have the operator run a cluster for "
            "this job alone (application mode)"
        )
    cluster: AppCluster | None = None
    if cluster_section is not None:
        cluster = _parse_cluster(cluster_section, "spec.cluster")
        url = ""
        parsed_url = urlparse("")
    else:
        if not isinstance(url, str) or not url:
            raise SpecError(
                "spec.flinkRestUrl is required (the REST endpoint of the Flink session cluster), unless "
                "spec.cluster is set (application mode: the operator runs the job's own cluster)"
            )
        parsed_url = _url(url, "spec.flinkRestUrl")
        if parsed_url.scheme not in ("http", "https") or not parsed_url.hostname:
            raise SpecError(f"spec.flinkRestUrl {_show(url)} is not an http:// or https:// URL")
    jar = spec.get("jar") or {}
    if not isinstance(jar, Mapping):
        raise SpecError("spec.jar must be an object: {uri: ..., sha256: ...}")
    uri = jar.get("uri")
    if not isinstance(uri, str) or not uri:
        raise SpecError("spec.jar.uri is required (file://, http:// or https:// location of the job jar)")
    parsed_uri = _url(uri, "spec.jar.uri")
    scheme = parsed_uri.scheme
    if scheme == "local" and cluster is None:
        raise SpecError(
            f"spec.jar.uri {_show(uri)}: local:// names a file inside the cluster's image, which only "
            "application mode (spec.cluster) has; on a session cluster use file://, http:// or https://"
        )
    if scheme == "file" and cluster is not None:
        raise SpecError(
            f"spec.jar.uri {_show(uri)}: file:// is the operator's own filesystem, which the job's pods do not "
            "see; in application mode use local:// (a path inside spec.cluster.image), http:// or https://"
        )
    allowed = APP_JAR_SCHEMES if cluster is not None else JAR_SCHEMES
    if scheme not in allowed:
        raise SpecError(
            f"spec.jar.uri {_show(uri)} has scheme {scheme or '(none)'!r}; use "
            + ", ".join(f"{s}://" for s in allowed[:-1])
            + f" or {allowed[-1]}://"
        )
    if scheme == "local" and (parsed_uri.netloc or not parsed_uri.path.startswith("/") or parsed_uri.query):
        raise SpecError(f"spec.jar.uri {_show(uri)} must be local:///absolute/path/in/the/image.jar (three slashes)")
    sha = jar.get("sha256")
    if sha is not None and not SHA256_RE.match(str(sha)):
        raise SpecError(f"spec.jar.sha256 {sha!r} is not 64 hexadecimal digits")
    if sha is not None and scheme == "local":
        raise SpecError(
            f"spec.jar.sha256 cannot be checked for {_show(uri)}: a local:// jar is inside spec.cluster.image, "
            "which the operator does not read; leave sha256 out (pin the image by digest instead)"
        )
    parallelism = spec.get("parallelism", 1)  # the CRD's default, for a manifest that leaves it to an autoscaler
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise SpecError(f"spec.parallelism {parallelism!r} must be an integer >= 1")
    args = spec.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise SpecError("spec.args must be a list of strings")
    deployment = Deployment(
        jar_uri=uri,
        jar_sha256=str(sha).lower() if sha else None,
        entry_class=_optional(spec, "entryClass", str, "a string (a class name)") or None,
        args=tuple(args),
        parallelism=parallelism,
        restart_nonce=_optional(spec, "restartNonce", int, "an integer"),
        cluster=cluster,
    )
    if cluster is not None and cluster.taskmanagers_for(parallelism) > MAX_TASKMANAGERS:
        raise SpecError(
            f"spec.parallelism {parallelism} with spec.cluster.taskManager.slots {cluster.slots} needs "
            f"{cluster.taskmanagers_for(parallelism)} TaskManagers; at most {MAX_TASKMANAGERS} are allowed "
            "(raise the slots per TaskManager)"
        )
    state = _enum(spec, "state", ("running", "suspended"), "running")
    upgrade_mode = _enum(spec, "upgradeMode", ("savepoint", "stateless"), "savepoint")
    savepoint_mode = _enum(spec, "savepointMode", ("stop", "cancel"), "stop")
    drain = bool(_optional(spec, "drain", bool, "true or false"))
    if drain and savepoint_mode != "stop":
        raise SpecError("spec.drain: true works only with spec.savepointMode: stop (cancel cannot drain)")
    sp_dir = _optional(spec, "savepointDirectory", str, "a string (a URI)") or None
    if sp_dir is not None and not _url(sp_dir, "spec.savepointDirectory").scheme:
        raise SpecError(
            f"spec.savepointDirectory {sp_dir!r} is not a URI; write it with its scheme, e.g. file:///data/sp"
        )
    initial = _optional(spec, "initialSavepointPath", str, "a string (a URI)") or None
    if initial is not None and not _url(initial, "spec.initialSavepointPath").scheme:
        raise SpecError(
            f"spec.initialSavepointPath {initial!r} is not a URI; write it as Flink reports it, e.g. "
            "file:///data/sp/savepoint-1a2b3c-0123456789ab"
        )
    timeout = _positive_int(spec, "savepointTimeoutSeconds", 600)
    assert timeout is not None
    auth_ref = spec.get("restAuthSecretRef") or {}
    if cluster is not None and (auth_ref or spec.get("tls")):
        raise SpecError(
            "spec.restAuthSecretRef and spec.tls apply to a session cluster's spec.flinkRestUrl only; "
            "in application mode (spec.cluster) the operator reaches its own JobManager directly"
        )
    if auth_ref and not (isinstance(auth_ref, Mapping) and isinstance(auth_ref.get("name"), str) and auth_ref["name"]):
        raise SpecError("spec.restAuthSecretRef must be {name: <Secret in this namespace>}")
    tls = spec.get("tls") or {}
    if not isinstance(tls, Mapping):
        raise SpecError("spec.tls must be an object: {caSecretRef: ..., insecureSkipVerify: ...}")
    ca_ref = tls.get("caSecretRef") or {}
    if ca_ref and not (isinstance(ca_ref, Mapping) and isinstance(ca_ref.get("name"), str) and ca_ref["name"]):
        raise SpecError("spec.tls.caSecretRef must be {name: <Secret in this namespace>, key: <default ca.crt>}")
    insecure = tls.get("insecureSkipVerify", False)
    if not isinstance(insecure, bool):
        raise SpecError(f"spec.tls.insecureSkipVerify {_show(insecure)} must be true or false")
    ca_key = ca_ref.get("key") if isinstance(ca_ref, Mapping) else None
    if ca_key is not None and not (isinstance(ca_key, str) and ca_key):
        raise SpecError("spec.tls.caSecretRef.key must be the name of a key in the Secret")
    if (ca_ref or insecure) and parsed_url.scheme != "https":
        raise SpecError("spec.tls applies to an https:// spec.flinkRestUrl only")
    if ca_ref and insecure:
        raise SpecError("spec.tls: set either caSecretRef or insecureSkipVerify, not both")
    return FlinkJobSpec(
        flink_rest_url=str(url).rstrip("/"),
        deployment=deployment,
        state=state,
        upgrade_mode=upgrade_mode,
        savepoint_mode=savepoint_mode,
        drain=drain,
        savepoint_directory=sp_dir,
        allow_non_restored_state=_enum(spec, "allowNonRestoredState", ALLOW_NON_RESTORED, "Never"),
        restore_failure_policy=_enum(spec, "restoreFailurePolicy", ("Rollback", "Fail"), "Rollback"),
        initial_savepoint_path=initial,
        savepoint_timeout_seconds=timeout,
        savepoint_nonce=_optional(spec, "savepointNonce", int, "an integer"),
        savepoint_interval_seconds=_positive_int(spec, "savepointIntervalSeconds", None),
        savepoint_history_limit=_positive_int(spec, "savepointHistoryLimit", 10) or 10,
        savepoint_max_age_seconds=_positive_int(spec, "savepointMaxAgeSeconds", None),
        dispose_savepoints_on_delete=bool(_optional(spec, "disposeSavepointsOnDelete", bool, "true or false")),
        rescale_mode=_enum(spec, "rescaleMode", ("Auto", "InPlace", "Savepoint"), "Auto"),
        min_rescale_interval_seconds=_non_negative_int(spec, "minRescaleIntervalSeconds", 60),
        in_place_rescale_timeout_seconds=_positive_int(spec, "inPlaceRescaleTimeoutSeconds", 120) or 120,
        stability_timeout_seconds=_positive_int(spec, "stabilityTimeoutSeconds", 300) or 300,
        restart_lost_jobs=_bool(spec, "restartLostJobs", True),
        scale_selector=_optional(spec, "scaleSelector", str, "a string (a label selector)") or None,
        rest_auth_secret=str(auth_ref["name"]) if auth_ref else None,
        tls_ca_secret=(str(ca_ref["name"]), str(ca_ref.get("key") or "ca.crt")) if ca_ref else None,
        tls_insecure_skip_verify=insecure,
    )


def _section(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{field} must be an object")
    return value


def _resources(value: Any, field: str, default: Resources) -> Resources:
    section = _section(value, field)
    cpu = section.get("cpu", default.cpu)
    memory = section.get("memory", default.memory)
    cpu_amount = parse_quantity(cpu, f"{field}.cpu")
    if not Decimal("0.001") <= cpu_amount <= MAX_CPU:
        raise SpecError(f"{field}.cpu {_show(cpu)} must be between 1m and {MAX_CPU} CPUs")
    memory_amount = parse_quantity(memory, f"{field}.memory")
    if not MIN_MEMORY <= memory_amount <= MAX_MEMORY:
        raise SpecError(f"{field}.memory {_show(memory)} must be between 1Mi and 16Ti")
    if memory_amount != memory_amount.to_integral_value():
        raise SpecError(f"{field}.memory {_show(memory)} is not a whole number of bytes")
    return Resources(cpu=str(cpu), memory=str(memory))


def _parse_cluster(value: Any, field: str) -> AppCluster:
    """spec.cluster (or its copy in status, `field` "cluster") as an AppCluster, every rule checked."""
    if not isinstance(value, Mapping):
        raise SpecError(f"{field} must be an object (image, flinkConfiguration, jobManager, taskManager, ...)")
    image = value.get("image")
    if not isinstance(image, str) or not image:
        raise SpecError(f"{field}.image is required: the Flink image the job's cluster runs (with the job's jar)")
    if len(image) > MAX_IMAGE_CHARS or not IMAGE_RE.match(image):
        raise SpecError(
            f"{field}.image {_show(image)} is not an image reference (at most {MAX_IMAGE_CHARS} characters)"
        )
    pull = value.get("imagePullPolicy") or "IfNotPresent"
    if pull not in PULL_POLICIES:
        raise SpecError(f"{field}.imagePullPolicy {_show(pull)} must be one of {', '.join(PULL_POLICIES)}")
    config_section = _section(value.get("flinkConfiguration"), f"{field}.flinkConfiguration")
    if len(config_section) > MAX_CONFIG_ENTRIES:
        raise SpecError(f"{field}.flinkConfiguration has {len(config_section)} entries; at most {MAX_CONFIG_ENTRIES}")
    total = 0
    pairs = []
    for key, entry in config_section.items():
        if not isinstance(key, str) or len(key) > MAX_CONFIG_KEY_CHARS or not CONFIG_KEY_RE.match(key):
            raise SpecError(
                f"{field}.flinkConfiguration key {_show(key)} is not a Flink option name "
                f"(letters, digits, '.', '_', '-'; at most {MAX_CONFIG_KEY_CHARS} characters)"
            )
        if key in RESERVED_CONFIG:
            raise SpecError(f"{field}.flinkConfiguration sets {key}, which the operator sets: {RESERVED_CONFIG[key]}")
        if not isinstance(entry, str):
            raise SpecError(f"{field}.flinkConfiguration.{key} {_show(entry)} must be a string (quote it in YAML)")
        if len(entry) > MAX_CONFIG_VALUE_CHARS or any(ord(c) < 32 and c not in "\t" for c in entry):
            raise SpecError(
                f"{field}.flinkConfiguration.{key} is longer than {MAX_CONFIG_VALUE_CHARS} characters "
                "or holds control characters"
            )
        total += len(key) + len(entry)
        pairs.append((key, entry))
    if total > MAX_CONFIG_TOTAL_CHARS:
        raise SpecError(f"{field}.flinkConfiguration holds {total} characters; at most {MAX_CONFIG_TOTAL_CHARS}")
    jobmanager = _section(value.get("jobManager"), f"{field}.jobManager")
    replicas = jobmanager.get("replicas", 1)
    if replicas != 1 or isinstance(replicas, bool):
        raise SpecError(
            f"{field}.jobManager.replicas {_show(replicas)} must be 1 (one JobManager; standby JobManagers "
            "are not supported yet)"
        )
    taskmanager = _section(value.get("taskManager"), f"{field}.taskManager")
    slots = taskmanager.get("slots", 1)
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= MAX_SLOTS:
        raise SpecError(f"{field}.taskManager.slots {_show(slots)} must be an integer from 1 to {MAX_SLOTS}")
    account = value.get("serviceAccount")
    if account is not None and not (
        isinstance(account, str) and len(account) <= 253 and DNS_SUBDOMAIN_RE.match(account)
    ):
        raise SpecError(f"{field}.serviceAccount {_show(account)} is not a ServiceAccount name")
    template = value.get("podTemplate")
    template_json = None
    if template is not None:
        if not isinstance(template, Mapping):
            raise SpecError(f"{field}.podTemplate must be an object (a pod template: metadata, spec)")
        try:
            template_json = json.dumps(template, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            raise SpecError(f"{field}.podTemplate must be plain JSON") from None
        if len(template_json) > MAX_POD_TEMPLATE_CHARS:
            raise SpecError(f"{field}.podTemplate is {len(template_json)} characters; at most {MAX_POD_TEMPLATE_CHARS}")
        _check_pod_template(template, f"{field}.podTemplate")
    return AppCluster(
        image=image,
        image_pull_policy=str(pull),
        flink_configuration=tuple(sorted(pairs)),
        jobmanager=_resources(jobmanager.get("resources"), f"{field}.jobManager.resources", Resources("1", "1600Mi")),
        taskmanager=_resources(
            taskmanager.get("resources"), f"{field}.taskManager.resources", Resources("1", "1728Mi")
        ),
        slots=slots,
        service_account=account,
        pod_template_json=template_json if template else None,
    )


def _check_pod_template(template: Mapping[str, Any], field: str) -> None:
    """The shapes the merge into the operator's pod specs relies on (the apiserver checks the rest)."""
    unknown = set(template) - {"metadata", "spec", "apiVersion", "kind"}
    if unknown:
        raise SpecError(f"{field} has {', '.join(sorted(map(str, unknown)))}; a pod template holds metadata and spec")
    metadata = _section(template.get("metadata"), f"{field}.metadata")
    for key in ("labels", "annotations"):
        entries = _section(metadata.get(key), f"{field}.metadata.{key}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
            raise SpecError(f"{field}.metadata.{key} must map strings to strings")
    pod_spec = _section(template.get("spec"), f"{field}.spec")
    for key in ("containers", "initContainers", "volumes"):
        items = pod_spec.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(i, Mapping) and isinstance(i.get("name"), str) and i["name"] for i in items
        ):
            raise SpecError(f"{field}.spec.{key} must be a list of objects, each with a name")
