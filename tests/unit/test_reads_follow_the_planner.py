"""The planner's needs drive the reads: every decision that waits for a jar check finds it made by
the observer's own rule (`observe.jar_to_check`) for the same spec and status, so no pass waits for
a read that no pass would make. The inputs go through every steady-state, upgrade, suspend, resume,
rollback and deletion situation the planner tells apart, each with the jar check missing."""

from __future__ import annotations

import itertools
from dataclasses import replace

from flinkop import status as st
from flinkop.observation import JobView, Observation
from flinkop.observe import jar_to_check
from flinkop.plan import Decision
from flinkop.spec import FlinkJobSpec
from flinkop.status import Failure, Savepoint, Status, Upgrade
from planner_kit import (
    JAR_V2,
    NEW_JOB,
    OLD_JOB,
    SP_PATH,
    TRIGGER,
    V1,
    at,
    gone,
    iso,
    jar_uploaded,
    job,
    make_spec,
    run,
    savepoint,
    savepoint_taken,
    steady,
    upgrade_started,
)

V2 = make_spec(jar={"uri": JAR_V2})
SPECS: dict[str, FlinkJobSpec] = {
    "same": V1,
    "suspended": make_spec(state="suspended"),
    "new-jar": V2,
    "new-jar-suspended": make_spec(jar={"uri": JAR_V2}, state="suspended"),
    "digest": make_spec(jar={"uri": V1.deployment.jar_uri, "sha256": "cd" * 32}),
    "parallelism": make_spec(parallelism=4),
    "restart": make_spec(restartNonce=1),
    "stateless": make_spec(jar={"uri": JAR_V2}, upgradeMode="stateless"),
    "policy": make_spec(allowNonRestoredState="Always"),
}

SUSPENDED_SP = Savepoint(SP_PATH, iso(at(-120)), "suspend")


def _statuses() -> dict[str, Status]:
    running = steady(V1)
    deploying = replace(
        Status(phase="Deploying"),
        upgrade=Upgrade.begin(st.DEPLOY, st.SUBMITTING, V1.deployment, iso(at(-5)), new_job_id=NEW_JOB),
    )
    rollback = replace(
        savepoint_taken(V1, V2),
        phase="RollingBack",
        upgrade=Upgrade.begin(
            st.ROLLBACK,
            st.SUBMITTING,
            V1.deployment,
            iso(at(-5)),
            source=V2.deployment,
            from_job_id=NEW_JOB,
            savepoint_path=SP_PATH,
            new_job_id="9" * 32,
        ),
    )
    return {
        "never-deployed": Status(),
        "running": running,
        "suspended": replace(running, phase="Suspended", last_savepoint=SUSPENDED_SP),
        "suspended-just-now": replace(
            running, phase="Suspended", last_savepoint=replace(SUSPENDED_SP, time=iso(at(-1)))
        ),
        "failed": replace(running, phase="Failed", failure=Failure("JobTerminated", "ended", None)),
        "rolled-back": replace(running, failure=Failure("RestoreFailed", "rolled back", V2.attempt_key(V2.deployment))),
        "upgrade-savepointing": upgrade_started(V1, V2),
        "upgrade-submitting": savepoint_taken(V1, V2),
        "deploy-submitting": deploying,
        "rollback-submitting": rollback,
    }


JOBS: dict[str, JobView | None] = {
    "none": None,
    "running": job(OLD_JOB),
    "starting": job(OLD_JOB, "RUNNING", vertices=("RUNNING", "INITIALIZING")),
    "finished": job(OLD_JOB, "FINISHED"),
    "failed": job(OLD_JOB, "FAILED", failure="boom"),
    "gone": gone(OLD_JOB),
}
NEW_JOBS: dict[str, JobView | None] = {"none": None, "gone": gone(NEW_JOB), "running": job(NEW_JOB)}
SAVEPOINTS = {"none": None, "completed": savepoint("COMPLETED", SP_PATH), "running": savepoint("IN_PROGRESS")}

STATUSES = _statuses()
CASES = list(itertools.product(SPECS, STATUSES, JOBS, NEW_JOBS, SAVEPOINTS, (False, True)))


def _decide(spec_name: str, status_name: str, job_name: str, new_name: str, sp_name: str, deleting: bool) -> Decision:
    obs = Observation(job=JOBS[job_name], new_job=NEW_JOBS[new_name], savepoint=SAVEPOINTS[sp_name])
    return run(SPECS[spec_name], STATUSES[status_name], obs, now=at(0), deleting=deleting, fresh_id=TRIGGER)


def test_every_decision_waiting_for_a_jar_check_finds_the_observer_reading_that_jar() -> None:
    missed = []
    for case in CASES:
        spec_name, status_name, _, _, _, deleting = case
        decision = _decide(*case)
        if decision.needs_jar is None:
            continue
        read = jar_to_check(SPECS[spec_name], STATUSES[status_name], deleting)
        if read is None or read.fingerprint != decision.needs_jar.fingerprint:
            missed.append(f"{case}: the plan waits for {decision.needs_jar}, the observer reads {read}")
    assert not missed, "\n".join(missed)


def test_the_cases_include_decisions_that_wait_for_a_jar_check() -> None:
    """The table above is not vacuous: many of its decisions wait for a jar, the resume among them."""
    waiting = [c for c in CASES if _decide(*c).needs_jar is not None]
    assert len(waiting) > 20
    assert any(c[0] == "same" and c[1] == "suspended" and c[2] == "finished" for c in waiting)


def test_a_decision_with_the_jar_check_it_needs_does_not_wait_for_it_again() -> None:
    status = replace(steady(V1), phase="Suspended", last_savepoint=SUSPENDED_SP)
    waiting = run(V1, status, Observation(job=job(OLD_JOB, "FINISHED")))
    assert waiting.needs_jar == V1.deployment
    checked = run(V1, status, Observation(job=job(OLD_JOB, "FINISHED"), jar=jar_uploaded()))
    assert checked.needs_jar is None
    assert checked.action is not None


def test_no_decision_leaves_a_resource_idle_while_it_reports_reconciling() -> None:
    """Level-triggered: a pass always follows while the wanted state is not reached."""
    idle = []
    for case in CASES:
        decision = _decide(*case)
        reconciling = next(c for c in decision.status.conditions if c["type"] == "Reconciling")
        if reconciling["status"] == "True" and decision.requeue_after is None and not decision.done_deleting:
            idle.append(f"{case}: {decision.status.phase} {decision.status.message}")
    assert not idle, "\n".join(idle)
