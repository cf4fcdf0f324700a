"""Sequences that once left a FlinkJob short of its spec while its status said it was done: the
planner decides from what is wanted against what is, whatever happened before."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flinkop.actions import SubmitJob, TriggerSavepoint
from flinkop.observation import Observation
from flinkop.status import Savepoint
from flinkop.times import format_time_ms
from planner_kit import (
    JAR_IDS,
    JAR_V1,
    JAR_V2,
    NEW_JOB,
    OLD_JOB,
    ROLLBACK_JOB,
    SP_PATH,
    STABLE,
    TRIGGER,
    V1,
    at,
    cond_status,
    condition,
    iso,
    jar_uploaded,
    job,
    make_spec,
    run,
    savepoint,
    steady,
)

SUSPEND = make_spec(state="suspended")
V2 = make_spec(jar={"uri": JAR_V2})


def _suspended_just_now() -> tuple[Savepoint, object]:
    """Runs the suspend through the planner: the stop's savepoint completes at at(2)."""
    started = run(SUSPEND, steady(V1), Observation(job=job(OLD_JOB)), fresh_id=TRIGGER)
    assert isinstance(started.action, TriggerSavepoint) and started.action.mode == "stop"
    done = run(
        SUSPEND,
        started.status,
        Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)),
        now=at(2),
    )
    assert done.status.phase == "Suspended" and done.status.last_savepoint is not None
    return done.status.last_savepoint, done.status


def test_a_just_suspended_job_still_listed_running_is_never_stopped_a_second_time() -> None:
    _, suspended = _suspended_just_now()
    for spec in (SUSPEND, V1):  # still suspended, or already resumed
        d = run(spec, suspended, Observation(job=job(OLD_JOB)), now=at(2.5), fresh_id="f" * 32)
        assert d.action is None, d.action
        assert d.status.phase == "Suspended"
        assert d.requeue_after is not None
        assert "waiting for Flink to report that it ended" in d.status.message


def test_resume_with_no_other_change_restores_the_suspend_savepoint_once_the_jar_is_checked() -> None:
    _, suspended = _suspended_just_now()
    obs = Observation(job=job(OLD_JOB, "FINISHED"))
    waiting = run(V1, suspended, obs, now=at(7))
    assert waiting.needs_jar == V1.deployment, "the pass must read the jar it waits for"
    assert cond_status(waiting)["Reconciling"] == "True" and waiting.requeue_after is not None
    d = run(V1, suspended, replace(obs, jar=jar_uploaded()), now=at(7), fresh_id=NEW_JOB)
    assert d.action == SubmitJob(JAR_IDS[JAR_V1], NEW_JOB, V1.deployment, SP_PATH, False)
    assert d.status.phase == "Deploying"


def _rolled_back(spec: object = V2) -> object:
    """V2 failed to restore and V1 was rolled back to: the stall the planner itself records."""
    from planner_kit import savepoint_taken

    taken = savepoint_taken(V1, V2)
    failed = Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "FAILED", failure="not mapped"))
    rolling = run(V2, taken, replace(failed, jar=jar_uploaded(JAR_V2)), now=at(20), fresh_id=ROLLBACK_JOB)
    submitted = run(V2, rolling.status, Observation(job=job(NEW_JOB, "FAILED"), jar=jar_uploaded()), now=at(21))
    done = run(
        V2,
        submitted.status,
        Observation(job=job(NEW_JOB, "FAILED"), new_job=job(ROLLBACK_JOB), new_job_progress=STABLE),
        now=at(30),
    )
    assert condition(done, "Stalled")["reason"] == "RestoreFailed"
    return done.status


def test_after_a_rollback_the_same_spec_and_policies_stay_stalled() -> None:
    d = run(V2, _rolled_back(), Observation(job=job(ROLLBACK_JOB), jar=jar_uploaded(JAR_V2)), now=at(90))
    assert d.action is None
    assert condition(d, "Stalled")["reason"] == "RestoreFailed"
    assert d.requeue_after is None


@pytest.mark.parametrize(
    "policy",
    [
        {"allowNonRestoredState": "OnJarChange"},
        {"allowNonRestoredState": "Always"},
        {"restoreFailurePolicy": "Fail"},
        {"savepointMode": "cancel"},
        {"drain": True},
        {"savepointDirectory": "file:///other-savepoints"},
    ],
    ids=lambda p: next(iter(p)),
)
def test_a_policy_change_after_a_rollback_tries_the_upgrade_again(policy: dict[str, object]) -> None:
    fixed = make_spec(jar={"uri": JAR_V2}, **policy)
    obs = Observation(job=job(ROLLBACK_JOB), jar=jar_uploaded(JAR_V2))
    d = run(fixed, _rolled_back(), obs, now=at(90), fresh_id=TRIGGER, generation=2)
    assert isinstance(d.action, TriggerSavepoint), (d.action, d.status.message)
    assert d.action.job_id == ROLLBACK_JOB
    assert condition(d, "Stalled")["status"] == "False"
    assert condition(d, "Reconciling")["status"] == "True"


def test_a_stateless_upgrade_mode_after_a_rollback_tries_the_upgrade_again() -> None:
    fixed = make_spec(jar={"uri": JAR_V2}, upgradeMode="stateless")
    d = run(fixed, _rolled_back(), Observation(job=job(ROLLBACK_JOB), jar=jar_uploaded(JAR_V2)), now=at(90))
    assert d.action is not None and condition(d, "Stalled")["status"] == "False"


def test_a_job_terminated_stall_lifts_when_a_policy_changes_and_restarts_from_the_last_savepoint() -> None:
    status = steady(V1, last_savepoint=Savepoint(SP_PATH, iso(at(-60)), "periodic"))
    ended = run(V1, status, Observation(job=job(OLD_JOB, "FAILED", failure="boom")), now=at(1))
    assert condition(ended, "Stalled")["reason"] == "JobTerminated"
    still = run(V1, ended.status, Observation(job=job(OLD_JOB, "FAILED")), now=at(2))
    assert condition(still, "Stalled")["status"] == "True" and still.action is None
    changed = make_spec(allowNonRestoredState="Always")
    obs = Observation(job=job(OLD_JOB, "FAILED"), jar=jar_uploaded())
    retry = run(changed, ended.status, obs, now=at(3), fresh_id=NEW_JOB, generation=2)
    assert retry.action == SubmitJob(JAR_IDS[JAR_V1], NEW_JOB, V1.deployment, SP_PATH, True)
    assert condition(retry, "Stalled")["status"] == "False"


def test_a_job_terminated_without_any_savepoint_stays_stalled_on_a_policy_change() -> None:
    """Restarting it would start without state: only a restartNonce (a new deployment) does that."""
    ended = run(V1, steady(V1), Observation(job=job(OLD_JOB, "FAILED", failure="boom")), now=at(1))
    changed = make_spec(allowNonRestoredState="Always")
    d = run(changed, ended.status, Observation(job=job(OLD_JOB, "FAILED"), jar=jar_uploaded()), now=at(3))
    assert d.action is None
    assert condition(d, "Stalled")["reason"] == "JobTerminated"
    assert "restartNonce" in condition(d, "Stalled")["message"]


def test_an_upgrade_that_ends_after_the_spec_changed_again_is_followed_by_a_pass_at_once() -> None:
    from planner_kit import savepoint_taken

    taken = savepoint_taken(V1, V2)
    v3 = make_spec(jar={"uri": JAR_V2}, args=["--v3"])
    d = run(
        v3, taken, Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB), new_job_progress=STABLE), now=at(15)
    )
    assert d.status.phase == "Running" and d.status.deployed == V2.deployment
    assert cond_status(d)["Reconciling"] == "True"
    assert d.requeue_after is not None


def test_suspend_savepoint_is_kept_as_the_restore_point_record() -> None:
    last, _ = _suspended_just_now()
    assert last == Savepoint(SP_PATH, iso(at(2)), "suspend", triggered_at=format_time_ms(at(0)))


def test_a_restore_failure_names_the_lost_operator_through_the_rollback_to_the_stalled_condition() -> None:
    from planner_kit import savepoint_taken

    diagnosis = "operator uid `counter` (name `counter`) holds state the new version has no operator for: keep it."
    failed = Observation(
        job=job(OLD_JOB, "FINISHED"),
        new_job=job(NEW_JOB, "FAILED", failure="Cannot map checkpoint/savepoint state for operator 0da0"),
        jar=jar_uploaded(JAR_V2),
        restore_diagnosis=diagnosis,
    )
    rolling = run(V2, savepoint_taken(V1, V2), failed, now=at(20), fresh_id=ROLLBACK_JOB)
    assert "uid `counter`" in rolling.status.message
    assert any("uid `counter`" in e.message for e in rolling.events)
    submitted = run(V2, rolling.status, Observation(job=job(NEW_JOB, "FAILED"), jar=jar_uploaded()), now=at(21))
    done = run(
        V2,
        submitted.status,
        Observation(job=job(NEW_JOB, "FAILED"), new_job=job(ROLLBACK_JOB), new_job_progress=STABLE),
        now=at(30),
    )
    assert "uid `counter`" in condition(done, "Stalled")["message"]


def test_a_starting_job_is_running_as_soon_as_the_live_overview_says_every_task_runs() -> None:
    from flinkop.flink_client import JobInfo
    from flinkop.observe import with_live_tasks

    cached = job(NEW_JOB, "RUNNING", vertices=("RUNNING", "INITIALIZING"))  # details cached seconds ago
    live = JobInfo(NEW_JOB, "test-job", "RUNNING", tasks=(4, 4))
    merged = with_live_tasks(cached, live)
    assert merged.info is not None and merged.info.all_vertices_running
    assert merged.info.parallelism == 2  # still from the details
    stalled = with_live_tasks(job(NEW_JOB), JobInfo(NEW_JOB, "test-job", "RUNNING", tasks=(3, 4)))
    assert stalled.info is not None and not stalled.info.all_vertices_running


def test_a_starting_job_that_ended_is_taken_as_ended_only_with_its_details_and_their_exception() -> None:
    from flinkop.flink_client import JobInfo
    from flinkop.observe import with_live_tasks

    failed_live = JobInfo(NEW_JOB, "test-job", "FAILED", tasks=(0, 4))
    waiting = with_live_tasks(job(NEW_JOB), failed_live)
    assert waiting.info is not None and not waiting.info.terminal and not waiting.info.all_vertices_running
    ended = with_live_tasks(job(NEW_JOB, "FAILED", failure="boom"), failed_live)
    assert ended.info is not None and ended.info.terminal and ended.failure == "boom"


def test_a_change_undone_while_the_upgrade_waits_to_retry_its_savepoint_drops_the_upgrade() -> None:
    from flinkop.plan import record_action_failure
    from planner_kit import upgrade_started

    started = upgrade_started(V1, V2)
    assert started.upgrade is not None and isinstance(started.upgrade, object)
    failed = record_action_failure(
        started, TriggerSavepoint(OLD_JOB, TRIGGER, "file:///savepoints", "stop"), "snapshot failed", at(1)
    )
    assert failed.upgrade is not None and failed.upgrade.trigger_id is None
    # Still wanted: the retry waits.
    waiting = run(V2, failed, Observation(job=job(OLD_JOB), jar=jar_uploaded(JAR_V2)), now=at(3))
    assert waiting.status.upgrade is not None and waiting.action is None
    # Undone: the job keeps running what is wanted again, no stop is ever triggered.
    undone = run(V1, failed, Observation(job=job(OLD_JOB)), now=at(3), generation=3)
    assert undone.status.upgrade is None and undone.action is None
    assert "UpgradeCancelled" in [e.reason for e in undone.events]
    rest = run(V1, undone.status, Observation(job=job(OLD_JOB)), now=at(4), generation=3)
    assert cond_status(rest) == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
