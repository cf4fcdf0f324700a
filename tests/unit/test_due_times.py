"""Work due at a time is planned for that time: periodic savepoints every interval (counted from
the last one's trigger), and an idle FlinkJob's only wake-ups (a stall that can lift by itself, a
disposal's retry, a savepoint reaching its maximum age)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from flinkop.observation import Observation
from flinkop.plan.common import PERIODIC_MARGIN, STALL_RECHECK, idle_wake, periodic_savepoint_due
from flinkop.status import Disposal, Failure, Savepoint, Status
from flinkop.times import format_time_ms
from planner_kit import NOW, OLD_JOB, V1, at, iso, job, make_spec, run, savepoint, steady

EPOCH = datetime(1970, 1, 1)


def ms(t: datetime) -> int:
    return int((t - EPOCH).total_seconds() * 1000)


MARGIN = timedelta(seconds=PERIODIC_MARGIN)


def test_periodic_savepoint_is_due_one_interval_after_the_last_one_was_triggered_to_the_millisecond() -> None:
    last = Savepoint("/sp/1", iso(at(3)), "periodic", triggered_at=format_time_ms(at(2.125)))
    assert periodic_savepoint_due(last, ms(NOW - timedelta(hours=1)), 10) == at(12.125) + MARGIN


def test_a_savepoint_recorded_without_its_trigger_time_counts_from_its_completion() -> None:
    last = Savepoint("/sp/1", iso(at(3)), "upgrade")
    assert periodic_savepoint_due(last, ms(NOW - timedelta(hours=1)), 10) == at(13) + MARGIN


def test_a_job_started_later_than_the_last_savepoint_counts_from_its_start() -> None:
    last = Savepoint("/sp/1", iso(at(0)), "upgrade", triggered_at=iso(at(0)))
    started = at(5) + timedelta(milliseconds=250)
    assert periodic_savepoint_due(last, ms(started), 10) == at(15.25) + MARGIN


def test_an_idle_running_job_with_periodic_savepoints_comes_back_when_the_next_is_due() -> None:
    spec = make_spec(savepointIntervalSeconds=10)
    s = steady(spec)
    s = s.with_savepoint(Savepoint("/sp/1", iso(at(-1)), "periodic", triggered_at=iso(at(-2))))
    d = run(spec, s, Observation(job=job(OLD_JOB)))
    assert d.action is None
    assert d.requeue_after is not None and abs(d.requeue_after - 8.0 - PERIODIC_MARGIN) < 0.01


def test_an_idle_running_job_without_time_based_work_is_left_to_its_cluster_observer() -> None:
    d = run(V1, steady(V1), Observation(job=job(OLD_JOB)))
    assert d.action is None and d.requeue_after is None


def status_with(**fields: object) -> Status:
    return replace(steady(V1), **fields)  # type: ignore[arg-type]


def test_a_stall_that_lifts_by_itself_is_looked_at_again_and_one_that_needs_a_person_is_not() -> None:
    spec = V1
    by_itself = status_with(failure=Failure("NoSavepointDirectory", "set one", None))
    assert idle_wake(by_itself, spec, NOW) == STALL_RECHECK
    needs_person = status_with(failure=Failure("RestoreFailed", "fix it", "k"))
    assert idle_wake(needs_person, spec, NOW) is None


def test_a_failed_disposal_is_retried_at_its_retry_time() -> None:
    spec = V1
    s = status_with(disposal=Disposal("/sp/old", iso(at(-5)), trigger_id=None, attempts=1, retry_at=iso(at(30))))
    assert idle_wake(s, spec, NOW) == 30.0


def test_a_savepoint_reaching_its_maximum_age_wakes_the_flinkjob_then_and_one_past_it_does_not() -> None:
    spec = make_spec(savepointMaxAgeSeconds=100)
    history = (Savepoint("/sp/2", iso(at(-40)), "periodic"), Savepoint("/sp/1", iso(at(-500)), "periodic"))
    wake = idle_wake(status_with(savepoint_history=history), spec, NOW)
    assert wake is not None and 60.0 <= wake <= 62.0


def test_a_disposal_that_completes_leaves_the_flinkjob_due_back_for_its_next_periodic_savepoint() -> None:
    # Found on the bed: once the pass that saw a disposal complete went idle, no periodic savepoint
    # ever came again (nothing but a change or its job woke the FlinkJob).
    spec = make_spec(savepointIntervalSeconds=10, savepointHistoryLimit=1)
    last = Savepoint("/sp/2", iso(at(-2)), "periodic", triggered_at=iso(at(-3)))
    older = Savepoint("/sp/1", iso(at(-13)), "periodic", triggered_at=iso(at(-14)))
    status = replace(
        steady(spec),
        last_savepoint=last,
        savepoint_history=(last, older),
        disposal=Disposal("/sp/1", iso(NOW), "t" * 32),
    )
    d = run(spec, status, Observation(job=job(OLD_JOB), disposal=savepoint("COMPLETED")))
    assert d.status.disposal is None and d.action is None
    assert d.requeue_after is not None and abs(d.requeue_after - 7.0 - PERIODIC_MARGIN) < 0.01
