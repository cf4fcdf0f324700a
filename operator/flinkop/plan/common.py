"""What every part of the planner shares: its input and decision, the draft a decision is built in,
stalls, polling paces, backoff, and the checks a step makes before it acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from flinkop import status as st
from flinkop.actions import (
    Action,
    CancelJob,
    TriggerSavepoint,
    UploadJar,
)
from flinkop.conditions import derive_conditions
from flinkop.observation import JarCheck, Observation
from flinkop.spec import Deployment, FlinkJobSpec, SpecError
from flinkop.status import Failure, Savepoint, Status, Upgrade
from flinkop.times import parse_time

NEEDS_A_PERSON = frozenset({"RestoreFailed", "DeployFailed", "JobTerminated", "UnstableStart"})
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
    # The jar check this decision waited for because the observation did not cover it: the pass
    # reads it at once and plans again (observe.jar_to_check is meant to have read it already).
    needs_jar: Deployment | None = None
    # The upgrade in flight only waits for its new job to pass the stability gate (every vertex
    # runs): it no longer takes one of the FLINKOP_MAX_CONCURRENT_UPGRADES slots (slots.py).
    gate_only: bool = False


@dataclass
class Draft:
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
        needs_jar: Deployment | None = None,
        gate_only: bool = False,
    ) -> Decision:
        spec = self.inp.spec
        desired = spec.deployment.fingerprint if isinstance(spec, FlinkJobSpec) else None
        failure_key = spec.attempt_key(spec.deployment) if isinstance(spec, FlinkJobSpec) else None
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
                failure_key=failure_key,
            ),
        )
        if requeue is None and not done_deleting and _reconciling(final):
            # Level-triggered: while the wanted state is not reached (and no stall says why), a pass
            # always follows; nothing waits for a change or a timer to look again.
            requeue = POLL
        if requeue is None and not done_deleting and isinstance(spec, FlinkJobSpec) and not self.inp.deleting:
            job = self.inp.observation.job
            started = job.info.start_time_ms if job is not None and job.info is not None else 0
            requeue = idle_wake(final, spec, self.inp.now, started)
        return Decision(final, action, requeue, tuple(self.events), done_deleting, needs_jar, gate_only)


# A periodic savepoint is triggered this long after its due time: the trigger time recorded is the
# pass's, a few milliseconds before Flink's, so without it two savepoints could be a hair under the
# interval apart as Flink counts.
PERIODIC_MARGIN = 0.1


def periodic_savepoint_due(last: Savepoint | None, job_start_ms: int, interval: int) -> datetime:
    """When the next periodic savepoint is due: `interval` seconds (and PERIODIC_MARGIN) after the
    last savepoint was triggered (`triggeredAt`, to the millisecond; the completion time for one
    recorded without it), or after the job started, whichever is later."""
    started = datetime(1970, 1, 1) + timedelta(milliseconds=job_start_ms)
    recorded = _parse(last.triggered_at or last.time) if last is not None else None
    since = max(t for t in (recorded, started) if t is not None)
    return since + timedelta(seconds=interval + PERIODIC_MARGIN)


STALL_RECHECK = 15.0  # a stall that lifts without a person (no savepoint directory, a jar server down)


def idle_wake(status: Status, spec: FlinkJobSpec, now: datetime, job_start_ms: int = 0) -> float | None:
    """When a FlinkJob with no step in flight must be looked at again without any change to it or
    to its job (None: only a change or its job wakes it): its next periodic savepoint, a stall that
    can lift by itself, a disposal's retry, a savepoint reaching savepointMaxAgeSeconds."""
    due: list[float] = []
    t = naive(now)
    if (
        spec.savepoint_interval_seconds is not None
        and spec.state == "running"
        and status.phase == "Running"
        and status.job_id is not None
    ):
        at = periodic_savepoint_due(status.last_savepoint, job_start_ms, spec.savepoint_interval_seconds)
        due.append(max(0.0, (at - t).total_seconds()))
    if status.failure is not None and status.failure.reason not in NEEDS_A_PERSON:
        due.append(STALL_RECHECK)
    if status.disposal is not None and status.disposal.retry_at:
        retry = _parse(status.disposal.retry_at)
        if retry is not None:
            due.append(max(0.0, (retry - t).total_seconds()))
    if spec.savepoint_max_age_seconds is not None:
        ages = (_parse(s.time) for s in status.savepoint_history)
        expiries = [(a - t).total_seconds() + spec.savepoint_max_age_seconds + 1 for a in ages if a is not None]
        future = [e for e in expiries if e > 0]  # one past it already stays for a reason (a restore point)
        if future:
            due.append(min(future))
    return min(due) if due else None


def _parse(value: str) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def _reconciling(status: Status) -> bool:
    return any(c.get("type") == "Reconciling" and c.get("status") == "True" for c in status.conditions)


def naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


def epoch_ms(t: datetime) -> float:
    return (naive(t) - datetime(1970, 1, 1)).total_seconds() * 1000


def retry_time(now: datetime, attempts: int) -> datetime:
    """When attempt `attempts + 1` of a failed operation is due."""
    return naive(now) + timedelta(seconds=backoff_seconds(attempts))


def backoff_seconds(attempts: int) -> float:
    return float(min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX))


def stall(d: Draft, reason: str, message: str, target: Deployment | None, phase: str | None = None) -> Decision:
    """Records why `target` (None: any spec) is not acted on; it is remembered with the policy fields
    in force (`FlinkJobSpec.attempt_key`), so a change to any of them lifts the stall too."""
    spec = d.inp.spec
    key = spec.attempt_key(target) if target is not None and isinstance(spec, FlinkJobSpec) else None
    new_failure = Failure(reason, message, key)
    if d.status.failure != new_failure:
        d.event(reason, message, warning=True)
    d.status = replace(d.status, failure=new_failure, message=message, phase=phase or d.status.phase)
    return d.finish()


def lost_in_flight(d: Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision | None:
    """The job a step in flight works on is no longer listed by its cluster (lost with its JobManager,
    not ended by the step). With high availability the JobManager is recovering it: wait. Without,
    the step is dropped and steady state starts the job again from the last savepoint (an upgrade:
    the new spec; a suspend: stays suspended). None when neither applies (the step stalls as before)."""
    job = d.inp.observation.job
    if job is None or not job.missing or up.kind == st.DELETE:
        return None
    if d.inp.observation.cluster_ha:
        message = f"Job {up.from_job_id} is not listed by its cluster, whose JobManager is recovering it; waiting."
        d.status = replace(d.status, message=message)
        return d.finish(requeue=POLL)
    last = d.status.last_savepoint
    if not spec.restart_lost_jobs or last is None:
        return None
    message = (
        f"Job {up.from_job_id} was lost with its JobManager during the {up.kind} ({up.step}); "
        f"it starts again from the last savepoint, {last.path}."
    )
    d.event("JobLost", message, warning=True)
    d.status = replace(d.status, upgrade=None, message=message)
    return d.finish(requeue=POLL_FAST)


def flink_unreachable(d: Draft, spec: FlinkJobSpec, error: str) -> Decision:
    where = f"Flink at {spec.flink_rest_url}" if spec.flink_rest_url else "The job's application cluster"
    message = f"{where} is unreachable ({error}); nothing is changed until it answers."
    if not d.status.message.startswith(f"{where} is unreachable"):
        d.event("FlinkUnreachable", message, warning=True)
    d.status = replace(d.status, message=message)
    # The handler retries with its own backoff; no action is taken on a guess.
    return d.finish(requeue=BACKOFF_BASE)


def jar_ready(d: Draft, target: Deployment, jar: JarCheck | None) -> tuple[str | None, Decision | None]:
    """The cluster jar id for `target`, or the decision to get there (upload, or stall on a bad jar)."""
    if jar is None or not jar.covers(target):
        return None, d.finish(requeue=POLL_FAST, needs_jar=target)  # the pass reads it and plans again
    if jar.error is not None:
        return None, stall(d, jar.error_reason or "JarFetchFailed", jar.error, target)
    if jar.cluster_jar_id:
        return jar.cluster_jar_id, None
    assert jar.local_path is not None and jar.sha256 is not None
    action = UploadJar(jar.local_path, jar.sha256, jar.uri)
    d.status = replace(d.status, message=f"Uploading jar {jar.uri} to {d_spec(d).flink_rest_url}.")
    d.event("UploadingJar", action.describe())
    return None, d.finish(action=action, requeue=POLL_FAST)


def d_spec(d: Draft) -> FlinkJobSpec:
    assert isinstance(d.inp.spec, FlinkJobSpec)
    return d.inp.spec


def savepoint_directory(spec: FlinkJobSpec, obs: Observation) -> str | None:
    return spec.savepoint_directory or obs.cluster_savepoint_dir


def no_directory_message() -> str:
    return (
        "No savepoint directory: set spec.savepointDirectory or the cluster's state.savepoints.dir "
        "(execution.checkpointing.savepoint-dir in Flink 2); "
        "the running job was not touched."
    )


def mode_for(kind: str, spec: FlinkJobSpec) -> str:
    if kind == st.SAVEPOINT:
        return "keep"
    if kind == st.DELETE:
        return "stop"
    return "cancel" if spec.savepoint_mode == "cancel" else "stop"


def drain_for(kind: str, spec: FlinkJobSpec) -> bool:
    return kind in (st.UPGRADE, st.SUSPEND) and spec.drain and spec.savepoint_mode == "stop"


def wait_for_upgrade_slot(d: Draft, what: str) -> Decision:
    message = (
        f"{what} waits for a free slot: the operator runs at most FLINKOP_MAX_CONCURRENT_UPGRADES upgrades "
        "at once. The job keeps running meanwhile."
    )
    if d.status.message != message:
        d.event("WaitingForUpgradeSlot", message)
    d.status = replace(d.status, message=message)
    return d.finish(requeue=SLOT_POLL)


def poll_after(action: Action) -> float:
    """How soon to look again after `action`: a job being stopped processes nothing from the moment
    its savepoint completes, so that is watched closely; anything else is polled at the usual pace."""
    stopping = isinstance(action, CancelJob) or (isinstance(action, TriggerSavepoint) and action.mode != "keep")
    return stopping_poll(0.0) if stopping else POLL


def stopping_poll(elapsed: float) -> float:
    """Every 0.1 s for the first 2 s of a stop (about 20 cheap reads; most savepoints of small state
    complete within them), then every 0.25 s: the job is down from the savepoint's completion until
    the new one runs, so each poll interval is downtime the operator adds to what Flink needs."""
    return POLL_STOPPING if elapsed < STOPPING_CLOSELY_SECONDS else POLL_SAVEPOINT


def savepoint_action(spec: FlinkJobSpec, job_id: str, trigger_id: str, directory: str) -> TriggerSavepoint:
    mode = "cancel" if spec.savepoint_mode == "cancel" else "stop"
    return TriggerSavepoint(job_id, trigger_id, directory, mode, drain=spec.drain and mode == "stop")


# -- an upgrade in flight --------------------------------------------------------------------


def phase_for(up: Upgrade, current: str) -> str:
    if up.kind in (st.DELETE, st.SUSPEND, st.SAVEPOINT):
        return current  # no phase of their own while the savepoint runs; the message says what happens
    return {st.DEPLOY: "Deploying", st.ROLLBACK: "RollingBack"}.get(up.kind, "Upgrading")
