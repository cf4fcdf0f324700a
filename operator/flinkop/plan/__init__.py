"""The planner: a pure function from (spec, status, observation) to the next step.

It decides the status to record (the write-ahead log: any trigger or job id the action will use
is in it) and at most one side effect to take after that status is written. It never performs
I/O, reads no clock and makes no random ids: `now` and `fresh_id` come in with the input.

Its parts: `steady` (nothing in flight: compare wanted with running), `upgrade` (deploys,
upgrades, rollbacks), `rescale`, `savepoints` (suspend, manual and periodic savepoints, retention),
`deletion`, `outcomes` (what an action's result does to the status), and `common` (shared by all).
"""

from __future__ import annotations

from dataclasses import replace

from flinkop import status as st
from flinkop.plan.app import cluster_starting
from flinkop.plan.common import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    NEEDS_A_PERSON,
    POLL,
    POLL_FAST,
    POLL_SAVEPOINT,
    POLL_STOPPING,
    Decision,
    Draft,
    Event,
    PlanInput,
    backoff_seconds,
    flink_unreachable,
    stall,
)
from flinkop.plan.deletion import delete_given_up, past_delete_deadline, plan_delete
from flinkop.plan.outcomes import jar_missing, record_action_failure, record_action_result
from flinkop.plan.rescale import rescaling
from flinkop.plan.savepoints import savepointing
from flinkop.plan.steady import plan_steady
from flinkop.plan.upgrade import cancelling, submitting
from flinkop.spec import FlinkJobSpec, SpecError
from flinkop.status import Upgrade


def plan(inp: PlanInput) -> Decision:
    d = Draft(inp, inp.status)
    spec = inp.spec
    if inp.deleting and past_delete_deadline(inp):
        if isinstance(spec, SpecError):
            return delete_given_up(d, f"the spec is invalid ({spec})")
        if inp.observation.flink_error is not None:
            return delete_given_up(d, f"Flink is unreachable ({inp.observation.flink_error})")
        if inp.observation.credentials_error is not None:
            return delete_given_up(d, f"no credentials for Flink ({inp.observation.credentials_error})")
        if inp.observation.refusal is not None:
            return delete_given_up(d, inp.observation.refusal[1])
        app = inp.observation.app
        if app is not None and app.starting:
            return delete_given_up(d, f"its application cluster does not answer ({app.readiness})")
    if isinstance(spec, SpecError):
        if inp.deleting and d.status.job_id is None and d.status.upgrade is None:
            d.event("Deleted", "No job was ever started for this FlinkJob (its spec is invalid); nothing to stop.")
            return d.finish(done_deleting=True)
        return stall(d, "InvalidSpec", f"The spec is invalid: {spec}", None)
    obs = inp.observation
    if obs.refusal is not None:  # the operator's settings forbid this endpoint or path: Flink was not asked
        if inp.deleting and d.status.job_id is None and d.status.upgrade is None:
            d.event("Deleted", "No job was ever started for this FlinkJob; nothing to stop.")
            return d.finish(done_deleting=True)
        return stall(d, obs.refusal[0], obs.refusal[1], None)
    if obs.credentials_error is not None:
        message = f"Cannot talk to Flink: {obs.credentials_error}. Nothing is changed until that is fixed."
        return stall(d, "CredentialsUnavailable", message, None)
    if obs.flink_error is not None:
        return flink_unreachable(d, spec, obs.flink_error)
    if obs.app is not None:  # application mode: the cluster's pods, as this pass saw them
        d.status = replace(d.status, cluster_readiness=obs.app.readiness or "no cluster")
    if obs.app is not None and obs.app.starting:
        return cluster_starting(d, spec)  # nothing is known of its job until its JobManager answers
    if inp.deleting:
        return plan_delete(d, spec)
    if d.status.upgrade is not None:
        return continue_upgrade(d, spec, d.status.upgrade)
    return plan_steady(d, spec)


def continue_upgrade(d: Draft, spec: FlinkJobSpec, up: Upgrade) -> Decision:
    if up.step == st.SAVEPOINTING:
        return savepointing(d, spec, up)
    if up.step == st.CANCELLING:
        return cancelling(d, up)
    if up.step == st.RESCALING:
        return rescaling(d, spec, up)
    return submitting(d, spec, up)


__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "NEEDS_A_PERSON",
    "POLL",
    "POLL_FAST",
    "POLL_SAVEPOINT",
    "POLL_STOPPING",
    "Decision",
    "Event",
    "PlanInput",
    "backoff_seconds",
    "jar_missing",
    "plan",
    "record_action_failure",
    "record_action_result",
]
