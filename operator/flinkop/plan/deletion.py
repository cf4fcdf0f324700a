"""Deletion: a final savepoint before the resource is released, and giving up after the timeout."""

from __future__ import annotations

from dataclasses import replace

from flinkop import retention
from flinkop import status as st
from flinkop.actions import (
    TriggerSavepoint,
)
from flinkop.plan.common import POLL, Decision, Draft, PlanInput, naive, poll_after, savepoint_directory
from flinkop.plan.savepoints import retention_step, savepointing
from flinkop.spec import FlinkJobSpec
from flinkop.status import Upgrade
from flinkop.times import format_time


def past_delete_deadline(inp: PlanInput) -> bool:
    return inp.delete_deadline is not None and naive(inp.now) >= naive(inp.delete_deadline)


def delete_given_up(d: Draft, why: str) -> Decision:
    """Deletion past its deadline when nothing can be done: release the resource, say what was left."""
    job = d.status.job_id
    left = f"job {job} may still run on the cluster" if job else "no job was recorded"
    if d.inp.observation.app is not None:  # application mode: its cluster goes with the FlinkJob
        left = f"job {job} ends without a savepoint as its cluster is removed with the FlinkJob" if job else left
    message = f"Gave up on a final savepoint after the deletion timeout: {why}; {left}."
    d.event("DeleteGaveUp", message, warning=True)
    d.status = replace(d.status, upgrade=None, message=message)
    return d.finish(done_deleting=True)


def _left_behind(d: Draft, job_id: str | None, session_text: str) -> str:
    """What becomes of a job the deletion gave up on: on a session cluster it stays as it is; in
    application mode it ends, without a final savepoint, when its cluster goes with the FlinkJob."""
    if d.inp.observation.app is not None:
        return f"job {job_id} ends without a final savepoint, as its cluster is removed with the FlinkJob"
    return session_text


def plan_delete(d: Draft, spec: FlinkJobSpec) -> Decision:
    s = d.status
    obs = d.inp.observation
    up = s.upgrade
    past_deadline = d.inp.delete_deadline is not None and naive(d.inp.now) >= naive(d.inp.delete_deadline)
    if up is not None and up.kind == st.DELETE:
        if past_deadline:
            left = _left_behind(d, up.from_job_id, "the job was left as it is on the cluster")
            message = (
                f"Gave up on a final savepoint of job {up.from_job_id} after the deletion timeout "
                f"({up.last_error or 'savepoint not completed'}); {left}."
            )
            d.event("DeleteGaveUp", message, warning=True)
            d.status = replace(s, upgrade=None, message=message)
            return d.finish(done_deleting=True)
        return savepointing(d, spec, up)
    active = obs.new_job if obs.new_job is not None and obs.new_job.active else None
    if active is None and obs.job is not None and obs.job.active:
        active = obs.job
    if up is not None and up.step == st.SAVEPOINTING and obs.savepoint and obs.savepoint.status == "IN_PROGRESS":
        return d.finish(requeue=POLL)  # an upgrade's savepoint is under way: let it end first
    if active is None or active.info is None:
        no_cluster = obs.app is not None and not obs.app.answering  # application mode, suspended: none to ask
        if spec.dispose_savepoints_on_delete and no_cluster and retention.disposable_on_delete(d.status, spec):
            d.event(
                "SavepointsKept",
                "disposeSavepointsOnDelete: the savepoints in status.savepointHistory are kept, as no JobManager "
                "of this job runs to dispose of them (it was suspended); remove them from the savepoint directory.",
                warning=True,
            )
        elif spec.dispose_savepoints_on_delete:
            step = retention_step(d, spec, retention.disposable_on_delete(d.status, spec))
            if step is not None:
                return step
        final = s.last_savepoint
        if final is not None and final.reason == "delete":
            d.event("Deleted", f"The final savepoint {final.path} is kept: start from it with initialSavepointPath.")
        else:
            d.event("Deleted", "No job of this FlinkJob runs on the cluster; nothing to stop.")
        return d.finish(done_deleting=True)
    directory = savepoint_directory(spec, obs)
    if directory is None or past_deadline:
        why = "no savepoint directory is configured" if directory is None else "the deletion timed out"
        left = _left_behind(d, active.job_id, f"job {active.job_id} was left running on the cluster")
        message = f"No final savepoint ({why}): {left}."
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
    return d.finish(action=action, requeue=poll_after(action))
