"""Steady state: no step is in flight; compares what is wanted with what runs and starts what is
needed (deploy, resume, upgrade, rescale, savepoints) or reports why nothing can be done.
"""

from __future__ import annotations

from dataclasses import replace

from flinkop import status as st
from flinkop.actions import DeleteCluster, SubmitJob
from flinkop.plan.app import note_job_start
from flinkop.plan.common import NEEDS_A_PERSON, POLL, POLL_FAST, Decision, Draft, Event, naive, stall
from flinkop.plan.rescale import start_rescale
from flinkop.plan.savepoints import retention_step, savepoint_work, start_savepoint_op
from flinkop.plan.upgrade import start_deploy, start_upgrade
from flinkop.spec import FlinkJobSpec
from flinkop.times import parse_time

SUSPENDED_JOB_ENDS_WITHIN = 30.0  # seconds after a suspend savepoint its job is expected to be reported ended


def _recently_suspended(d: Draft) -> bool:
    last = d.status.last_savepoint
    taken = parse_time(last.time) if last is not None and last.reason == "suspend" else None
    return taken is not None and (naive(d.inp.now) - taken).total_seconds() < SUSPENDED_JOB_ENDS_WITHIN


def _recovering(d: Draft) -> Decision:
    """The cluster runs with high availability and no longer lists the job: its JobManager is
    recovering it, whatever the spec wants now (a start from a savepoint would make a second job)."""
    message = (
        f"Job {d.status.job_id} is not listed by its cluster, which runs with high availability: the JobManager "
        "is recovering it; it is not resubmitted."
    )
    if d.status.phase != "Deploying":
        d.event("JobManagerRecovering", message)
    d.status = replace(d.status, phase="Deploying", message=message)
    return d.finish(requeue=POLL)


def _lost_job(d: Draft, spec: FlinkJobSpec) -> Decision | None:
    """The cluster answers but no longer lists the job (not FAILED nor CANCELED there: gone) and has
    no high availability: it went with its JobManager and starts again from the newest savepoint
    recorded (None: stall as for any ended job)."""
    s = d.status
    last = s.last_savepoint
    if not spec.restart_lost_jobs or last is None:
        return None
    taken = parse_time(last.time)
    age = f", {int((naive(d.inp.now) - taken).total_seconds())} s old" if taken is not None else ""
    message = (
        f"Job {s.job_id} is no longer known to its cluster (its JobManager restarted without high availability); "
        f"starting it again from the newest savepoint, {last.path} ({last.reason}, taken {last.time}{age}). "
        "What ran since then is replayed from the sources."
    )
    return _deploy_announced(d, spec, last.path, Event("Warning", "LostJobRestarted", message))


def _deploy_announced(d: Draft, spec: FlinkJobSpec, path: str | None, announce: Event) -> Decision:
    """A start from `path` whose reason is said once, with the submission itself (not on each pass
    before it: a jar check or an upload may come first)."""
    decision = start_deploy(d, spec, path, d.status.last_stable or d.status.deployed)
    if isinstance(decision.action, SubmitJob):
        return replace(decision, events=(announce, *decision.events))
    return decision


def plan_steady(d: Draft, spec: FlinkJobSpec) -> Decision:
    s = d.status
    obs = d.inp.observation
    desired = spec.deployment
    fp = desired.fingerprint
    job = obs.job
    # Failures that need a person block the spec they failed for; the others (no savepoint
    # directory, a jar that cannot be fetched) are looked at again on every pass.
    # They are remembered with the policy fields in force: a change to any of those lifts them too.
    key = spec.attempt_key(desired)
    blocked = s.failure is not None and s.failure.reason in NEEDS_A_PERSON and s.failure.fingerprint in (None, key)

    if s.job_id is None and s.deployed is None:
        if spec.state == "suspended":
            d.status = replace(s, phase="Suspended", message="Suspended before its first start: nothing runs.")
            return d.finish()
        if blocked:
            return d.finish()
        return start_deploy(d, spec, spec.initial_savepoint_path, None)

    if job is None or not job.active:
        app = obs.app
        if job is not None and job.missing and app is not None and app.answering and app.job_id == s.job_id:
            # Application mode: the JobManager answers and runs this job id, but does not list the job. A
            # JobManager that restarted submits it again from its start arguments once it is up (its
            # configuration keeps a job that ended listed): never taken for lost, stopped or replaced meanwhile.
            message = (
                f"The JobManager of job {s.job_id} answers but does not list the job yet: it restarted and "
                "submits it again; waiting for it."
            )
            # Not Ready meanwhile: the job does not run (back to Running, with its Event, once it does).
            phase = "Deploying" if s.phase == "Running" else s.phase
            d.status = replace(s, phase=phase, job_state="MISSING", message=message)
            return d.finish(requeue=POLL)
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
            app = obs.app
            if app is not None and app.job_id is not None:
                # Application mode: the job ended with its savepoint recorded; its cluster goes (it is made
                # again, from that savepoint, on resume).
                d.event("ClusterRemoved", f"Removing the application cluster of suspended job {app.job_id}.")
                return d.finish(action=DeleteCluster(app.job_id), requeue=POLL_FAST)
            if app is not None:
                return d.finish()  # no cluster to dispose of savepoints through: retention resumes with the job
            return retention_step(d, spec) or d.finish()
        if s.phase == "Suspended":
            restore = s.last_savepoint.path if s.last_savepoint else None
            resuming = Event("Normal", "Resuming", f"Resuming from savepoint {restore} with the current spec.")
            return _deploy_announced(d, spec, restore, resuming)
        if blocked:
            d.status = replace(d.status, phase="Failed")
            return d.finish()
        if job is not None and job.missing and d.inp.observation.cluster_ha:
            return _recovering(d)  # also when the spec changed meanwhile: applied once the job is back
        if s.deployed is not None and s.deployed.fingerprint == fp:
            retry_from = s.last_savepoint.path if s.last_savepoint else None
            if retry_from is None and s.last_stable is None:
                retry_from = spec.initial_savepoint_path  # it never ran: no state of its own to lose
            if (
                s.failure is not None
                and s.failure.reason in NEEDS_A_PERSON
                and (retry_from is not None or s.last_stable is None)
            ):
                # Stalled before, and a field that can change the outcome changed since (else it would
                # still block): try again, from the last savepoint.
                retrying = Event(
                    "Normal",
                    "Retrying",
                    f"A field that can change the outcome of {s.failure.reason} changed; starting "
                    f"the job again from savepoint {retry_from}.",
                )
                return _deploy_announced(d, spec, retry_from, retrying)
            if job is not None and job.missing:
                lost = _lost_job(d, spec)
                if lost is not None:
                    return lost
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
            return stall(d, "JobTerminated", message, desired, phase="Failed")
        # The spec changed since the job ended: start it from the last savepoint.
        path = s.last_savepoint.path if s.last_savepoint else None
        return start_deploy(d, spec, path, s.last_stable or s.deployed)

    info = job.info
    assert info is not None
    if s.phase == "Suspended" and _recently_suspended(d):
        # The job stopped with the suspend savepoint is still listed as active: Flink has not reported
        # its end yet. It is never stopped a second time, nor taken for a resumed job.
        path = s.last_savepoint.path if s.last_savepoint else None
        message = f"Job {s.job_id} was stopped with savepoint {path}; waiting for Flink to report that it ended."
        d.status = replace(s, message=message)
        return d.finish(requeue=POLL_FAST)
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
            note_job_start(d, info)
            return savepoint_work(d, spec, info.start_time_ms)
        d.status = replace(
            d.status, phase="Deploying", message=f"Job {s.job_id} is {info.state}; waiting for every vertex to run."
        )
        return d.finish(requeue=POLL)
    if spec.state == "suspended" and info.state == "RUNNING":
        return start_savepoint_op(d, spec, st.SUSPEND)  # a spec change is applied at resume
    if blocked:
        d.status = replace(d.status, phase="Running" if info.all_vertices_running else d.status.phase)
        return d.finish()
    if s.deployed is not None and desired.only_parallelism_differs(s.deployed):
        return start_rescale(d, spec)
    return start_upgrade(d, spec)
