"""The FlinkJob status as plain values: the write-ahead log of deploys and upgrades.

`Upgrade` is written before every side effect (with the trigger id or job id it will use),
so that an operator restarted at any point can tell what was done and finish it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flinkop.spec import Deployment

# Upgrade kinds
DEPLOY = "deploy"  # first start, or a start after the job ended (from the last savepoint, if any)
UPGRADE = "upgrade"  # savepoint (or stateless cancel), then start the new spec
ROLLBACK = "rollback"  # restart the last stable spec from the upgrade's savepoint
DELETE = "delete"  # final savepoint before the resource goes away
SUSPEND = "suspend"  # stop with a savepoint and stay stopped (spec.state: suspended)
SAVEPOINT = "savepoint"  # a savepoint that keeps the job running (manual or periodic)
RESCALE = "rescale"  # in-place rescale through the adaptive scheduler: same job, new parallelism

# Upgrade steps
SAVEPOINTING = "Savepointing"  # stop/cancel with savepoint triggered (triggerId)
CANCELLING = "Cancelling"  # stateless: cancel without a savepoint
SUBMITTING = "Submitting"  # start newJobId (from savepointPath, if any)
STARTING = "Starting"  # newJobId submitted: wait until every vertex runs
RESCALING = "Rescaling"  # new resource requirements set: wait until every vertex runs at the target



def spec_patch(deployment: Deployment) -> dict[str, Any]:
    """A deployment as the status writes it: with `cluster` null on a session cluster. Its fingerprint
    leaves the key out (session fingerprints stay as they were), but the status is written as a merge
    patch, which would keep the `cluster` of an application-mode spec written before (a move between
    modes) where the key is absent."""
    return {"cluster": None, **deployment.to_dict()}

@dataclass(frozen=True)
class Savepoint:
    path: str
    time: str  # when it completed (as the operator saw it)
    reason: str
    triggered_at: str | None = None  # when it was triggered: periodic savepoints are counted from this

    def to_dict(self) -> dict[str, Any]:
        d = {"path": self.path, "time": self.time, "reason": self.reason}
        if self.triggered_at:
            d["triggeredAt"] = self.triggered_at
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Savepoint:
        triggered = d.get("triggeredAt")
        return cls(
            path=str(d["path"]),
            time=str(d.get("time", "")),
            reason=str(d.get("reason", "")),
            triggered_at=str(triggered) if triggered else None,
        )


@dataclass(frozen=True)
class Upgrade:
    kind: str
    step: str
    target: Deployment
    started_at: str
    step_started_at: str
    source: Deployment | None = None  # the spec whose job (or savepoint) it starts from
    from_job_id: str | None = None
    trigger_id: str | None = None
    savepoint_directory: str | None = None
    savepoint_path: str | None = None
    new_job_id: str | None = None
    allow_non_restored_state: bool = False
    attempts: int = 0
    retry_at: str | None = None
    last_error: str | None = None
    restore_failure: str | None = None  # why a rollback is happening
    reason: str | None = None  # SAVEPOINT: manual | periodic
    nonce: int | None = None  # SAVEPOINT (manual): the spec.savepointNonce it answers
    # UPGRADE: the cluster jar id of the target, known when the savepoint was triggered; the pass
    # that sees the savepoint complete submits with it instead of listing the cluster's jars again.
    target_jar_id: str | None = None
    # When the savepoint in flight was triggered, to the millisecond (SAVEPOINT and SUSPEND kinds, and
    # any retry): the savepoint's `triggeredAt`, from which periodic savepoints are counted.
    triggered_at: str | None = None
    # The start failed the stability gate (why): its job is cancelled first, then the restore failure
    # policy applies. ROLLBACK: `reason` is the Stalled reason of the failure it answers.
    unstable: str | None = None

    @classmethod
    def begin(cls, kind: str, step: str, target: Deployment, now: str, **fields: Any) -> Upgrade:
        """A new record whose first step starts now."""
        return cls(kind=kind, step=step, target=target, started_at=now, step_started_at=now, **fields)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "step": self.step,
            "targetSpec": spec_patch(self.target),
            "startedAt": self.started_at,
            "stepStartedAt": self.step_started_at,
            "sourceSpec": spec_patch(self.source) if self.source else None,
            "fromJobId": self.from_job_id,
            "triggerId": self.trigger_id,
            "savepointDirectory": self.savepoint_directory,
            "savepointPath": self.savepoint_path,
            "newJobId": self.new_job_id,
            "allowNonRestoredState": self.allow_non_restored_state,
            "attempts": self.attempts,
            "retryAt": self.retry_at,
            "lastError": self.last_error,
            "restoreFailure": self.restore_failure,
            "reason": self.reason,
            "nonce": self.nonce,
            "triggeredAt": self.triggered_at,
        }
        # Always present, null when unset: a status patch is a merge patch, and a key left out
        # would keep the value of the upgrade recorded before this one.
        d["targetJarId"] = self.target_jar_id
        d["unstable"] = self.unstable
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Upgrade:
        return cls(
            kind=str(d["kind"]),
            step=str(d["step"]),
            target=Deployment.from_dict(d["targetSpec"]),
            started_at=str(d.get("startedAt", "")),
            step_started_at=str(d.get("stepStartedAt") or d.get("startedAt", "")),
            source=Deployment.from_dict(d["sourceSpec"]) if d.get("sourceSpec") else None,
            from_job_id=d.get("fromJobId"),
            trigger_id=d.get("triggerId"),
            savepoint_directory=d.get("savepointDirectory"),
            savepoint_path=d.get("savepointPath"),
            new_job_id=d.get("newJobId"),
            allow_non_restored_state=bool(d.get("allowNonRestoredState", False)),
            attempts=int(d.get("attempts", 0)),
            retry_at=d.get("retryAt"),
            last_error=d.get("lastError"),
            restore_failure=d.get("restoreFailure"),
            reason=d.get("reason"),
            nonce=d.get("nonce"),
            target_jar_id=d.get("targetJarId"),
            unstable=d.get("unstable"),
            triggered_at=d.get("triggeredAt"),
        )


@dataclass(frozen=True)
class Disposal:
    """A savepoint being disposed of: recorded before the request, its trigger id after it."""

    path: str
    started_at: str
    trigger_id: str | None = None
    attempts: int = 0
    retry_at: str | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "startedAt": self.started_at,
            "triggerId": self.trigger_id,
            "attempts": self.attempts,
            "retryAt": self.retry_at,
            "lastError": self.last_error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Disposal:
        return cls(
            path=str(d["path"]),
            started_at=str(d.get("startedAt", "")),
            trigger_id=d.get("triggerId"),
            attempts=int(d.get("attempts", 0)),
            retry_at=d.get("retryAt"),
            last_error=d.get("lastError"),
        )


@dataclass(frozen=True)
class Failure:
    """Why the spec with `fingerprint` is not being acted on until a person changes something."""

    reason: str
    message: str
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Failure:
        return cls(reason=str(d["reason"]), message=str(d.get("message", "")), fingerprint=d.get("fingerprint"))


@dataclass(frozen=True)
class Status:
    phase: str = "Pending"
    job_id: str | None = None
    job_state: str | None = None
    parallelism: int | None = None
    deployed: Deployment | None = None  # the spec job_id runs
    last_stable: Deployment | None = None
    last_savepoint: Savepoint | None = None
    savepoint_history: tuple[Savepoint, ...] = ()
    upgrade: Upgrade | None = None
    failure: Failure | None = None
    jar_id: str | None = None  # the Flink jar id that job_id was started from
    savepoint_nonce: int | None = None  # the last spec.savepointNonce answered
    disposal: Disposal | None = None
    selector: str | None = None  # the scale subresource's label selector
    last_rescale_at: str | None = None  # when the last rescale started (minRescaleIntervalSeconds)
    rescale_pending_until: str | None = None  # a rescale waits for minRescaleIntervalSeconds until then
    cluster_readiness: str | None = None  # application mode: the cluster's pods (AppView.readiness)
    started_from: str | None = None  # the savepoint job_id was started from (None: without state)
    # When Flink last started job_id (its start-time): a later one for the same job id is a new
    # JobMaster (a JobManager that restarted), which in application mode without HA restores started_from.
    job_start_time: str | None = None
    message: str = ""
    conditions: tuple[Mapping[str, Any], ...] = field(default=())
    observed_generation: int | None = None

    def with_savepoint(self, savepoint: Savepoint) -> Status:
        """Records a completed savepoint as the last one and at the head of the history."""
        history = (savepoint, *(s for s in self.savepoint_history if s.path != savepoint.path))
        return replace(self, last_savepoint=savepoint, savepoint_history=history)

    def without_savepoint(self, path: str) -> Status:
        """Drops a disposed savepoint from the history."""
        return replace(self, savepoint_history=tuple(s for s in self.savepoint_history if s.path != path))

    def to_dict(self) -> dict[str, Any]:
        """The whole status as a merge patch: absent values are written as None (deleted)."""
        return {
            "phase": self.phase,
            "jobId": self.job_id,
            "jobState": self.job_state,
            "parallelism": self.parallelism,
            "deployedSpec": spec_patch(self.deployed) if self.deployed else None,
            "deployedSpecFingerprint": self.deployed.fingerprint if self.deployed else None,
            "lastStableSpec": spec_patch(self.last_stable) if self.last_stable else None,
            # triggeredAt always present (null when unknown): a merge patch would keep an older one.
            "lastSavepoint": {"triggeredAt": None, **self.last_savepoint.to_dict()} if self.last_savepoint else None,
            "savepointHistory": [s.to_dict() for s in self.savepoint_history],
            "upgrade": self.upgrade.to_dict() if self.upgrade else None,
            "failure": self.failure.to_dict() if self.failure else None,
            "jarId": self.jar_id,
            "savepointNonce": self.savepoint_nonce,
            "disposal": self.disposal.to_dict() if self.disposal else None,
            "selector": self.selector,
            "lastRescaleAt": self.last_rescale_at,
            "rescalePendingUntil": self.rescale_pending_until,
            "clusterReadiness": self.cluster_readiness,
            "startedFrom": self.started_from,
            "jobStartTime": self.job_start_time,
            "message": self.message,
            "conditions": [dict(c) for c in self.conditions],
            "observedGeneration": self.observed_generation,
        }

    def to_patch(self) -> dict[str, Any]:
        """`to_dict` as sent to the apiserver: the kubernetes client sends "" as null, which the
        schema refuses for strings, so empty strings are left out (null removes the field)."""
        patch: dict[str, Any] = _without_empty_strings(self.to_dict())
        return patch

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Status:
        d = d or {}
        return cls(
            phase=str(d.get("phase") or "Pending"),
            job_id=d.get("jobId"),
            job_state=d.get("jobState"),
            parallelism=d.get("parallelism"),
            deployed=Deployment.from_dict(d["deployedSpec"]) if d.get("deployedSpec") else None,
            last_stable=Deployment.from_dict(d["lastStableSpec"]) if d.get("lastStableSpec") else None,
            last_savepoint=Savepoint.from_dict(d["lastSavepoint"]) if d.get("lastSavepoint") else None,
            savepoint_history=tuple(Savepoint.from_dict(s) for s in d.get("savepointHistory") or ()),
            upgrade=Upgrade.from_dict(d["upgrade"]) if d.get("upgrade") else None,
            failure=Failure.from_dict(d["failure"]) if d.get("failure") else None,
            jar_id=d.get("jarId"),
            savepoint_nonce=d.get("savepointNonce"),
            disposal=Disposal.from_dict(d["disposal"]) if d.get("disposal") else None,
            selector=d.get("selector"),
            last_rescale_at=d.get("lastRescaleAt"),
            rescale_pending_until=d.get("rescalePendingUntil"),
            cluster_readiness=d.get("clusterReadiness"),
            started_from=d.get("startedFrom"),
            job_start_time=d.get("jobStartTime"),
            message=str(d.get("message") or ""),
            conditions=tuple(d.get("conditions") or ()),
            observed_generation=d.get("observedGeneration"),
        )


def _without_empty_strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (None if v == "" else _without_empty_strings(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [
            {k: _without_empty_strings(v) for k, v in item.items() if v != ""} if isinstance(item, dict) else item
            for item in value
        ]
    return value
