"""What one reconcile pass saw of Flink and of the job's jar, as a plain value for the planner."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from flinkop.actions import Action, UploadJar
from flinkop.flink_client import JobInfo, LatestSavepoint, SavepointOperation, StartProgress
from flinkop.spec import Deployment


@dataclass(frozen=True)
class JarCheck:
    """The jar of the deployment that the next submission would use."""

    uri: str
    sha256: str | None = None  # digest of the fetched file, when it could be fetched
    local_path: Path | None = None
    cluster_jar_id: str | None = None  # an uploaded jar with that digest, when there is one
    error_reason: str | None = None  # JarFetchFailed | JarDigestMismatch | NotAJar
    error: str | None = None
    expected_sha256: str | None = None  # the digest the deployment asked for, if any

    def covers(self, target: Deployment) -> bool:
        """Whether this check is of `target`'s jar (same location, same expected digest)."""
        return self.uri == target.jar_uri and (self.expected_sha256 or "").lower() == (target.jar_sha256 or "").lower()


@dataclass(frozen=True)
class JobView:
    """A Flink job as seen: `info` is None when Flink does not know the job (404)."""

    job_id: str
    info: JobInfo | None
    failure: str | None = None  # root exception, read when the job is FAILED

    @property
    def missing(self) -> bool:
        return self.info is None

    @property
    def active(self) -> bool:
        return self.info is not None and not self.info.terminal

    @property
    def state(self) -> str:
        return self.info.state if self.info else "MISSING"


@dataclass(frozen=True)
class AppView:
    """Application mode: the FlinkJob's own cluster as the Kubernetes API shows it."""

    job_id: str | None  # the job its JobManager Deployment runs (its label); None: no cluster
    readiness: str = ""  # "JobManager 1/1 ready, TaskManagers 2/2 ready" and why a pod cannot start
    problem: str | None = None  # the first reason a pod cannot start (image missing, unschedulable, crash loop)
    answering: bool = False  # its JobManager's REST API answered this pass

    @property
    def starting(self) -> bool:
        """A cluster is there but its JobManager does not answer yet: nothing is known of its job."""
        return self.job_id is not None and not self.answering


# Application mode's jar: the pods load it themselves (local:// from the image, or http(s)://, fetched and
# checked by the operator first); nothing is uploaded, and this stands for "ready to start".
APP_JAR_ID = "application-cluster"


@dataclass(frozen=True)
class Observation:
    flink_error: str | None = None  # Flink could not be reached: nothing else is known
    credentials_error: str | None = None  # the Secrets the spec names could not be used: Flink was not asked
    # (Stalled reason, message) when the operator's policy forbids the spec's cluster, savepoint path or
    # network (cluster_access.refusal): Flink was not asked
    refusal: tuple[str, str] | None = None
    cluster_savepoint_dir: str | None = None
    cluster_scheduler: str | None = None  # jobmanager.scheduler: "adaptive" allows in-place rescaling
    cluster_ha: bool = False  # the cluster runs with high availability: its JobManager recovers its jobs
    job: JobView | None = None  # status.jobId's job (or the job an upgrade started from)
    new_job: JobView | None = None  # the job an upgrade in flight submits
    savepoint: SavepointOperation | None = None  # the upgrade's savepoint trigger
    latest_savepoint: LatestSavepoint | None = None  # fallback when the trigger is forgotten
    jar: JarCheck | None = None
    disposal: SavepointOperation | None = None  # status.disposal's operation
    resource_requirements: dict[str, int] | None = None  # per-vertex upper bounds, during an in-place rescale
    # When a start from a savepoint failed because state could not be mapped: which operators (by uid
    # and name, read from the savepoint's _metadata) lost their state, and what to do.
    restore_diagnosis: str | None = None
    # The stability gate's reads of the job an upgrade (or deploy, resume, rollback) starts.
    new_job_progress: StartProgress | None = None
    app: AppView | None = None  # application mode: the job's own cluster


def after_action(obs: Observation, action: Action, result: str | None) -> Observation | None:
    """What the observation is once `action` succeeded, when the action's effect is known in full
    (an upload: the jar is on the cluster under `result`); None when Flink must be read again."""
    if isinstance(action, UploadJar) and result and obs.jar is not None and obs.jar.sha256 == action.sha256:
        return replace(obs, jar=replace(obs.jar, cluster_jar_id=result))
    return None
