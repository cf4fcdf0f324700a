"""The planner: a pure function from (spec, status, observation) to the next step.

It decides the status to record (the write-ahead log: any trigger or job id the action will use
is in it) and at most one side effect to take after that status is written. It never performs
I/O, reads no clock and makes no random ids: `now` and `fresh_id` come in with the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from flinkop import retention
from flinkop import status as st
from flinkop.actions import (
    Action,
    CancelJob,
    DeleteJar,
    DisposeSavepoint,
    RescaleInPlace,
    SubmitJob,
    TriggerSavepoint,
    UploadJar,
)
from flinkop.conditions import derive_conditions
from flinkop.observation import JarCheck, Observation
from flinkop.spec import Deployment, FlinkJobSpec, SpecError
from flinkop.status import Disposal, Failure, Savepoint, Status, Upgrade
from flinkop.times import format_time, parse_time

NEEDS_A_PERSON = frozenset({"RestoreFailed", "DeployFailed", "JobTerminated"})
POLL_FAST = 0.5  # while a step is about to complete (old job finishing, new job starting)
POLL_STOPPING = 0.1  # the first seconds of a stop-with-savepoint, when most small savepoints complete
STOPPING_CLOSELY_SECONDS = 2.0
POLL_SAVEPOINT = 0.25  # later on while it runs: a stopping job processes nothing once it completes
POLL = 1.0  # while Flink works on a savepoint or a job start
SLOT_POLL = 2.0  # while an upgrade waits for a free slot
BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class PlanInput:
    spec: FlinkJobSpec | SpecError
    status: Status
    observation: Observation
    now: datetime
    fresh_id: str  # a new 32-hex id, used when the step needs a new trigger or job id
    generation: int
    deleting: bool = False
    delete_deadline: datetime | None = None  # after it, deletion gives up on a savepoint
    name: str = ""  # the resource's name, for the scale subresource's default selector
    # False when the operator already runs its maximum of upgrades at once (FLINKOP_MAX_CONCURRENT_UPGRADES):
    # a new upgrade or rescale then waits; one in flight always goes on.
    upgrade_slot_free: bool = True
    # Cluster jar ids other FlinkJobs on this cluster run from: an old jar among them is not deleted.
    jars_used_elsewhere: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    status: Status  # recorded before the action
    action: Action | None = None
    requeue_after: float | None = None  # come back after this many seconds; None: idle
    events: tuple[Event, ...] = ()
    done_deleting: bool = False  # deletion may release the resource


@dataclass
class _Draft:
    """Accumulates one decision; `finish` derives conditions and observedGeneration."""

    inp: PlanInput
    status: Status
    events: list[Event] = field(default_factory=list)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def finish(
        self,
        *,
        action: Action | None = None,
        requeue: float | None = None,
        done_deleting: bool = False,
    ) -> Decision:
        spec = self.inp.spec
        desired = spec.deployment.fingerprint if isinstance(spec, FlinkJobSpec) else None
        selector = (
            (spec.scale_selector or f"flinkop.io/flinkjob={self.inp.name}")
            if isinstance(spec, FlinkJobSpec)
            else self.status.selector
        )
        final = replace(
            self.status,
            selector=selector,
            observed_generation=self.inp.generation,
            conditions=derive_conditions(
                self.status,
                desired,
                self.inp.generation,
                self.inp.now,
                suspended=isinstance(spec, FlinkJobSpec) and spec.state == "suspended",
            ),
        )
        return Decision(final, action, requeue, tuple(self.events), done_deleting)


def plan(inp: PlanInput) -> Decision:
    d = _Draft(inp, inp.status)
    spec = inp.spec
    if inp.deleting and _past_delete_deadline(inp):
        if isinstance(spec, SpecError):
            return _delete_given_up(d, f"the spec is invalid ({spec})")
        if inp.observation.flink_error is not None:
            return _delete_given_up(d, f"Flink is unreachable ({inp.observation.flink_error})")
        if inp.observation.credentials_error is not None:
            return _delete_given_up(d, f"no credentials for Flink ({inp.observation.credentials_error})")
        if inp.observation.refusal is not None:
            return _delete_given_up(d, inp.observation.refusal[1])
    if isinstance(spec, SpecError):
        if inp.deleting and d.status.job_id is None and d.status.upgrade is None:
            d.event("Deleted", "No job was ever started for this FlinkJob (its spec is invalid); nothing to stop.")
            return d.finish(done_deleting=True)
        return _stall(d, "InvalidSpec", f"The spec is invalid: {spec}", None)
    obs = inp.observation
    if obs.refusal is not None:
        if inp.deleting and d.status.job_id is None and d.status.upgrade is None:
            d.event("Deleted", "No job was ever started for this FlinkJob; nothing to stop.")
            return d.finish(done_deleting=True)
        return _stall(d, obs.refusal[0], obs.refusal[1], None)
    if obs.credentials_error is not None:
        message = f"Cannot talk to Flink: {obs.credentials_error}. Nothing is changed until that is fixed."
        return _stall(d, "CredentialsUnavailable", message, None)
    if obs.flink_error is not None:
        return _flink_unreachable(d, spec, obs.flink_error)
    if inp.deleting:
        return _plan_delete(d, spec)
    if d.status.upgrade is not None:
        return _continue_upgrade(d, spec, d.status.upgrade)
    return _plan_steady(d, spec)


# -- helpers ---------------------------------------------------------------------------------


def _past_delete_deadline(inp: PlanInput) -> bool:
    return inp.delete_deadline is not None and _naive(inp.now) >= _naive(inp.delete_deadline)


def _delete_given_up(d: _Draft, why: str) -> Decision:
    """Deletion past its deadline when nothing can be done: release the resource, say what was left."""
    job = d.status.job_id
    left = f"job {job} may still run on the cluster" if job else "no job was recorded"
    message = f"Gave up on a final savepoint after the deletion timeout: {why}; {left}."
    d.event("DeleteGaveUp", message, warning=True)
    d.status = replace(d.status, upgrade=None, message=message)
    return d.finish(done_deleting=True)


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


def _epoch_ms(t: datetime) -> float:
    return (_naive(t) - datetime(1970, 1, 1)).total_seconds() * 1000


def _retry_time(now: datetime, attempts: int) -> datetime:
    """When attempt `attempts + 1` of a failed operation is due."""
    return _naive(now) + timedelta(seconds=backoff_seconds(attempts))


def backoff_seconds(attempts: int) -> float:
    return float(min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX))


def _stall(d: _Draft, reason: str, message: str, fingerprint: str | None, phase: str | None = None) -> Decision:
    new_failure = Failure(reason, message, fingerprint)
    if d.status.failure != new_failure:
        d.event(reason, message, warning=True)
    d.status = replace(d.status, failure=new_failure, message=message, phase=phase or d.status.phase)
    return d.finish()


def _flink_unreachable(d: _Draft, spec: FlinkJobSpec, error: str) -> Decision:
    message = f"Flink at {spec.flink_rest_url} is unreachable ({error}); nothing is changed until it answers."
    if not d.status.message.startswith(f"Flink at {spec.flink_rest_url} is unreachable"):
        d.event("FlinkUnreachable", message, warning=True)
    d.status = replace(d.status, message=message)
    # The handler retries with its own backoff; no action is taken on a guess.
    return d.finish(requeue=BACKOFF_BASE)


def _jar_ready(d: _Draft, target: Deployment, jar: JarCheck | None) -> tuple[str | None, Decision | None]:
    """The cluster jar id for `target`, or the decision to get there (upload, or stall on a bad jar)."""
    fp = target.fingerprint
    if jar is None or jar.uri != target.jar_uri:
        return None, d.finish(requeue=POLL_FAST)  # observation did not cover this jar yet
    if jar.error is not None:
        return None, _stall(d, jar.error_reason or "JarFetchFailed", jar.error, fp)
    if jar.cluster_jar_id:
        return jar.cluster_jar_id, None
    assert jar.local_path is not None and jar.sha256 is not None
    action = UploadJar(jar.local_path, jar.sha256, jar.uri)
    d.status = replace(d.status, message=f"Uploading jar {jar.uri} to {d_spec(d).flink_rest_url}.")
    d.event("UploadingJar", action.describe())
    return None, d.finish(action=action, requeue=POLL_FAST)


def d_spec(d: _Draft) -> FlinkJobSpec:
    assert isinstance(d.inp.spec, FlinkJobSpec)
    return d.inp.spec


def _savepoint_directory(spec: FlinkJobSpec, obs: Observation) -> str | None:
    return spec.savepoint_directory or obs.cluster_savepoint_dir


def _no_directory_message() -> str:
    return (
        "No savepoint directory: set spec.savepointDirectory or the cluster's state.savepoints.dir "
        "(execution.checkpointing.savepoint-dir in Flink 2); "
        "the running job was not touched."
    )


# -- steady state ----------------------------------------------------------------------------


def _plan_steady(d: _Draft, spec: FlinkJobSpec) -> Decision:
    s = d.status
    obs = d.inp.observation
    desired = spec.deployment
    fp = desired.fingerprint
    job = obs.job
    # Failures that need a person block the spec they failed for; the others (no savepoint
    # directory, a jar that cannot be fetched) are looked at again on every pass.
    blocked = s.failure is not None and s.failure.reason in NEEDS_A_PERSON and s.failure.fingerprint in (None, fp)

    if s.job_id is None and s.deployed is None:
        if spec.state == "suspended":
            d.status = replace(s, phase="Suspended", message="Suspended before its first start: nothing runs.")
            return d.finish()
        if blocked:
            return d.finish()
        return _start_deploy(d, spec, spec.initial_savepoint_path, None)

    if job is None or not job.active:
        state = job.state if job else "MISSING"
        d.status = replace(s, job_state=state)
        if spec.state == "suspended":
            resume_from = s.last_savepoint.path if s.last_savepoint else "none"
            if s.phase != "Suspended":
                d.event("Suspended", f"Suspended; the job is {state}; it will resume from savepoint {resume_from}.")
            d.status = replace(
                d.status,
                phase="Suspended",
                failure=None,
                message=f"Suspended; resumes from savepoint {resume_from} when spec.state is running again.",
            )
            return _retention_step(d, spec) or d.finish()
        if s.phase == "Suspended":
            restore = s.last_savepoint.path if s.last_savepoint else None
            d.event("Resuming", f"Resuming from savepoint {restore} with the current spec.")
            return _start_deploy(d, spec, restore, s.last_stable or s.deployed)
        if blocked:
            d.status = replace(d.status, phase="Failed")
            return d.finish()
        if s.deployed is not None and s.deployed.fingerprint == fp:
            # The job ended although nobody asked for it: report, never resubmit it silently.
            last = s.last_savepoint.path if s.last_savepoint else None
            restart = (
                f"change the spec or set spec.restartNonce to start it again from savepoint {last}"
                if last
                else "no savepoint is recorded, so a restart would start without state; change the spec "
                "or set spec.restartNonce to start it anyway"
            )
            cause = f" ({job.failure})" if job and job.failure else ""
            message = f"Job {s.job_id} is {state} outside the operator{cause}; it was not resubmitted: {restart}."
            return _stall(d, "JobTerminated", message, fp, phase="Failed")
        # The spec changed since the job ended: start it from the last savepoint.
        path = s.last_savepoint.path if s.last_savepoint else None
        return _start_deploy(d, spec, path, s.last_stable or s.deployed)

    info = job.info
    assert info is not None
    d.status = replace(s, job_state=info.state, parallelism=info.parallelism or s.parallelism)
    if s.deployed is not None and s.deployed.fingerprint == fp:
        if info.all_vertices_running:
            stable_changed = s.last_stable != desired
            failure = s.failure if blocked else None
            d.status = replace(
                d.status,
                phase="Running",
                last_stable=desired,
                failure=failure,
                rescale_pending_until=None,
                message=d.status.message if failure else f"Job {s.job_id} is running.",
            )
            if stable_changed or s.phase != "Running":
                d.event("Running", f"Job {s.job_id} runs every vertex at parallelism {d.status.parallelism}.")
            return _savepoint_work(d, spec, info.start_time_ms)
        d.status = replace(
            d.status, phase="Deploying", message=f"Job {s.job_id} is {info.state}; waiting for every vertex to run."
        )
        return d.finish(requeue=POLL)
    if spec.state == "suspended" and info.state == "RUNNING":
        return _start_savepoint_op(d, spec, st.SUSPEND)  # a spec change is applied at resume
    if blocked:
        d.status = replace(d.status, phase="Running" if info.all_vertices_running else d.status.phase)
        return d.finish()
    if s.deployed is not None and desired.only_parallelism_differs(s.deployed):
        return _start_rescale(d, spec)
    return _start_upgrade(d, spec)


def _start_rescale(d: _Draft, spec: FlinkJobSpec) -> Decision:
    """A parallelism-only change: at most one per minRescaleIntervalSeconds (the newest value wins),
    in place when the cluster runs the adaptive scheduler, else through a savepoint."""
    s = d.status
    now = _naive(d.inp.now)
    target = spec.deployment.parallelism
    last = parse_time(s.last_rescale_at)
    if last is not None:
        due = last + timedelta(seconds=spec.min_rescale_interval_seconds)
        if now < due:
            message = (
                f"Rescale to parallelism {target} pending: at most one rescale per "
                f"minRescaleIntervalSeconds ({spec.min_rescale_interval_seconds} s); it runs at {format_time(due)}."
            )
            if s.rescale_pending_until != format_time(due):
                d.event("RescalePending", message)
            d.status = replace(s, rescale_pending_until=format_time(due), message=message)
            return d.finish(requeue=(due - now).total_seconds())
    d.status = replace(s, rescale_pending_until=None)
    if not d.inp.upgrade_slot_free:
        return _wait_for_upgrade_slot(d, f"Rescale to parallelism {target}")
    adaptive = d.inp.observation.cluster_scheduler == "adaptive"
    if spec.rescale_mode != "Savepoint" and adaptive:
        return _rescale_started(_start_in_place(d, spec), now)
    if spec.rescale_mode == "InPlace":
        message = (
            "spec.rescaleMode is InPlace but the cluster does not run the adaptive scheduler "
            "(jobmanager.scheduler: adaptive); use Auto or Savepoint, or enable it. The job was not touched."
        )
        return _stall(d, "InPlaceRescaleUnsupported", message, spec.deployment.fingerprint)
    return _rescale_started(_start_upgrade(d, spec), now)


def _rescale_started(decision: Decision, now: datetime) -> Decision:
    """Counts a rescale for minRescaleIntervalSeconds once it really touches the job."""
    if isinstance(decision.action, (TriggerSavepoint, CancelJob, RescaleInPlace)):
        return replace(decision, status=replace(decision.status, last_rescale_at=format_time(now)))
    return decision


def _start_in_place(d: _Draft, spec: FlinkJobSpec) -> Decision:
    s = d.status
    job = d.inp.observation.job
    assert s.job_id is not None and job is not None and job.info is not None
    now = format_time(d.inp.now)
    target = spec.deployment
    up = Upgrade.begin(
        st.RESCALE,
        st.RESCALING,
        target,
        now,
        source=s.deployed,
        from_job_id=s.job_id,
    )
    action = RescaleInPlace(s.job_id, tuple((v.id, target.parallelism) for v in job.info.vertices))
    d.status = replace(s, phase="Upgrading", upgrade=up, failure=None, message=f"Rescaling: {action.describe()}.")
    d.event("Rescaling", action.describe())
    return d.finish(action=action, requeue=POLL)


def _rescaling(d: _Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    """An in-place rescale in flight: done once every vertex runs at the target parallelism."""
    job = d.inp.observation.job
    target = up.target.parallelism
    if job is None or job.info is None or job.info.terminal:
        state = job.state if job else "MISSING"
        message = f"Job {up.from_job_id} is {state} during an in-place rescale; it was not resubmitted."
        d.status = replace(d.status, upgrade=None, job_state=state)
        return _stall(d, "JobTerminated", message, spec.deployment.fingerprint, phase="Failed")
    info = job.info
    if info.all_vertices_running and all(v.parallelism == target for v in info.vertices):
        message = f"Job {up.from_job_id} rescaled in place to parallelism {target}."
        d.event("Rescaled", message)
        d.status = replace(
            d.status,
            phase="Running",
            upgrade=None,
            deployed=up.target,
            last_stable=up.target,
            parallelism=target,
            job_state=info.state,
            message=message,
        )
        return d.finish()
    started = parse_time(up.step_started_at) or _naive(d.inp.now)
    if (_naive(d.inp.now) - started).total_seconds() > spec.in_place_rescale_timeout_seconds:
        message = (
            f"Job {up.from_job_id} did not reach parallelism {target} in place within "
            f"inPlaceRescaleTimeoutSeconds ({spec.in_place_rescale_timeout_seconds} s)"
        )
        d.status = replace(d.status, upgrade=None)
        if spec.rescale_mode == "InPlace":
            return _stall(d, "InPlaceRescaleTimedOut", message + "; the job keeps running.", up.target.fingerprint)
        d.event("InPlaceRescaleTimedOut", message + "; rescaling through a savepoint instead.", warning=True)
        return _start_upgrade(d, spec)
    requirements = d.inp.observation.resource_requirements or {}
    if any(n != target for n in requirements.values()) or not requirements:
        action = RescaleInPlace(job.job_id, tuple((v.id, target) for v in info.vertices))
        return d.finish(action=action, requeue=POLL)  # never set (a crash before the call), or reset
    d.status = replace(
        d.status, job_state=info.state, message=f"Rescaling job {up.from_job_id} in place to parallelism {target}."
    )
    return d.finish(requeue=POLL)


def _savepoint_work(d: _Draft, spec: FlinkJobSpec, job_start_ms: int) -> Decision:
    """A running job at its spec: suspend, a manual or periodic savepoint, or retention."""
    s = d.status
    if spec.state == "suspended":
        return _start_savepoint_op(d, spec, st.SUSPEND)
    if spec.savepoint_nonce is not None and spec.savepoint_nonce != s.savepoint_nonce:
        return _start_savepoint_op(d, spec, st.SAVEPOINT, reason="manual", nonce=spec.savepoint_nonce)
    if s.disposal is not None:  # a disposal under way ends first, or periodic savepoints outrun it
        step = _retention_step(d, spec)
        if step is not None:
            return step
    if spec.savepoint_interval_seconds is not None:
        last = parse_time(s.last_savepoint.time) if s.last_savepoint else None
        since = max(
            (t for t in (last, datetime(1970, 1, 1) + timedelta(milliseconds=job_start_ms)) if t is not None),
        )
        if (_naive(d.inp.now) - since).total_seconds() >= spec.savepoint_interval_seconds:
            return _start_savepoint_op(d, spec, st.SAVEPOINT, reason="periodic")
    return _retention_step(d, spec) or d.finish()


def _start_savepoint_op(
    d: _Draft, spec: FlinkJobSpec, kind: str, reason: str | None = None, nonce: int | None = None
) -> Decision:
    """Suspend (stop or cancel with a savepoint, then stay stopped) or a savepoint that keeps the job running."""
    s = d.status
    assert s.job_id is not None and s.deployed is not None
    directory = _savepoint_directory(spec, d.inp.observation)
    if directory is None:
        return _stall(d, "NoSavepointDirectory", _no_directory_message(), spec.deployment.fingerprint)
    now = format_time(d.inp.now)
    up = Upgrade.begin(
        kind,
        st.SAVEPOINTING,
        s.deployed,
        now,
        source=s.deployed,
        from_job_id=s.job_id,
        trigger_id=d.inp.fresh_id,
        savepoint_directory=directory,
        reason=reason,
        nonce=nonce,
    )
    action = TriggerSavepoint(s.job_id, d.inp.fresh_id, directory, _mode_for(kind, spec), drain=_drain_for(kind, spec))
    verb = "Suspending" if kind == st.SUSPEND else f"Taking a {reason} savepoint"
    d.status = replace(s, upgrade=up, failure=None, message=f"{verb}: {action.describe()}.")
    d.event("Suspending" if kind == st.SUSPEND else "Savepointing", action.describe())
    return d.finish(action=action, requeue=_poll_after(action))


def _mode_for(kind: str, spec: FlinkJobSpec) -> str:
    if kind == st.SAVEPOINT:
        return "keep"
    if kind == st.DELETE:
        return "stop"
    return "cancel" if spec.savepoint_mode == "cancel" else "stop"


def _drain_for(kind: str, spec: FlinkJobSpec) -> bool:
    return kind in (st.UPGRADE, st.SUSPEND) and spec.drain and spec.savepoint_mode == "stop"


def _retention_step(d: _Draft, spec: FlinkJobSpec, candidates: list[str] | None = None) -> Decision | None:
    """One step of disposing of savepoints that fell out of the history; None when there is none.
    An entry leaves the history only once Flink disposed of it (or it was already gone)."""
    s = d.status
    now = _naive(d.inp.now)
    dis = s.disposal
    if candidates is None:
        candidates = retention.disposable(s, spec, now)
    if dis is None:
        if not candidates:
            return None
        dis = Disposal(path=candidates[0], started_at=format_time(now))
        d.status = replace(s, disposal=dis)  # the intent comes first; its trigger id after the call
        return d.finish(action=DisposeSavepoint(dis.path), requeue=POLL)
    op = d.inp.observation.disposal if dis.trigger_id else None
    if op is None or op.status == "UNKNOWN":
        retry_at = parse_time(dis.retry_at)
        if retry_at is not None and now < retry_at:
            return None
        if dis.path not in candidates and dis.path in retention.protected_paths(s, spec):
            d.status = replace(s, disposal=None)  # it became a restore point: keep it
            return d.finish(requeue=POLL_FAST)
        d.status = replace(s, disposal=replace(dis, trigger_id=None, retry_at=None))
        return d.finish(action=DisposeSavepoint(dis.path), requeue=POLL)
    if op.status == "IN_PROGRESS":
        return d.finish(requeue=POLL)
    if op.status == "COMPLETED" or retention.already_gone(op.failure):
        how = "disposed of" if op.status == "COMPLETED" else "already gone; dropped from the history"
        d.event("SavepointDisposed", f"Savepoint {dis.path} {how}.")
        d.status = replace(s.without_savepoint(dis.path), disposal=None)
        return d.finish(requeue=POLL_FAST if len(candidates) > 1 else None)
    attempts = dis.attempts + 1
    retry = _retry_time(now, attempts)
    message = (
        f"Could not dispose of savepoint {dis.path}: {op.failure}; it stays in the history; "
        f"retrying at {format_time(retry)}."
    )
    d.event("DisposalFailed", message, warning=True)
    d.status = replace(
        s, disposal=replace(dis, trigger_id=None, attempts=attempts, retry_at=format_time(retry), last_error=op.failure)
    )
    return d.finish()


def _start_deploy(d: _Draft, spec: FlinkJobSpec, savepoint_path: str | None, source: Deployment | None) -> Decision:
    target = spec.deployment
    jar_id, early = _jar_ready(d, target, d.inp.observation.jar)
    if early is not None:
        return early
    assert jar_id is not None
    allow = spec.allow_non_restored_for(source, target) if savepoint_path else False
    now = format_time(d.inp.now)
    up = Upgrade.begin(
        st.DEPLOY,
        st.SUBMITTING,
        target,
        now,
        source=source,
        savepoint_path=savepoint_path,
        new_job_id=d.inp.fresh_id,
        allow_non_restored_state=allow,
    )
    action = SubmitJob(jar_id, d.inp.fresh_id, target, savepoint_path, allow)
    d.status = replace(
        d.status,
        phase="Deploying",
        upgrade=up,
        failure=None,
        savepoint_nonce=spec.savepoint_nonce,  # a fresh start answers any savepoint request so far
        message=f"Deploying: {action.describe()}.",
    )
    d.event("Deploying", action.describe())
    return d.finish(action=action, requeue=POLL)


def _start_upgrade(d: _Draft, spec: FlinkJobSpec) -> Decision:
    s = d.status
    obs = d.inp.observation
    assert obs.job is not None and obs.job.info is not None
    target = spec.deployment
    fp = target.fingerprint
    now = format_time(d.inp.now)
    if obs.job.info.state != "RUNNING":
        d.status = replace(
            s, message=f"Waiting for job {s.job_id} to be RUNNING (it is {obs.job.info.state}) before upgrading."
        )
        return d.finish(requeue=POLL)
    directory = None
    if spec.upgrade_mode != "stateless":
        directory = _savepoint_directory(spec, obs)
        if directory is None:
            return _stall(d, "NoSavepointDirectory", _no_directory_message(), fp)
    # The new jar is fetched, checked and uploaded while the old job keeps running (in either mode:
    # a bad jar must never cost the running job).
    jar_id, early = _jar_ready(d, target, obs.jar)
    if early is not None:
        return early
    if not d.inp.upgrade_slot_free:
        return _wait_for_upgrade_slot(d, "Upgrade")
    assert s.job_id is not None
    stateless = spec.upgrade_mode == "stateless"
    up = Upgrade.begin(
        st.UPGRADE,
        st.CANCELLING if stateless else st.SAVEPOINTING,
        target,
        now,
        source=s.deployed,
        from_job_id=s.job_id,
        trigger_id=None if stateless else d.inp.fresh_id,
        savepoint_directory=directory,
        target_jar_id=jar_id,
    )
    action: Action
    if stateless:
        action = CancelJob(s.job_id)
        message = f"Upgrading without state (upgradeMode: stateless): cancelling job {s.job_id}."
    else:
        assert directory is not None
        action = _savepoint_action(spec, s.job_id, d.inp.fresh_id, directory)
        message = f"Upgrading: {action.describe()}."
    d.status = replace(s, phase="Upgrading", upgrade=up, failure=None, message=message)
    d.event("Upgrading" if stateless else "Savepointing", action.describe())
    return d.finish(action=action, requeue=_poll_after(action))


def _wait_for_upgrade_slot(d: _Draft, what: str) -> Decision:
    message = (
        f"{what} waits for a free slot: the operator runs at most FLINKOP_MAX_CONCURRENT_UPGRADES upgrades "
        "at once. The job keeps running meanwhile."
    )
    if d.status.message != message:
        d.event("WaitingForUpgradeSlot", message)
    d.status = replace(d.status, message=message)
    return d.finish(requeue=SLOT_POLL)


def _poll_after(action: Action) -> float:
    """How soon to look again after `action`: a job being stopped processes nothing from the moment
    its savepoint completes, so that is watched closely; anything else is polled at the usual pace."""
    stopping = isinstance(action, CancelJob) or (isinstance(action, TriggerSavepoint) and action.mode != "keep")
    return _stopping_poll(0.0) if stopping else POLL


def _stopping_poll(elapsed: float) -> float:
    """Every 0.1 s for the first 2 s of a stop (about 20 cheap reads; most savepoints of small state
    complete within them), then every 0.25 s: the job is down from the savepoint's completion until
    the new one runs, so each poll interval is downtime the operator adds to what Flink needs."""
    return POLL_STOPPING if elapsed < STOPPING_CLOSELY_SECONDS else POLL_SAVEPOINT


def _savepoint_action(spec: FlinkJobSpec, job_id: str, trigger_id: str, directory: str) -> TriggerSavepoint:
    mode = "cancel" if spec.savepoint_mode == "cancel" else "stop"
    return TriggerSavepoint(job_id, trigger_id, directory, mode, drain=spec.drain and mode == "stop")


# -- an upgrade in flight --------------------------------------------------------------------


def _phase_for(up: Upgrade, current: str) -> str:
    if up.kind in (st.DELETE, st.SUSPEND, st.SAVEPOINT):
        return current  # no phase of their own while the savepoint runs; the message says what happens
    return {st.DEPLOY: "Deploying", st.ROLLBACK: "RollingBack"}.get(up.kind, "Upgrading")


def _continue_upgrade(d: _Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    if up.step == st.SAVEPOINTING:
        return _savepointing(d, spec, up)
    if up.step == st.CANCELLING:
        return _cancelling(d, up)
    if up.step == st.RESCALING:
        return _rescaling(d, spec, up)
    return _submitting(d, spec, up)


def _savepointing(d: _Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    obs = d.inp.observation
    now = d.inp.now
    job = obs.job
    op = obs.savepoint
    phase = _phase_for(up, d.status.phase)
    if op is not None and op.status == "COMPLETED" and op.location:
        return _savepoint_completed(d, spec, up, op.location)
    if op is None or op.status == "UNKNOWN":
        if job is not None and not job.active:
            latest = obs.latest_savepoint
            started = parse_time(up.step_started_at)
            if latest and started and latest.trigger_timestamp_ms >= _epoch_ms(started) - 5000:
                return _savepoint_completed(d, spec, up, latest.path)
            message = (
                f"Job {up.from_job_id} ended ({job.state}) during the {up.kind} without a savepoint the operator "
                f"can find; it was not resubmitted. The last recorded savepoint is "
                f"{d.status.last_savepoint.path if d.status.last_savepoint else 'none'}."
            )
            d.status = replace(d.status, upgrade=None, job_state=job.state)
            if up.kind == st.DELETE:
                d.event("DeleteWithoutSavepoint", message, warning=True)
                return d.finish(done_deleting=True)
            return _stall(d, "JobTerminated", message, up.target.fingerprint, phase="Failed")
        retry_at = parse_time(up.retry_at)
        if retry_at is not None and _naive(now) < retry_at:
            d.status = replace(d.status, phase=phase)
            return d.finish(requeue=(retry_at - _naive(now)).total_seconds())
        # Never triggered (crash before the call), forgotten by Flink, or a retry is due.
        trigger_id = up.trigger_id or d.inp.fresh_id
        directory = up.savepoint_directory or _savepoint_directory(spec, obs)
        if directory is None:
            return _stall(d, "NoSavepointDirectory", _no_directory_message(), up.target.fingerprint)
        assert up.from_job_id is not None
        new_up = replace(
            up,
            trigger_id=trigger_id,
            savepoint_directory=directory,
            retry_at=None,
            step_started_at=format_time(now) if trigger_id != up.trigger_id else up.step_started_at,
        )
        action = TriggerSavepoint(
            up.from_job_id, trigger_id, directory, _mode_for(up.kind, spec), drain=_drain_for(up.kind, spec)
        )
        d.status = replace(d.status, phase=phase, upgrade=new_up, message=f"{phase}: {action.describe()}.")
        d.event("Savepointing", action.describe())
        return d.finish(action=action, requeue=_poll_after(action))
    if op.status == "FAILED":
        attempts = up.attempts + 1
        delay = backoff_seconds(attempts)
        retry_at = _retry_time(now, attempts)
        message = (
            f"Savepoint of job {up.from_job_id} failed (attempt {attempts}): {op.failure}; the job keeps running; "
            f"retrying at {format_time(retry_at)}."
        )
        d.event("SavepointFailed", message, warning=True)
        new_up = replace(up, attempts=attempts, trigger_id=None, retry_at=format_time(retry_at), last_error=op.failure)
        d.status = replace(d.status, phase=phase, upgrade=new_up, message=message)
        return d.finish(requeue=delay)
    # IN_PROGRESS: polled often, since the job stops processing once the savepoint completes.
    started = parse_time(up.step_started_at) or _naive(now)
    elapsed = (_naive(now) - started).total_seconds()
    if elapsed > spec.savepoint_timeout_seconds and up.retry_at is None:
        attempts = up.attempts + 1
        retry_at = _retry_time(now, attempts)
        message = (
            f"Savepoint of job {up.from_job_id} has not completed within savepointTimeoutSeconds "
            f"({spec.savepoint_timeout_seconds} s); the job keeps running while Flink finishes or aborts it "
            f"(execution.checkpointing.timeout); the upgrade resumes if it completes, and is retried otherwise."
        )
        d.event("SavepointTimeout", message, warning=True)
        new_up = replace(up, attempts=attempts, retry_at=format_time(retry_at), last_error="savepoint timed out")
        d.status = replace(d.status, phase=phase, upgrade=new_up, message=message)
        return d.finish(requeue=POLL * 2)
    d.status = replace(d.status, phase=phase)
    return d.finish(requeue=_stopping_poll(elapsed) if up.kind != st.SAVEPOINT else POLL_FAST)


def _savepoint_completed(d: _Draft, spec: FlinkJobSpec, up: Upgrade, location: str) -> Decision:
    """Records the savepoint first; the next step's ids are in the same status write."""
    now = format_time(d.inp.now)
    reason = {st.DELETE: "delete", st.SUSPEND: "suspend", st.SAVEPOINT: up.reason or "manual"}.get(up.kind, "upgrade")
    d.status = d.status.with_savepoint(Savepoint(location, now, reason))
    d.event("SavepointCompleted", f"Savepoint of job {up.from_job_id} completed ({reason}): {location}.")
    if up.kind == st.DELETE:
        d.status = replace(d.status, upgrade=None, job_state="FINISHED", message=f"Final savepoint: {location}.")
        if spec.dispose_savepoints_on_delete and retention.disposable_on_delete(d.status, spec):
            return d.finish(requeue=POLL_FAST)  # the older savepoints go first; the final one stays
        return d.finish(done_deleting=True)
    if up.kind == st.SUSPEND:
        message = f"Suspended with savepoint {location}; set spec.state to running to resume from it."
        d.event("Suspended", message)
        d.status = replace(d.status, upgrade=None, phase="Suspended", message=message)
        return d.finish(requeue=POLL_FAST)
    if up.kind == st.SAVEPOINT:
        nonce = up.nonce if up.nonce is not None else d.status.savepoint_nonce
        message = f"Savepoint {location} taken ({reason}); job {up.from_job_id} keeps running."
        d.status = replace(d.status, upgrade=None, savepoint_nonce=nonce, message=message)
        return d.finish(requeue=POLL_FAST)
    allow = spec.allow_non_restored_for(up.source, up.target)
    new_up = replace(
        up,
        step=st.SUBMITTING,
        step_started_at=now,
        savepoint_path=location,
        new_job_id=d.inp.fresh_id,
        allow_non_restored_state=allow,
        trigger_id=up.trigger_id,
        retry_at=None,
        attempts=0,
        last_error=None,
    )
    d.status = replace(d.status, upgrade=new_up, message=f"Savepoint {location} taken; starting the new version.")
    old = d.inp.observation.job
    jar = d.inp.observation.jar
    jar_id = up.target_jar_id or (jar.cluster_jar_id if jar is not None and jar.uri == up.target.jar_uri else None)
    if old is not None and not old.active and jar_id:
        # The savepoint and the new job's id are in the status written before this call.
        assert new_up.new_job_id is not None
        action = SubmitJob(jar_id, new_up.new_job_id, up.target, location, allow)
        d.event("Submitting", action.describe())
        return d.finish(action=action, requeue=POLL)
    return d.finish(requeue=POLL_FAST)


def _cancelling(d: _Draft, up: Upgrade) -> Decision:
    job = d.inp.observation.job
    if job is not None and job.active:
        assert up.from_job_id is not None
        return d.finish(action=CancelJob(up.from_job_id), requeue=POLL)
    now = format_time(d.inp.now)
    new_up = replace(up, step=st.SUBMITTING, step_started_at=now, new_job_id=d.inp.fresh_id, savepoint_path=None)
    d.status = replace(d.status, upgrade=new_up, message="Old job cancelled; starting the new version without state.")
    return d.finish(requeue=POLL_FAST)


def _submitting(d: _Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    obs = d.inp.observation
    phase = _phase_for(up, d.status.phase)
    old = obs.job
    if up.kind != st.DEPLOY and old is not None and old.active and old.job_id == up.from_job_id:
        d.status = replace(d.status, phase=phase, message=f"Waiting for job {up.from_job_id} to finish.")
        return d.finish(requeue=POLL_FAST)
    new = obs.new_job
    assert up.new_job_id is not None
    if new is None or new.missing:
        if up.last_error is not None and up.attempts > 0:
            return _start_failed(d, spec, up, up.last_error)
        jar_id, early = _jar_ready(d, up.target, obs.jar)
        if early is not None:
            d.status = replace(d.status, phase=phase)
            return early
        assert jar_id is not None
        action = SubmitJob(jar_id, up.new_job_id, up.target, up.savepoint_path, up.allow_non_restored_state)
        d.status = replace(d.status, phase=phase, message=f"{phase}: {action.describe()}.")
        d.event("Submitting", action.describe())
        return d.finish(action=action, requeue=POLL)
    info = new.info
    assert info is not None
    if info.terminal:
        return _start_failed(d, spec, up, new.failure or f"job {up.new_job_id} is {info.state}")
    if not info.all_vertices_running:
        d.status = replace(
            d.status,
            phase=phase,
            upgrade=replace(up, step=st.STARTING) if up.step != st.STARTING else up,
            job_state=info.state,
            message=f"{phase}: job {up.new_job_id} is {info.state}; waiting for every vertex to run.",
        )
        return d.finish(requeue=POLL)
    return _upgrade_done(d, up, info.parallelism, obs.jar)


def _upgrade_done(d: _Draft, up: Upgrade, parallelism: int, jar: JarCheck | None) -> Decision:
    s = d.status
    old_jar = s.jar_id
    new_jar = jar.cluster_jar_id if jar is not None and jar.uri == up.target.jar_uri else old_jar
    failure: Failure | None = None
    if up.kind == st.ROLLBACK:
        failed = up.source
        message = (
            f"Rolled back: the new version did not start from savepoint {up.savepoint_path} "
            f"({up.restore_failure}); job {up.new_job_id} runs the last stable spec from that savepoint."
        )
        failure = Failure("RestoreFailed", message, failed.fingerprint if failed else None)
        d.event("RolledBack", message, warning=True)
    else:
        message = f"Job {up.new_job_id} is running" + (
            f", restored from savepoint {up.savepoint_path}." if up.savepoint_path else "."
        )
        d.event("Running", message)
    d.status = replace(
        s,
        phase="Running",
        job_id=up.new_job_id,
        job_state="RUNNING",
        parallelism=parallelism,
        deployed=up.target,
        last_stable=up.target,
        upgrade=None,
        failure=failure,
        jar_id=new_jar,
        message=message,
    )
    unused = old_jar and new_jar and old_jar != new_jar and old_jar not in d.inp.jars_used_elsewhere
    action = DeleteJar(old_jar) if unused and old_jar else None
    return d.finish(action=action)


def _start_failed(d: _Draft, spec: FlinkJobSpec, up: Upgrade, cause: str) -> Decision:
    """The new job did not come up: roll back to the last stable spec, or stop and report."""
    s = d.status
    stable = s.last_stable
    can_roll_back = (
        up.kind == st.UPGRADE
        and spec.restore_failure_policy == "Rollback"
        and stable is not None
        and up.savepoint_path is not None
        and stable != up.target
    )
    if can_roll_back:
        assert stable is not None
        now = format_time(d.inp.now)
        new_up = Upgrade.begin(
            st.ROLLBACK,
            st.SUBMITTING,
            stable,
            now,
            source=up.target,
            from_job_id=up.new_job_id,
            savepoint_path=up.savepoint_path,
            new_job_id=d.inp.fresh_id,
            allow_non_restored_state=spec.allow_non_restored_state == "Always",
            restore_failure=cause,
        )
        message = (
            f"Job {up.new_job_id} did not start from savepoint {up.savepoint_path}: {cause}; "
            "rolling back to the last stable spec from the same savepoint."
        )
        d.event("RestoreFailed", message, warning=True)
        d.status = replace(s, phase="RollingBack", upgrade=new_up, message=message)
        return d.finish(requeue=POLL_FAST)
    reason = "RestoreFailed" if up.savepoint_path else "DeployFailed"
    source = f" from savepoint {up.savepoint_path}" if up.savepoint_path else ""
    kept = f" The savepoint {up.savepoint_path} is kept in status.lastSavepoint." if up.savepoint_path else ""
    message = f"Job {up.new_job_id} did not start{source}: {cause}.{kept} Fix the spec to try again."
    if up.kind == st.ROLLBACK:
        message = f"Rollback failed too: {message}"
    d.status = replace(
        s,
        upgrade=None,
        job_id=up.new_job_id,
        job_state="FAILED",
        deployed=up.target,
        last_savepoint=s.last_savepoint
        if s.last_savepoint is not None or up.savepoint_path is None
        else Savepoint(up.savepoint_path, format_time(d.inp.now), "upgrade"),
    )
    failed_fp = up.source.fingerprint if up.kind == st.ROLLBACK and up.source else up.target.fingerprint
    return _stall(d, reason, message, failed_fp, phase="Failed")


# -- deletion --------------------------------------------------------------------------------


def _plan_delete(d: _Draft, spec: FlinkJobSpec) -> Decision:
    s = d.status
    obs = d.inp.observation
    up = s.upgrade
    past_deadline = d.inp.delete_deadline is not None and _naive(d.inp.now) >= _naive(d.inp.delete_deadline)
    if up is not None and up.kind == st.DELETE:
        if past_deadline:
            message = (
                f"Gave up on a final savepoint of job {up.from_job_id} after the deletion timeout "
                f"({up.last_error or 'savepoint not completed'}); the job was left as it is on the cluster."
            )
            d.event("DeleteGaveUp", message, warning=True)
            d.status = replace(s, upgrade=None, message=message)
            return d.finish(done_deleting=True)
        return _savepointing(d, spec, up)
    active = obs.new_job if obs.new_job is not None and obs.new_job.active else None
    if active is None and obs.job is not None and obs.job.active:
        active = obs.job
    if up is not None and up.step == st.SAVEPOINTING and obs.savepoint and obs.savepoint.status == "IN_PROGRESS":
        return d.finish(requeue=POLL)  # an upgrade's savepoint is under way: let it end first
    if active is None or active.info is None:
        if spec.dispose_savepoints_on_delete:
            step = _retention_step(d, spec, retention.disposable_on_delete(d.status, spec))
            if step is not None:
                return step
        final = s.last_savepoint
        if final is not None and final.reason == "delete":
            d.event("Deleted", f"The final savepoint {final.path} is kept: start from it with initialSavepointPath.")
        else:
            d.event("Deleted", "No job of this FlinkJob runs on the cluster; nothing to stop.")
        return d.finish(done_deleting=True)
    directory = _savepoint_directory(spec, obs)
    if directory is None or past_deadline:
        message = f"Job {active.job_id} was left running on the cluster: " + (
            "no savepoint directory is configured." if directory is None else "the deletion timed out."
        )
        d.event("DeleteGaveUp", message, warning=True)
        return d.finish(done_deleting=True)
    now = format_time(d.inp.now)
    new_up = Upgrade.begin(
        st.DELETE,
        st.SAVEPOINTING,
        s.deployed or spec.deployment,
        now,
        from_job_id=active.job_id,
        trigger_id=d.inp.fresh_id,
        savepoint_directory=directory,
    )
    action = TriggerSavepoint(active.job_id, d.inp.fresh_id, directory, "stop")
    d.status = replace(s, upgrade=new_up, message=f"Deleting: {action.describe()}.")
    d.event("Savepointing", action.describe())
    return d.finish(action=action, requeue=_poll_after(action))


def record_action_failure(status: Status, action: Action, error: str, now: datetime) -> Status:
    """The status after an action that Flink refused (not one that did not reach Flink): the
    next pass decides from it (retry a savepoint later, or treat a refused start as failed)."""
    if isinstance(action, DisposeSavepoint) and status.disposal is not None:
        dis = status.disposal
        attempts = dis.attempts + 1
        retry = format_time(_retry_time(now, attempts))
        return replace(
            status, disposal=replace(dis, trigger_id=None, attempts=attempts, retry_at=retry, last_error=error)
        )
    up = status.upgrade
    if up is None:
        return replace(status, message=f"Could not {action.describe()}: {error}")
    attempts = up.attempts + 1
    if isinstance(action, TriggerSavepoint):
        retry_at = _retry_time(now, attempts)
        message = f"Could not {action.describe()}: {error}; the job keeps running; retrying at {format_time(retry_at)}."
        new_up = replace(up, attempts=attempts, trigger_id=None, retry_at=format_time(retry_at), last_error=error)
        return replace(status, upgrade=new_up, message=message)
    if isinstance(action, SubmitJob):
        if jar_missing(error):
            # The recorded jar was deleted from the cluster meanwhile: not the new version's failure.
            # The next pass lists the cluster's jars, uploads it again and submits.
            new_up = replace(up, target_jar_id=None)
            message = f"Could not {action.describe()}: {error}; uploading the jar again."
            return replace(status, upgrade=new_up, message=message)
        new_up = replace(up, attempts=attempts, last_error=error)
        return replace(status, upgrade=new_up, message=f"Could not {action.describe()}: {error}")
    return replace(status, upgrade=replace(up, last_error=error), message=f"Could not {action.describe()}: {error}")


def jar_missing(error: str) -> bool:
    """Whether Flink refused a run because the jar is not on the cluster (Flink 2.3 answers HTTP 500
    with its RestHandlerException "Jar file <path> does not exist")."""
    return "jar file" in error.lower() and "does not exist" in error.lower()


def record_action_result(status: Status, action: Action, result: str | None) -> Status | None:
    """The status after an action whose id Flink chose (a disposal's trigger id); None: no change."""
    if isinstance(action, DisposeSavepoint) and result and status.disposal is not None:
        return replace(status, disposal=replace(status.disposal, trigger_id=result))
    return None
