"""Parallelism-only changes: at most one per interval, in place through the adaptive scheduler,
or through a savepoint. In application mode an in-place rescale sets the job's own cluster's
TaskManagers to ceil(parallelism / slots) first (the same action), then the job's resource
requirements.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from flinkop import status as st
from flinkop.actions import (
    CancelJob,
    RescaleInPlace,
    TriggerSavepoint,
)
from flinkop.plan.common import POLL, Decision, Draft, lost_in_flight, naive, stall, wait_for_upgrade_slot
from flinkop.plan.upgrade import start_upgrade
from flinkop.spec import FlinkJobSpec
from flinkop.status import Upgrade
from flinkop.times import format_time, parse_time


def start_rescale(d: Draft, spec: FlinkJobSpec) -> Decision:
    """A parallelism-only change: at most one per minRescaleIntervalSeconds (the newest value wins),
    in place when the cluster runs the adaptive scheduler, else through a savepoint."""
    s = d.status
    now = naive(d.inp.now)
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
        return wait_for_upgrade_slot(d, f"Rescale to parallelism {target}")
    adaptive = d.inp.observation.cluster_scheduler == "adaptive"
    if spec.rescale_mode != "Savepoint" and adaptive:
        return rescale_started(start_in_place(d, spec), now)
    if spec.rescale_mode == "InPlace":
        message = (
            "spec.rescaleMode is InPlace but the cluster does not run the adaptive scheduler "
            "(jobmanager.scheduler: adaptive); use Auto or Savepoint, or enable it. The job was not touched."
        )
        return stall(d, "InPlaceRescaleUnsupported", message, spec.deployment)
    return rescale_started(start_upgrade(d, spec), now)


def rescale_started(decision: Decision, now: datetime) -> Decision:
    """Counts a rescale for minRescaleIntervalSeconds once it really touches the job."""
    if isinstance(decision.action, (TriggerSavepoint, CancelJob, RescaleInPlace)):
        return replace(decision, status=replace(decision.status, last_rescale_at=format_time(now)))
    return decision


def start_in_place(d: Draft, spec: FlinkJobSpec) -> Decision:
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
    action = RescaleInPlace(
        s.job_id, tuple((v.id, target.parallelism) for v in job.info.vertices), target.taskmanagers
    )
    d.status = replace(s, phase="Upgrading", upgrade=up, failure=None, message=f"Rescaling: {action.describe()}.")
    d.event("Rescaling", action.describe())
    return d.finish(action=action, requeue=POLL)


def rescaling(d: Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    """An in-place rescale in flight: done once every vertex runs at the target parallelism."""
    job = d.inp.observation.job
    target = up.target.parallelism
    lost = lost_in_flight(d, spec, up)
    if lost is not None:
        return lost
    if job is None or job.info is None or job.info.terminal:
        state = job.state if job else "MISSING"
        message = f"Job {up.from_job_id} is {state} during an in-place rescale; it was not resubmitted."
        d.status = replace(d.status, upgrade=None, job_state=state)
        return stall(d, "JobTerminated", message, spec.deployment, phase="Failed")
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
    started = parse_time(up.step_started_at) or naive(d.inp.now)
    if (naive(d.inp.now) - started).total_seconds() > spec.in_place_rescale_timeout_seconds:
        message = (
            f"Job {up.from_job_id} did not reach parallelism {target} in place within "
            f"inPlaceRescaleTimeoutSeconds ({spec.in_place_rescale_timeout_seconds} s)"
        )
        d.status = replace(d.status, upgrade=None)
        if spec.rescale_mode == "InPlace":
            return stall(d, "InPlaceRescaleTimedOut", message + "; the job keeps running.", up.target)
        d.event("InPlaceRescaleTimedOut", message + "; rescaling through a savepoint instead.", warning=True)
        return start_upgrade(d, spec)
    requirements = d.inp.observation.resource_requirements or {}
    if any(n != target for n in requirements.values()) or not requirements:
        action = RescaleInPlace(job.job_id, tuple((v.id, target) for v in info.vertices), up.target.taskmanagers)
        return d.finish(action=action, requeue=POLL)  # never set (a crash before the call), or reset
    d.status = replace(
        d.status, job_state=info.state, message=f"Rescaling job {up.from_job_id} in place to parallelism {target}."
    )
    return d.finish(requeue=POLL)
