"""The savepoint lifecycle: suspend, manual and periodic savepoints, a savepoint in flight (whatever
its kind) and its completion, and retention (disposing of savepoints that left the history).
"""

from __future__ import annotations

from dataclasses import replace

from flinkop import retention
from flinkop import status as st
from flinkop.actions import (
    DisposeSavepoint,
    SubmitJob,
    TriggerSavepoint,
)
from flinkop.plan.common import (
    POLL,
    POLL_FAST,
    Decision,
    Draft,
    backoff_seconds,
    drain_for,
    epoch_ms,
    lost_in_flight,
    mode_for,
    naive,
    no_directory_message,
    periodic_savepoint_due,
    phase_for,
    poll_after,
    retry_time,
    savepoint_directory,
    stall,
    stopping_poll,
)
from flinkop.spec import FlinkJobSpec
from flinkop.status import Disposal, Savepoint, Upgrade
from flinkop.times import format_time, format_time_ms, parse_time


def savepoint_work(d: Draft, spec: FlinkJobSpec, job_start_ms: int) -> Decision:
    """A running job at its spec: suspend, a manual or periodic savepoint, or retention."""
    s = d.status
    if spec.state == "suspended":
        return start_savepoint_op(d, spec, st.SUSPEND)
    if spec.savepoint_nonce is not None and spec.savepoint_nonce != s.savepoint_nonce:
        return start_savepoint_op(d, spec, st.SAVEPOINT, reason="manual", nonce=spec.savepoint_nonce)
    if s.disposal is not None:  # a disposal under way ends first, or periodic savepoints outrun it
        step = retention_step(d, spec)
        if step is not None:
            return step
    if spec.savepoint_interval_seconds is not None:
        due = periodic_savepoint_due(s.last_savepoint, job_start_ms, spec.savepoint_interval_seconds)
        wait = (due - naive(d.inp.now)).total_seconds()
        if wait <= 0:
            return start_savepoint_op(d, spec, st.SAVEPOINT, reason="periodic")
        # Due at a time: the pass comes back then (not at the next look at the job).
        return sooner(retention_step(d, spec) or d.finish(), wait)
    return retention_step(d, spec) or d.finish()


def sooner(decision: Decision, seconds: float) -> Decision:
    """`decision`, coming back within `seconds` at the latest."""
    if decision.requeue_after is not None and decision.requeue_after <= seconds:
        return decision
    return replace(decision, requeue_after=seconds)


def start_savepoint_op(
    d: Draft, spec: FlinkJobSpec, kind: str, reason: str | None = None, nonce: int | None = None
) -> Decision:
    """Suspend (stop or cancel with a savepoint, then stay stopped) or a savepoint that keeps the job running."""
    s = d.status
    assert s.job_id is not None and s.deployed is not None
    directory = savepoint_directory(spec, d.inp.observation)
    if directory is None:
        return stall(d, "NoSavepointDirectory", no_directory_message(), spec.deployment)
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
        triggered_at=format_time_ms(naive(d.inp.now)),
    )
    action = TriggerSavepoint(s.job_id, d.inp.fresh_id, directory, mode_for(kind, spec), drain=drain_for(kind, spec))
    verb = "Suspending" if kind == st.SUSPEND else f"Taking a {reason} savepoint"
    d.status = replace(s, upgrade=up, failure=None, message=f"{verb}: {action.describe()}.")
    d.event("Suspending" if kind == st.SUSPEND else "Savepointing", action.describe())
    return d.finish(action=action, requeue=poll_after(action))


def retention_step(d: Draft, spec: FlinkJobSpec, candidates: list[str] | None = None) -> Decision | None:
    """One step of disposing of savepoints that fell out of the history; None when there is none.
    An entry leaves the history only once Flink disposed of it (or it was already gone)."""
    s = d.status
    now = naive(d.inp.now)
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
    retry = retry_time(now, attempts)
    message = (
        f"Could not dispose of savepoint {dis.path}: {op.failure}; it stays in the history; "
        f"retrying at {format_time(retry)}."
    )
    d.event("DisposalFailed", message, warning=True)
    d.status = replace(
        s, disposal=replace(dis, trigger_id=None, attempts=attempts, retry_at=format_time(retry), last_error=op.failure)
    )
    return d.finish()


def savepointing(d: Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    obs = d.inp.observation
    now = d.inp.now
    job = obs.job
    op = obs.savepoint
    phase = phase_for(up, d.status.phase)
    if op is not None and op.status == "COMPLETED" and op.location:
        return savepoint_completed(d, spec, up, op.location)
    deployed = d.status.deployed
    undone = up.kind == st.UPGRADE and deployed is not None and spec.deployment.fingerprint == deployed.fingerprint
    if undone and up.trigger_id is None and job is not None and job.active:
        # The change was undone while the upgrade waited to retry its savepoint: nothing was stopped,
        # and what runs is what is wanted again.
        message = f"The change was undone before job {up.from_job_id} was stopped; it keeps running."
        d.event("UpgradeCancelled", message)
        d.status = replace(d.status, upgrade=None, phase="Running", message=message)
        return d.finish(requeue=POLL_FAST)
    if op is None or op.status in ("UNKNOWN", "FAILED"):  # a restarted JobManager fails what it forgot
        lost = lost_in_flight(d, spec, up)
        if lost is not None:
            return lost
    if op is None or op.status == "UNKNOWN":
        if job is not None and not job.active:
            latest = obs.latest_savepoint
            started = parse_time(up.step_started_at)
            if latest and started and latest.trigger_timestamp_ms >= epoch_ms(started) - 5000:
                return savepoint_completed(d, spec, up, latest.path)
            message = (
                f"Job {up.from_job_id} ended ({job.state}) during the {up.kind} without a savepoint the operator "
                f"can find; it was not resubmitted. The last recorded savepoint is "
                f"{d.status.last_savepoint.path if d.status.last_savepoint else 'none'}."
            )
            d.status = replace(d.status, upgrade=None, job_state=job.state)
            if up.kind == st.DELETE:
                d.event("DeleteWithoutSavepoint", message, warning=True)
                return d.finish(done_deleting=True)
            return stall(d, "JobTerminated", message, up.target, phase="Failed")
        retry_at = parse_time(up.retry_at)
        if retry_at is not None and naive(now) < retry_at:
            d.status = replace(d.status, phase=phase)
            return d.finish(requeue=(retry_at - naive(now)).total_seconds())
        # Never triggered (crash before the call), forgotten by Flink, or a retry is due.
        trigger_id = up.trigger_id or d.inp.fresh_id
        directory = up.savepoint_directory or savepoint_directory(spec, obs)
        if directory is None:
            return stall(d, "NoSavepointDirectory", no_directory_message(), up.target)
        assert up.from_job_id is not None
        new_up = replace(
            up,
            trigger_id=trigger_id,
            savepoint_directory=directory,
            retry_at=None,
            step_started_at=format_time(now) if trigger_id != up.trigger_id else up.step_started_at,
            triggered_at=format_time_ms(naive(now)) if trigger_id != up.trigger_id else up.triggered_at,
        )
        action = TriggerSavepoint(
            up.from_job_id, trigger_id, directory, mode_for(up.kind, spec), drain=drain_for(up.kind, spec)
        )
        d.status = replace(d.status, phase=phase, upgrade=new_up, message=f"{phase}: {action.describe()}.")
        d.event("Savepointing", action.describe())
        return d.finish(action=action, requeue=poll_after(action))
    if op.status == "FAILED":
        attempts = up.attempts + 1
        delay = backoff_seconds(attempts)
        retry_at = retry_time(now, attempts)
        message = (
            f"Savepoint of job {up.from_job_id} failed (attempt {attempts}): {op.failure}; the job keeps running; "
            f"retrying at {format_time(retry_at)}."
        )
        d.event("SavepointFailed", message, warning=True)
        new_up = replace(up, attempts=attempts, trigger_id=None, retry_at=format_time(retry_at), last_error=op.failure)
        d.status = replace(d.status, phase=phase, upgrade=new_up, message=message)
        return d.finish(requeue=delay)
    # IN_PROGRESS: polled often, since the job stops processing once the savepoint completes.
    started = parse_time(up.step_started_at) or naive(now)
    elapsed = (naive(now) - started).total_seconds()
    if elapsed > spec.savepoint_timeout_seconds and up.retry_at is None:
        attempts = up.attempts + 1
        retry_at = retry_time(now, attempts)
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
    return d.finish(requeue=stopping_poll(elapsed) if up.kind != st.SAVEPOINT else POLL_FAST)


def savepoint_completed(d: Draft, spec: FlinkJobSpec, up: Upgrade, location: str) -> Decision:
    """Records the savepoint first; the next step's ids are in the same status write."""
    now = format_time(d.inp.now)
    reason = {st.DELETE: "delete", st.SUSPEND: "suspend", st.SAVEPOINT: up.reason or "manual"}.get(up.kind, "upgrade")
    triggered = up.triggered_at or up.step_started_at
    d.status = d.status.with_savepoint(Savepoint(location, now, reason, triggered_at=triggered))
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
