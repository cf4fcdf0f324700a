"""The planner's savepoint lifecycle: suspend and resume, manual and periodic savepoints, retention
and disposal, and disposal on delete. Pure: statuses and observations are built as values."""

from __future__ import annotations

from dataclasses import replace

from flinkop import status as st
from flinkop.actions import DisposeSavepoint, SubmitJob, TriggerSavepoint
from flinkop.observation import Observation
from flinkop.plan import record_action_failure, record_action_result
from flinkop.retention import already_gone, disposable
from flinkop.status import Disposal, Savepoint
from flinkop.times import format_time_ms
from planner_kit import (
    FRESH,
    INITIAL_SP_PATH,
    NOW,
    OLD_JOB,
    SP_PATH,
    V1,
    at,
    condition,
    event_reasons,
    iso,
    jar_uploaded,
    job,
    make_spec,
    run,
    savepoint,
    steady,
)


def sp(n: int, reason: str = "upgrade", seconds_ago: float = 0) -> Savepoint:
    return Savepoint(f"file:///savepoints/savepoint-{n:06d}", iso(at(-seconds_ago)), reason)


def with_history(*savepoints: Savepoint, **fields: object) -> st.Status:
    """A steady status whose history is `savepoints`, newest first (the first is the last savepoint)."""
    return steady(V1, last_savepoint=savepoints[0], savepoint_history=tuple(savepoints), **fields)  # type: ignore[arg-type]


# -- suspend and resume ------------------------------------------------------------------------


def test_suspend_stops_the_job_with_a_savepoint_recorded_as_the_intent_first() -> None:
    d = run(make_spec(state="suspended"), steady(V1), Observation(job=job(OLD_JOB)))
    assert isinstance(d.action, TriggerSavepoint)
    assert d.action.mode == "stop" and d.action.job_id == OLD_JOB
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.SUSPEND
    assert d.status.upgrade.trigger_id == d.action.trigger_id == FRESH


def test_suspend_with_cancel_mode_cancels_with_a_savepoint() -> None:
    d = run(make_spec(state="suspended", savepointMode="cancel"), steady(V1), Observation(job=job(OLD_JOB)))
    assert isinstance(d.action, TriggerSavepoint) and d.action.mode == "cancel"


def test_completed_suspend_savepoint_leaves_phase_suspended_and_ready() -> None:
    spec = make_spec(state="suspended")
    started = run(spec, steady(V1), Observation(job=job(OLD_JOB))).status
    done = run(spec, started, Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)))
    assert done.action is None
    assert done.status.phase == "Suspended"
    assert done.status.upgrade is None
    assert done.status.last_savepoint is not None and done.status.last_savepoint.reason == "suspend"
    assert done.status.last_savepoint.path == SP_PATH
    later = run(spec, done.status, Observation(job=job(OLD_JOB, "FINISHED")), now=at(30))
    assert later.action is None and later.status.phase == "Suspended"
    assert condition(later, "Ready")["status"] == "True" and condition(later, "Ready")["reason"] == "Suspended"
    assert condition(later, "Reconciling")["status"] == "False"


def test_resume_restores_from_the_suspend_savepoint_with_the_spec_changed_meanwhile() -> None:
    suspended = steady(
        V1, phase="Suspended", job_state="FINISHED", last_savepoint=Savepoint(SP_PATH, iso(NOW), "suspend")
    )
    changed = make_spec(parallelism=3, allowNonRestoredState="OnJarChange")
    d = run(changed, suspended, Observation(job=job(OLD_JOB, "FINISHED"), jar=jar_uploaded()))
    assert isinstance(d.action, SubmitJob)
    assert d.action.savepoint_path == SP_PATH
    assert d.action.deployment.parallelism == 3
    assert d.action.allow_non_restored_state is False, "a parallelism-only change never needs -n"
    assert "Resuming" in event_reasons(d)


def test_a_job_that_is_still_suspended_is_not_restarted() -> None:
    suspended = steady(V1, phase="Suspended", job_state="FINISHED")
    d = run(make_spec(state="suspended", parallelism=5), suspended, Observation(job=job(OLD_JOB, "FINISHED")))
    assert d.action is None and d.status.phase == "Suspended"


def test_created_suspended_starts_nothing() -> None:
    d = run(make_spec(state="suspended"), st.Status(), Observation(jar=jar_uploaded()))
    assert d.action is None and d.status.phase == "Suspended"


# -- manual and periodic savepoints ------------------------------------------------------------


def test_new_savepoint_nonce_takes_a_savepoint_that_keeps_the_job_running() -> None:
    d = run(make_spec(savepointNonce=1), steady(V1), Observation(job=job(OLD_JOB)))
    assert isinstance(d.action, TriggerSavepoint) and d.action.mode == "keep"
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.SAVEPOINT
    assert d.status.upgrade.reason == "manual" and d.status.upgrade.nonce == 1
    assert condition(d, "Ready")["status"] == "True", "a savepoint that keeps the job running is not a rollout"
    assert condition(d, "Reconciling")["status"] == "False"


def test_completed_manual_savepoint_is_in_the_history_and_answers_the_nonce() -> None:
    spec = make_spec(savepointNonce=1)
    started = run(spec, steady(V1), Observation(job=job(OLD_JOB))).status
    done = run(spec, started, Observation(job=job(OLD_JOB), savepoint=savepoint("COMPLETED", SP_PATH)))
    assert done.status.upgrade is None and done.status.job_id == OLD_JOB
    assert done.status.savepoint_nonce == 1
    assert done.status.savepoint_history[0] == Savepoint(SP_PATH, iso(NOW), "manual", triggered_at=format_time_ms(NOW))
    again = run(spec, done.status, Observation(job=job(OLD_JOB)), now=at(5))
    assert again.action is None, "the same nonce asks for nothing more"


def test_a_nonce_set_at_creation_takes_no_savepoint() -> None:
    d = run(make_spec(savepointNonce=7), st.Status(), Observation(jar=jar_uploaded()))
    assert isinstance(d.action, SubmitJob)
    assert d.status.savepoint_nonce == 7


def test_periodic_savepoint_is_taken_once_the_interval_has_passed_since_the_last_one() -> None:
    spec = make_spec(savepointIntervalSeconds=60)
    recent = with_history(sp(1, seconds_ago=30))
    assert run(spec, recent, Observation(job=job(OLD_JOB))).action is None
    due = with_history(sp(1, seconds_ago=61))
    d = run(spec, due, Observation(job=job(OLD_JOB)))
    assert isinstance(d.action, TriggerSavepoint) and d.action.mode == "keep"
    assert d.status.upgrade is not None and d.status.upgrade.reason == "periodic"


def test_no_periodic_savepoint_while_an_upgrade_is_in_flight() -> None:
    spec = make_spec(savepointIntervalSeconds=1)
    in_flight = run(
        make_spec(parallelism=3, savepointIntervalSeconds=1),
        with_history(sp(1, seconds_ago=600)),
        Observation(job=job(OLD_JOB), jar=jar_uploaded()),
    ).status
    assert in_flight.upgrade is not None and in_flight.upgrade.kind == st.UPGRADE
    d = run(
        make_spec(parallelism=3, savepointIntervalSeconds=1),
        in_flight,
        Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS")),
        now=at(5),
    )
    assert d.action is None
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.UPGRADE
    assert spec.savepoint_interval_seconds == 1


# -- retention and disposal --------------------------------------------------------------------


def test_history_over_the_limit_disposes_of_the_oldest_first_and_never_the_restore_point() -> None:
    spec = make_spec(savepointHistoryLimit=2)
    status = with_history(sp(4), sp(3), sp(2), sp(1))
    assert disposable(status, spec, NOW) == [sp(1).path, sp(2).path]
    d = run(spec, status, Observation(job=job(OLD_JOB)))
    assert d.action == DisposeSavepoint(sp(1).path)
    assert d.status.disposal is not None and d.status.disposal.path == sp(1).path
    assert d.status.disposal.trigger_id is None, "the intent is recorded before Flink gives a trigger id"
    assert len(d.status.savepoint_history) == 4, "an entry stays until its disposal succeeded"


def test_the_last_savepoint_and_the_users_initial_savepoint_are_never_disposed_of() -> None:
    initial = Savepoint(INITIAL_SP_PATH, iso(at(-9000)), "upgrade")
    spec = make_spec(savepointHistoryLimit=1, savepointMaxAgeSeconds=10, initialSavepointPath=INITIAL_SP_PATH)
    status = with_history(sp(3, seconds_ago=8000), sp(2, seconds_ago=8500), initial)
    assert disposable(status, spec, NOW) == [sp(2).path]


def test_max_age_disposes_of_old_savepoints_within_the_limit() -> None:
    spec = make_spec(savepointMaxAgeSeconds=3600)
    status = with_history(sp(3, seconds_ago=10), sp(2, seconds_ago=4000), sp(1, seconds_ago=5000))
    assert disposable(status, spec, NOW) == [sp(1).path, sp(2).path]


def test_completed_disposal_removes_the_entry_from_the_history() -> None:
    spec = make_spec(savepointHistoryLimit=1)
    status = with_history(sp(2), sp(1), disposal=Disposal(sp(1).path, iso(NOW), trigger_id="t" * 32))
    d = run(spec, status, Observation(job=job(OLD_JOB), disposal=savepoint("COMPLETED")))
    assert [s.path for s in d.status.savepoint_history] == [sp(2).path]
    assert d.status.disposal is None
    assert "SavepointDisposed" in event_reasons(d)


def test_failed_disposal_keeps_the_entry_and_retries_later() -> None:
    spec = make_spec(savepointHistoryLimit=1)
    status = with_history(sp(2), sp(1), disposal=Disposal(sp(1).path, iso(NOW), trigger_id="t" * 32))
    d = run(spec, status, Observation(job=job(OLD_JOB), disposal=savepoint("FAILED", failure="Access denied")))
    assert len(d.status.savepoint_history) == 2
    assert d.status.disposal is not None and d.status.disposal.retry_at is not None
    assert d.action is None
    assert run(spec, d.status, Observation(job=job(OLD_JOB)), now=at(5)).action is None, "not before retry_at"
    retry = run(spec, d.status, Observation(job=job(OLD_JOB)), now=at(60))
    assert retry.action == DisposeSavepoint(sp(1).path)


def test_disposal_of_a_savepoint_already_gone_drops_the_entry() -> None:
    spec = make_spec(savepointHistoryLimit=1)
    status = with_history(sp(2), sp(1), disposal=Disposal(sp(1).path, iso(NOW), trigger_id="t" * 32))
    gone = savepoint("FAILED", failure="java.io.FileNotFoundException: Cannot find meta data file '_metadata'")
    d = run(spec, status, Observation(job=job(OLD_JOB), disposal=gone))
    assert [s.path for s in d.status.savepoint_history] == [sp(2).path]
    assert already_gone("Cannot find meta data file '_metadata' in directory")
    assert not already_gone("Access denied")


def test_disposal_trigger_id_is_recorded_after_the_request_and_a_refusal_backs_off() -> None:
    status = with_history(sp(2), sp(1), disposal=Disposal(sp(1).path, iso(NOW)))
    action = DisposeSavepoint(sp(1).path)
    after = record_action_result(status, action, "r" * 32)
    assert after is not None and after.disposal is not None and after.disposal.trigger_id == "r" * 32
    refused = record_action_failure(status, action, "HTTP 500", NOW)
    assert refused.disposal is not None and refused.disposal.attempts == 1 and refused.disposal.retry_at


def test_disposal_runs_while_suspended() -> None:
    spec = make_spec(state="suspended", savepointHistoryLimit=1)
    status = replace(with_history(sp(2, "suspend"), sp(1)), phase="Suspended", job_state="FINISHED")
    d = run(spec, status, Observation(job=job(OLD_JOB, "FINISHED")))
    assert d.action == DisposeSavepoint(sp(1).path)


# -- delete ------------------------------------------------------------------------------------


def test_delete_with_dispose_on_delete_disposes_of_older_savepoints_and_keeps_the_final_one() -> None:
    spec = make_spec(disposeSavepointsOnDelete=True)
    final = Savepoint(SP_PATH, iso(NOW), "delete")
    status = with_history(final, sp(1))
    d = run(spec, status, Observation(job=job(OLD_JOB, "FINISHED")), deleting=True, deadline=at(300))
    assert d.action == DisposeSavepoint(sp(1).path)
    assert not d.done_deleting
    disposed = replace(d.status, disposal=replace(d.status.disposal, trigger_id="t" * 32))  # type: ignore[arg-type]
    d2 = run(
        spec,
        disposed,
        Observation(job=job(OLD_JOB, "FINISHED"), disposal=savepoint("COMPLETED")),
        deleting=True,
        deadline=at(300),
    )
    d3 = run(spec, d2.status, Observation(job=job(OLD_JOB, "FINISHED")), deleting=True, deadline=at(300))
    assert d3.done_deleting
    assert [s.path for s in d3.status.savepoint_history] == [SP_PATH]
    assert any(SP_PATH in e.message for e in d3.events if e.reason == "Deleted")


def test_delete_without_dispose_on_delete_keeps_every_savepoint() -> None:
    status = with_history(Savepoint(SP_PATH, iso(NOW), "delete"), sp(1))
    d = run(V1, status, Observation(job=job(OLD_JOB, "FINISHED")), deleting=True, deadline=at(300))
    assert d.done_deleting and d.action is None


def test_a_disposal_under_way_finishes_before_the_next_periodic_savepoint() -> None:
    spec = make_spec(savepointHistoryLimit=1, savepointIntervalSeconds=1)
    status = with_history(
        sp(2, seconds_ago=30), sp(1, seconds_ago=60), disposal=Disposal(sp(1).path, iso(NOW), trigger_id="t" * 32)
    )
    d = run(spec, status, Observation(job=job(OLD_JOB), disposal=savepoint("COMPLETED")))
    assert d.status.disposal is None and [s.path for s in d.status.savepoint_history] == [sp(2).path]
    assert d.status.upgrade is None, "no periodic savepoint in the same pass"
