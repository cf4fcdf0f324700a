"""Application mode: what the planner does while the job's own cluster comes up.

A start in application mode is the cluster's objects applied for the job id recorded first; the
JobManager then runs the job under that id. Until its REST API answers and lists the job, nothing is
known of the job: the planner waits (saying how far the pods are and why one cannot start), and a
start that does not come up within stabilityTimeoutSeconds fails like any other start (rollback or
stall, by restoreFailurePolicy). Outside a start, a JobManager that does not answer is being replaced
(its pod restarted): the planner waits for it, never taking its job for lost; except the cluster of a
start that already failed, which nothing waits for (a rollback or a fixed spec replaces it).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from flinkop import status as st
from flinkop.observation import AppView
from flinkop.plan.common import POLL, Decision, Draft, naive, phase_for
from flinkop.spec import FlinkJobSpec
from flinkop.status import Upgrade
from flinkop.times import parse_time


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
    d.status = replace(d.status, message=message)
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
