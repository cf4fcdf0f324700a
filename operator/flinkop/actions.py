"""The side effects a reconcile pass can take: at most one per pass, chosen by the planner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flinkop.spec import Deployment


@dataclass(frozen=True)
class UploadJar:
    local_path: Path
    sha256: str
    uri: str

    def describe(self) -> str:
        return f"upload jar {self.uri} (sha256 {self.sha256[:12]})"


@dataclass(frozen=True)
class TriggerSavepoint:
    """Stop (`flink stop`) or cancel (`flink cancel -s`) the job with a savepoint, or take one and
    keep it running (`flink savepoint`), using our own trigger id so a repeat is harmless."""

    job_id: str
    trigger_id: str
    directory: str
    mode: str  # stop | cancel | keep
    drain: bool = False

    def describe(self) -> str:
        verb = {"stop": "stop", "cancel": "cancel", "keep": "savepoint"}[self.mode]
        return f"{verb} job {self.job_id} with a savepoint into {self.directory} (trigger {self.trigger_id})"


@dataclass(frozen=True)
class CancelJob:
    job_id: str

    def describe(self) -> str:
        return f"cancel job {self.job_id} without a savepoint"


@dataclass(frozen=True)
class SubmitJob:
    jar_id: str
    job_id: str
    deployment: Deployment
    savepoint_path: str | None
    allow_non_restored_state: bool

    def describe(self) -> str:
        source = f"from savepoint {self.savepoint_path}" if self.savepoint_path else "without state"
        flag = " with allowNonRestoredState" if self.allow_non_restored_state else ""
        where = " on its own application cluster" if self.deployment.cluster is not None else ""
        return f"start job {self.job_id} at parallelism {self.deployment.parallelism}{where} {source}{flag}"


@dataclass(frozen=True)
class DeleteJar:
    jar_id: str

    def describe(self) -> str:
        return f"delete jar {self.jar_id} from the cluster"


@dataclass(frozen=True)
class DisposeSavepoint:
    path: str

    def describe(self) -> str:
        return f"dispose of savepoint {self.path}"


@dataclass(frozen=True)
class RescaleInPlace:
    job_id: str
    upper_bounds: tuple[tuple[str, int], ...]  # (vertex id, parallelism)
    taskmanagers: int | None = None  # application mode: the TaskManagers its own cluster is set to first

    def describe(self) -> str:
        parallelism = max((n for _, n in self.upper_bounds), default=0)
        pods = f" with {self.taskmanagers} TaskManagers" if self.taskmanagers is not None else ""
        return f"rescale job {self.job_id} in place to parallelism {parallelism}{pods} (adaptive scheduler)"


@dataclass(frozen=True)
class DeleteCluster:
    """Application mode: remove the job's own cluster (its JobManager, TaskManagers, Service and
    ConfigMap) once the job ended with a savepoint that is recorded (a suspend)."""

    job_id: str | None

    def describe(self) -> str:
        return f"remove the application cluster of job {self.job_id}"


Action = (
    RescaleInPlace
    | UploadJar
    | TriggerSavepoint
    | CancelJob
    | SubmitJob
    | DeleteJar
    | DisposeSavepoint
    | DeleteCluster
)
