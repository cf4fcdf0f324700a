"""The stability gate: a started job counts as started only once every vertex runs and a checkpoint
completed after its start and its last restart; a job that keeps failing, or is not stable in time,
is a failed start and restoreFailurePolicy applies, to a rollback's own start too."""

from __future__ import annotations

from dataclasses import replace

from flinkop import status as st
from flinkop.actions import CancelJob, SubmitJob
from flinkop.flink_client import JobInfo, StartProgress
from flinkop.observation import JobView, Observation
from flinkop.plan.stability import MAX_START_FAILURES, judge
from planner_kit import (
    JAR_IDS,
    JAR_V1,
    JAR_V2,
    NEW_JOB,
    OLD_JOB,
    ROLLBACK_JOB,
    SP_PATH,
    V1,
    at,
    cond_status,
    condition,
    event_reasons,
    jar_uploaded,
    job,
    job_info,
    make_spec,
    run,
    savepoint_taken,
)

V2 = make_spec(jar={"uri": JAR_V2})
STARTED_MS = 1_000_000
RUNNING = JobInfo(NEW_JOB, "j", "RUNNING", start_time_ms=STARTED_MS, tasks=(4, 4))


def failures(*at_ms: int) -> tuple[tuple[int, str], ...]:
    return tuple((ms, f"java.lang.IllegalStateException: boom at {ms}") for ms in at_ms)


def test_a_checkpoint_after_the_start_passes_and_one_before_it_does_not() -> None:
    assert judge(RUNNING, StartProgress(True, STARTED_MS + 500), STARTED_MS + 600, STARTED_MS + 9e9, 300).passed
    before = judge(RUNNING, StartProgress(True, STARTED_MS - 1), STARTED_MS + 600, STARTED_MS + 9e9, 300)
    assert not before.passed and before.failed is None and "checkpoint" in before.awaiting


def test_a_job_that_failed_once_passes_with_a_checkpoint_after_its_restart() -> None:
    once = StartProgress(True, STARTED_MS + 2_000, failures(STARTED_MS + 1_000))
    assert judge(RUNNING, once, STARTED_MS + 3_000, STARTED_MS + 9e9, 300).passed
    stale = StartProgress(True, STARTED_MS + 500, failures(STARTED_MS + 1_000))
    verdict = judge(RUNNING, stale, STARTED_MS + 3_000, STARTED_MS + 9e9, 300)
    assert not verdict.passed and "1 restart so far" in verdict.awaiting


def test_more_failures_than_the_limit_fail_the_start_naming_the_last_cause() -> None:
    many = StartProgress(True, STARTED_MS + 9_000, failures(*(STARTED_MS + i for i in range(MAX_START_FAILURES + 1))))
    verdict = judge(RUNNING, many, STARTED_MS + 10_000, STARTED_MS + 9e9, 300)
    assert verdict.failed is not None and "boom" in verdict.failed and not verdict.passed


def test_a_job_without_checkpointing_passes_after_running_ten_seconds_without_a_restart() -> None:
    off = StartProgress(False)
    assert not judge(RUNNING, off, STARTED_MS + 9_000, STARTED_MS + 9e9, 300).passed
    assert judge(RUNNING, off, STARTED_MS + 10_000, STARTED_MS + 9e9, 300).passed


def test_a_start_not_stable_within_the_timeout_fails() -> None:
    verdict = judge(RUNNING, StartProgress(True), STARTED_MS + 301_000, STARTED_MS + 300_000, 300)
    assert verdict.failed is not None and "stabilityTimeoutSeconds (300 s)" in verdict.failed


def _looping(progress: StartProgress) -> Observation:
    info = replace(job_info(NEW_JOB), start_time_ms=STARTED_MS)
    return Observation(job=job(OLD_JOB, "FINISHED"), new_job=JobView(NEW_JOB, info), new_job_progress=progress)


LOOPING = StartProgress(True, None, failures(*(STARTED_MS + i * 1000 for i in range(1, MAX_START_FAILURES + 2))))


def test_an_upgrade_that_restarts_in_a_loop_is_cancelled_then_rolled_back_from_the_same_savepoint() -> None:
    taken = savepoint_taken(V1, V2)
    d = run(V2, taken, _looping(LOOPING), now=at(20))
    assert d.action == CancelJob(NEW_JOB)
    assert d.status.upgrade is not None and d.status.upgrade.unstable is not None
    assert "UnstableStart" in event_reasons(d)
    assert cond_status(d)["Ready"] == "False"
    # Cancelled: the rollback starts from the upgrade's savepoint.
    cancelled = Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "CANCELED"))
    rolling = run(V2, d.status, cancelled, now=at(21), fresh_id=ROLLBACK_JOB)
    up = rolling.status.upgrade
    assert up is not None and (up.kind, up.savepoint_path, up.reason) == (st.ROLLBACK, SP_PATH, "UnstableStart")
    submit = run(V2, rolling.status, Observation(job=job(NEW_JOB, "CANCELED"), jar=jar_uploaded(JAR_V1)), now=at(22))
    assert submit.action == SubmitJob(JAR_IDS[JAR_V1], ROLLBACK_JOB, V1.deployment, SP_PATH, False)
    # The rollback's own start passes the same gate before it counts.
    waiting = Observation(job=job(NEW_JOB, "CANCELED"), new_job=job(ROLLBACK_JOB), new_job_progress=StartProgress(True))
    held = run(V2, submit.status, waiting, now=at(25))
    assert held.status.phase == "RollingBack" and "checkpoint" in held.status.message
    stable = replace(waiting, new_job_progress=StartProgress(True, 1))
    done = run(V2, held.status, stable, now=at(27))
    assert done.status.phase == "Running" and done.status.deployed == V1.deployment
    assert condition(done, "Stalled")["reason"] == "UnstableStart"
    assert "boom" in condition(done, "Stalled")["message"]


def test_an_unstable_start_under_policy_fail_is_stopped_with_the_savepoint_kept() -> None:
    frm, to = make_spec(restoreFailurePolicy="Fail"), make_spec(jar={"uri": JAR_V2}, restoreFailurePolicy="Fail")
    d = run(to, savepoint_taken(frm, to), _looping(LOOPING), now=at(20))
    assert d.action == CancelJob(NEW_JOB)
    done = run(to, d.status, Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "CANCELED")), now=at(21))
    assert done.status.phase == "Failed" and done.status.upgrade is None
    assert done.status.last_savepoint is not None and done.status.last_savepoint.path == SP_PATH
    assert condition(done, "Stalled")["reason"] == "UnstableStart"


def test_a_rollback_that_fails_the_gate_too_stalls_with_both_causes_and_stops_trying() -> None:
    d = run(V2, savepoint_taken(V1, V2), _looping(LOOPING), now=at(20))
    cancelled = Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "CANCELED"))
    rolling = run(V2, d.status, cancelled, now=at(21), fresh_id=ROLLBACK_JOB)
    looping_rollback = replace(
        _looping(LOOPING), job=job(NEW_JOB, "CANCELED"), new_job=replace(_looping(LOOPING).new_job, job_id=ROLLBACK_JOB)
    )
    failing = run(V2, rolling.status, looping_rollback, now=at(40))
    assert failing.action == CancelJob(ROLLBACK_JOB)
    gone = Observation(job=job(NEW_JOB, "CANCELED"), new_job=job(ROLLBACK_JOB, "CANCELED"))
    stalled = run(V2, failing.status, gone, now=at(41))
    message = condition(stalled, "Stalled")["message"]
    assert stalled.status.phase == "Failed" and stalled.status.upgrade is None
    assert "Rollback failed too" in message and message.count("did not pass the stability gate") == 2
    again = run(V2, stalled.status, Observation(job=job(ROLLBACK_JOB, "CANCELED")), now=at(90))
    assert again.action is None and condition(again, "Stalled")["status"] == "True"


def test_a_field_cleared_in_the_upgrade_record_is_sent_as_null_so_the_merge_patch_removes_it() -> None:
    """A status patch is a JSON merge patch: a key left out keeps the value the previous record had
    (a rollback would inherit its failed start's `unstable`, a re-upload its deleted jar id)."""
    up = savepoint_taken(V1, V2).upgrade
    assert up is not None
    patch = replace(up, target_jar_id=None, unstable=None).to_dict()
    assert patch["targetJarId"] is None and patch["unstable"] is None
