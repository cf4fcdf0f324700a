"""Application mode: what the planner does while the job's own cluster comes up.

A start in application mode is the cluster's objects applied for the job id recorded first; the
JobManager then runs the job under that id. Until its REST API answers and lists the job, nothing is
known of the job: the planner waits (saying how far the pods are and why one cannot start), and a
start that does not come up within stabilityTimeoutSeconds fails like any other start (rollback or
stall, by restoreFailurePolicy). Outside a start, a JobManager that does not answer, or answers without
listing its job yet (plan.steady), is being replaced (its pod restarted): the planner waits for it,
never taking its job for lost; except the cluster of a start that already failed, which nothing waits
for (a rollback or a fixed spec replaces it).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from flinkop import status as st
from flinkop.flink_client import JobInfo
from flinkop.observation import AppView
from flinkop.plan.common import POLL, Decision, Draft, naive, phase_for
from flinkop.spec import FlinkJobSpec
from flinkop.status import Upgrade
from flinkop.times import format_time_ms, parse_time


def starting_here(up: Upgrade | None, app: AppView | None) -> bool:
    """The cluster there is the one this start applied (its JobManager runs the new job's id)."""
    return (
        up is not None
        and app is not None
        and up.step in (st.SUBMITTING, st.STARTING)
        and up.new_job_id is not None
        and app.job_id == up.new_job_id
    )


def cluster_starting(d: Draft, spec: FlinkJobSpec) -> Decision:
    """The cluster is there and its JobManager does not answer yet."""
    app = d.inp.observation.app
    assert app is not None
    up = d.status.upgrade
    if up is not None and starting_here(up, app):
        return waiting_for_start(d, spec, up, f"its cluster is starting: {app.readiness}")
    if not d.inp.deleting and failed_start_there(d, app):
        # The cluster is the one of a start that already failed (it did not come up within
        # stabilityTimeoutSeconds): it is not waited for any more. A rollback replaces it with the last
        # stable spec's; after a stall, a fixed spec replaces it and a suspend removes it.
        from flinkop.plan.steady import plan_steady
        from flinkop.plan.upgrade import submitting

        return submitting(d, spec, up) if up is not None else plan_steady(d, spec)
    message = f"The application cluster of job {app.job_id} does not answer yet: {app.readiness}."
    if app.problem and d.status.message != message:
        d.event("ClusterNotReady", message, warning=True)
    # A job at rest whose JobManager is being replaced is not Ready until it answers and runs the job again.
    phase = "Deploying" if d.status.phase == "Running" and up is None and not d.inp.deleting else d.status.phase
    d.status = replace(d.status, phase=phase, message=message)
    return d.finish(requeue=POLL)


FAILED_START = frozenset({"RestoreFailed", "DeployFailed", "UnstableStart"})  # start_failed's stall reasons


def failed_start_there(d: Draft, app: AppView) -> bool:
    """The cluster there runs the job of a start that failed: a rollback from it is about to be
    submitted, or the start stalled (restoreFailurePolicy, or nothing to roll back to)."""
    s = d.status
    up = s.upgrade
    if up is not None:
        return up.kind == st.ROLLBACK and up.step == st.SUBMITTING and app.job_id == up.from_job_id
    return s.phase == "Failed" and s.failure is not None and s.failure.reason in FAILED_START and app.job_id == s.job_id


def waiting_for_start(d: Draft, spec: FlinkJobSpec, up: Upgrade, why: str) -> Decision:
    """Job `up.new_job_id` is not running yet on the cluster applied for it: wait, up to the stability
    gate's deadline; past it, the start failed as one that is not stable in time does (`UnstableStart`:
rollback or stall by restoreFailurePolicy)."""
    from flinkop.plan.upgrade import start_failed  # the upgrade module uses this one too

    app = d.inp.observation.app
    started = parse_time(up.step_started_at) or naive(d.inp.now)
    if naive(d.inp.now) > started + timedelta(seconds=spec.stability_timeout_seconds):
        cause = (
            f"job {up.new_job_id} did not start within stabilityTimeoutSeconds ({spec.stability_timeout_seconds} s): "
            f"{why}"
        )
        return start_failed(d, spec, up, cause, unstable=True)  # not stable in time: the stability gate's reason
    phase = phase_for(up, d.status.phase)
    message = f"{phase}: job {up.new_job_id} is not running yet; {why}."
    if app is not None and app.problem and d.status.message != message:
        d.event("ClusterNotReady", message, warning=True)
    d.status = replace(d.status, phase=phase, message=message)
    return d.finish(requeue=POLL)


def job_start_time(info: JobInfo) -> str | None:
    """Flink's start-time of a job, as the status keeps it (None: Flink gave none)."""
    if info.start_time_ms <= 0:
        return None
    return format_time_ms(datetime(1970, 1, 1) + timedelta(milliseconds=info.start_time_ms))


def note_job_start(d: Draft, info: JobInfo) -> None:
    """Records when Flink started the running job. A later start of the same job id is a new JobMaster
    (a rescale, in place or not, keeps it): in application mode without high availability, a JobManager
    that restarted and ran the job again from the savepoint in its start arguments. That is said once,
    in a Warning Event and the status message: what the job processed since then it processes again."""
    started = job_start_time(info)
    if started is None or started == d.status.job_start_time:
        return
    recorded, now_started = parse_time(d.status.job_start_time), parse_time(started)
    obs = d.inp.observation
    later = recorded is not None and now_started is not None and now_started > recorded
    if later and obs.app is not None and not obs.cluster_ha:
        source = d.status.started_from
        restored = (
            f"from savepoint {source}, the one its cluster was started from, not from its latest checkpoint"
            if source
            else "without state, as its cluster was started without a savepoint"
        )
        message = (
            f"Job {d.status.job_id} was started again at {started} by a new JobManager (its pod restarted, and "
            f"the cluster has no high availability): it ran again {restored}. What it processed since that start "
            "is processed again, or lost for sources that cannot replay it. Configure Flink's Kubernetes high "
            "availability in spec.cluster.flinkConfiguration to recover from the latest checkpoint."
        )
        d.event("JobManagerRestarted", message, warning=True)
        d.status = replace(d.status, message=message)
    d.status = replace(d.status, job_start_time=started)
