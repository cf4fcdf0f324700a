"""Deploys and upgrades: the first start, a savepoint (or stateless) upgrade, the submission of the
new job, its start, and what follows a start that failed (rollback or a stall).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from flinkop import status as st
from flinkop.actions import (
    Action,
    CancelJob,
    DeleteJar,
    SubmitJob,
)
from flinkop.flink_client import JobInfo
from flinkop.observation import APP_JAR_ID, JarCheck
from flinkop.plan import stability
from flinkop.plan.app import job_start_time, starting_here, waiting_for_start
from flinkop.plan.common import (
    POLL,
    POLL_FAST,
    Decision,
    Draft,
    d_spec,
    epoch_ms,
    jar_ready,
    naive,
    no_directory_message,
    phase_for,
    poll_after,
    savepoint_action,
    savepoint_directory,
    stall,
    wait_for_upgrade_slot,
)
from flinkop.spec import Deployment, FlinkJobSpec
from flinkop.status import Failure, Savepoint, Upgrade
from flinkop.times import format_time, parse_time


def start_deploy(d: Draft, spec: FlinkJobSpec, savepoint_path: str | None, source: Deployment | None) -> Decision:
    target = spec.deployment
    jar_id, early = jar_ready(d, target, d.inp.observation.jar)
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


def start_upgrade(d: Draft, spec: FlinkJobSpec) -> Decision:
    s = d.status
    obs = d.inp.observation
    assert obs.job is not None and obs.job.info is not None
    target = spec.deployment
    now = format_time(d.inp.now)
    if obs.job.info.state != "RUNNING":
        d.status = replace(
            s, message=f"Waiting for job {s.job_id} to be RUNNING (it is {obs.job.info.state}) before upgrading."
        )
        return d.finish(requeue=POLL)
    directory = None
    if spec.upgrade_mode != "stateless":
        directory = savepoint_directory(spec, obs)
        if directory is None:
            return stall(d, "NoSavepointDirectory", no_directory_message(), target)
    # The new jar is fetched, checked and uploaded while the old job keeps running (in either mode:
    # a bad jar must never cost the running job).
    jar_id, early = jar_ready(d, target, obs.jar)
    if early is not None:
        return early
    if not d.inp.upgrade_slot_free:
        return wait_for_upgrade_slot(d, "Upgrade")
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
        action = savepoint_action(spec, s.job_id, d.inp.fresh_id, directory)
        message = f"Upgrading: {action.describe()}."
    d.status = replace(s, phase="Upgrading", upgrade=up, failure=None, message=message)
    d.event("Upgrading" if stateless else "Savepointing", action.describe())
    return d.finish(action=action, requeue=poll_after(action))


def cancelling(d: Draft, up: Upgrade) -> Decision:
    job = d.inp.observation.job
    if job is not None and job.active:
        assert up.from_job_id is not None
        return d.finish(action=CancelJob(up.from_job_id), requeue=POLL)
    now = format_time(d.inp.now)
    new_up = replace(up, step=st.SUBMITTING, step_started_at=now, new_job_id=d.inp.fresh_id, savepoint_path=None)
    d.status = replace(d.status, upgrade=new_up, message="Old job cancelled; starting the new version without state.")
    return d.finish(requeue=POLL_FAST)


def submitting(d: Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    obs = d.inp.observation
    phase = phase_for(up, d.status.phase)
    old = obs.job
    if up.kind != st.DEPLOY and old is not None and old.active and old.job_id == up.from_job_id:
        d.status = replace(d.status, phase=phase, message=f"Waiting for job {up.from_job_id} to finish.")
        return d.finish(requeue=POLL_FAST)
    new = obs.new_job
    assert up.new_job_id is not None
    if (new is None or new.missing) and starting_here(up, obs.app):
        # Application mode: the cluster applied for this job answers but does not list it yet.
        return waiting_for_start(d, spec, up, "its JobManager does not list it yet")
    if new is None or new.missing:
        if up.last_error is not None and up.attempts > 0:
            return start_failed(d, spec, up, up.last_error)
        jar_id, early = jar_ready(d, up.target, obs.jar)
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
    if up.unstable is not None:  # failed the stability gate: stop it, then apply the policy
        if info.terminal:
            return start_failed(d, spec, up, up.unstable, unstable=True)
        d.status = replace(d.status, phase=phase, message=f"{phase}: cancelling job {up.new_job_id}: {up.unstable}.")
        return d.finish(action=CancelJob(up.new_job_id), requeue=POLL)
    if info.terminal:
        return start_failed(d, spec, up, new.failure or f"job {up.new_job_id} is {info.state}")
    started = parse_time(up.step_started_at) or naive(d.inp.now)
    deadline = started + timedelta(seconds=spec.stability_timeout_seconds)
    verdict = stability.judge(
        info, obs.new_job_progress, epoch_ms(d.inp.now), epoch_ms(deadline), spec.stability_timeout_seconds
    )
    if verdict.failed is not None:
        cause = f"job {up.new_job_id} did not pass the stability gate: {verdict.failed}"
        message = f"{phase}: {cause}; cancelling it, then restoreFailurePolicy {spec.restore_failure_policy} applies."
        d.event("UnstableStart", message, warning=True)
        d.status = replace(
            d.status, phase=phase, upgrade=replace(up, step=st.STARTING, unstable=cause), message=message
        )
        return d.finish(action=CancelJob(up.new_job_id), requeue=POLL)
    if not verdict.passed:
        d.status = replace(
            d.status,
            phase=phase,
            upgrade=replace(up, step=st.STARTING) if up.step != st.STARTING else up,
            job_state=info.state,
            message=f"{phase}: job {up.new_job_id} is {info.state}; waiting for {verdict.awaiting}.",
        )
        return d.finish(requeue=POLL, gate_only=info.all_vertices_running)
    return upgrade_done(d, up, info, obs.jar)


def upgrade_done(d: Draft, up: Upgrade, info: JobInfo, jar: JarCheck | None) -> Decision:
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
        spec = d_spec(d)
        failure = Failure(up.reason or "RestoreFailed", message, spec.attempt_key(failed) if failed else None)
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
        parallelism=info.parallelism,
        job_start_time=job_start_time(info),
        deployed=up.target,
        last_stable=up.target,
        upgrade=None,
        failure=failure,
        jar_id=new_jar,
        started_from=up.savepoint_path,
        message=message,
    )
    # The old jar is on the cluster the old job ran on: never asked of another (a move between modes).
    same_cluster = up.source is None or (up.source.cluster is None) == (up.target.cluster is None)
    unused = (
        same_cluster
        and old_jar
        and new_jar
        and old_jar != new_jar
        and APP_JAR_ID not in (old_jar, new_jar)
        and old_jar not in d.inp.jars_used_elsewhere
    )
    action = DeleteJar(old_jar) if unused and old_jar else None
    return d.finish(action=action)


def start_failed(d: Draft, spec: FlinkJobSpec, up: Upgrade, cause: str, unstable: bool = False) -> Decision:
    """The new job did not come up (or did not pass the stability gate, `unstable`: it was cancelled
    first): roll back to the last stable spec, or stop and report."""
    s = d.status
    reason = "UnstableStart" if unstable else "RestoreFailed" if up.savepoint_path else "DeployFailed"
    diagnosis = d.inp.observation.restore_diagnosis
    if diagnosis and diagnosis not in cause:
        cause = f"{cause} ({diagnosis.rstrip('.')})"  # which operators lost their state, and what to do
    stable = s.last_stable
    can_roll_back = (
        up.kind == st.UPGRADE
        and spec.restore_failure_policy == "Rollback"
        and stable is not None
        and up.savepoint_path is not None
        and stable != up.target
        and (stable.cluster is None) == (up.target.cluster is None)  # never across session and application mode
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
            reason=reason,
        )
        message = (
            f"Job {up.new_job_id} did not start from savepoint {up.savepoint_path}: {cause}; "
            "rolling back to the last stable spec from the same savepoint."
        )
        d.event(reason, message, warning=True)
        d.status = replace(s, phase="RollingBack", upgrade=new_up, message=message)
        return d.finish(requeue=POLL_FAST)
    source = f" from savepoint {up.savepoint_path}" if up.savepoint_path else ""
    kept = f" The savepoint {up.savepoint_path} is kept in status.lastSavepoint." if up.savepoint_path else ""
    message = f"Job {up.new_job_id} did not start{source}: {cause}.{kept} Fix the spec to try again."
    if up.kind == st.ROLLBACK:
        # Both causes, and no further attempt until a person changes the spec or a policy field.
        message = f"Rollback failed too: {message} The new version had failed first: {up.restore_failure}."
        reason = up.reason or reason
    d.status = replace(
        s,
        upgrade=None,
        job_id=up.new_job_id,
        job_start_time=None,
        job_state="CANCELED" if unstable else "FAILED",
        deployed=up.target,
        last_savepoint=s.last_savepoint
        if s.last_savepoint is not None or up.savepoint_path is None
        else Savepoint(up.savepoint_path, format_time(d.inp.now), "upgrade"),
    )
    failed = up.source if up.kind == st.ROLLBACK and up.source else up.target
    return stall(d, reason, message, failed, phase="Failed")
