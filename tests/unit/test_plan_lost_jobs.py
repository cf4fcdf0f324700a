"""Jobs lost with their JobManager: a job its cluster no longer lists (not FAILED nor CANCELED there)
starts again from the newest savepoint the status records, unless the cluster runs with high
availability, where its JobManager recovers it and the operator only waits."""

from __future__ import annotations

from flinkop.actions import SubmitJob
from flinkop.observation import Observation
from flinkop.status import Savepoint
from planner_kit import (
    JAR_IDS,
    JAR_V1,
    NEW_JOB,
    OLD_JOB,
    SP_PATH,
    STABLE,
    V1,
    at,
    cond_status,
    condition,
    event_reasons,
    gone,
    jar_uploaded,
    job,
    make_spec,
    run,
    steady,
)

PERIODIC = Savepoint(SP_PATH, "2024-05-01T11:59:00Z", "periodic")  # 60 s before NOW


def test_a_job_lost_with_a_jobmanager_without_ha_starts_again_from_the_newest_savepoint() -> None:
    status = steady(V1, last_savepoint=PERIODIC)
    d = run(V1, status, Observation(job=gone(OLD_JOB), jar=jar_uploaded()), fresh_id=NEW_JOB)
    assert d.action == SubmitJob(JAR_IDS[JAR_V1], NEW_JOB, V1.deployment, SP_PATH, False)
    assert "LostJobRestarted" in event_reasons(d)
    lost = next(e for e in d.events if e.reason == "LostJobRestarted")
    assert SP_PATH in lost.message and "60 s old" in lost.message and "periodic" in lost.message
    assert cond_status(d)["Stalled"] == "False"
    done = run(V1, d.status, Observation(new_job=job(NEW_JOB), new_job_progress=STABLE), now=at(10))
    assert done.status.phase == "Running" and done.status.job_id == NEW_JOB


def test_a_lost_job_waits_for_its_jar_check_first_since_the_cluster_lost_its_jars_too() -> None:
    d = run(V1, steady(V1, last_savepoint=PERIODIC), Observation(job=gone(OLD_JOB)))
    assert d.needs_jar == V1.deployment and d.action is None


def test_a_lost_job_stalls_as_terminated_when_restart_lost_jobs_is_off() -> None:
    spec = make_spec(restartLostJobs=False)
    d = run(spec, steady(spec, last_savepoint=PERIODIC), Observation(job=gone(OLD_JOB), jar=jar_uploaded()))
    assert d.action is None and condition(d, "Stalled")["reason"] == "JobTerminated"


def test_a_lost_job_without_any_savepoint_stalls_as_terminated() -> None:
    d = run(V1, steady(V1), Observation(job=gone(OLD_JOB), jar=jar_uploaded()))
    assert d.action is None and condition(d, "Stalled")["reason"] == "JobTerminated"


def test_with_high_availability_a_missing_job_is_waited_for_never_resubmitted_nor_stalled() -> None:
    status = steady(V1, last_savepoint=PERIODIC)
    recovering = run(V1, status, Observation(job=gone(OLD_JOB), jar=jar_uploaded(), cluster_ha=True))
    assert recovering.action is None and recovering.requeue_after is not None
    assert "recovering" in recovering.status.message
    assert cond_status(recovering) == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
    again = run(V1, recovering.status, Observation(job=gone(OLD_JOB), cluster_ha=True), now=at(5))
    assert again.action is None and again.events == ()
    back = run(V1, again.status, Observation(job=job(OLD_JOB), cluster_ha=True), now=at(20))
    assert back.status.phase == "Running" and back.status.job_id == OLD_JOB
    assert cond_status(back)["Ready"] == "True"


def test_restart_lost_jobs_must_be_a_boolean() -> None:
    import pytest
    from flinkop.spec import SpecError

    with pytest.raises(SpecError, match=r"spec\.restartLostJobs"):
        make_spec(restartLostJobs="no")


def _in_flight(kind: str, spec: object = V1) -> object:
    """A savepoint of `kind` under way on OLD_JOB (its trigger forgotten by a restarted JobManager)."""
    from dataclasses import replace as _replace

    from flinkop import status as st
    from flinkop.status import Upgrade

    up = Upgrade.begin(
        kind,
        st.SAVEPOINTING,
        V1.deployment,
        "2024-05-01T11:59:50Z",
        from_job_id=OLD_JOB,
        trigger_id="3" * 32,
        source=V1.deployment,
        reason="periodic" if kind == st.SAVEPOINT else None,
    )
    return _replace(steady(V1, last_savepoint=PERIODIC), upgrade=up)


def test_a_job_lost_during_a_periodic_savepoint_drops_it_and_starts_again_from_the_last_savepoint() -> None:
    from flinkop import status as st

    lost = Observation(job=gone(OLD_JOB), jar=jar_uploaded())
    d = run(V1, _in_flight(st.SAVEPOINT), lost)
    assert d.status.upgrade is None and "JobLost" in event_reasons(d) and d.requeue_after is not None
    restart = run(V1, d.status, lost, fresh_id=NEW_JOB, now=at(1))
    assert restart.action == SubmitJob(JAR_IDS[JAR_V1], NEW_JOB, V1.deployment, SP_PATH, False)


def test_a_job_lost_during_an_upgrades_savepoint_starts_the_new_spec_from_the_last_savepoint() -> None:
    from flinkop import status as st

    v2 = make_spec(args=["--v2"])
    lost = Observation(job=gone(OLD_JOB), jar=jar_uploaded())
    d = run(v2, _in_flight(st.UPGRADE), lost)
    assert d.status.upgrade is None and "JobLost" in event_reasons(d)
    restart = run(v2, d.status, lost, fresh_id=NEW_JOB, now=at(1))
    assert restart.action == SubmitJob(JAR_IDS[JAR_V1], NEW_JOB, v2.deployment, SP_PATH, False)


def test_a_job_lost_during_a_suspend_stays_suspended_with_the_last_savepoint_to_resume_from() -> None:
    from flinkop import status as st

    suspended = make_spec(state="suspended")
    lost = Observation(job=gone(OLD_JOB))
    d = run(suspended, _in_flight(st.SUSPEND), lost)
    after = run(suspended, d.status, lost, now=at(1))
    assert after.status.phase == "Suspended" and after.action is None and SP_PATH in after.status.message


def test_with_high_availability_a_savepoint_in_flight_waits_for_the_recovered_job() -> None:
    from flinkop import status as st

    d = run(V1, _in_flight(st.SAVEPOINT), Observation(job=gone(OLD_JOB), cluster_ha=True))
    assert d.status.upgrade is not None and d.action is None and d.requeue_after is not None
    assert "recovering" in d.status.message


def test_with_high_availability_a_spec_change_while_the_job_is_recovered_waits_for_it() -> None:
    """A start from the last savepoint now would run a second job once the JobManager recovers the first."""
    changed = make_spec(args=["--v2"])
    d = run(
        changed,
        steady(V1, last_savepoint=PERIODIC),
        Observation(job=gone(OLD_JOB), jar=jar_uploaded(), cluster_ha=True),
    )
    assert d.action is None and d.needs_jar is None and "recovering" in d.status.message
    back = run(changed, d.status, Observation(job=job(OLD_JOB), jar=jar_uploaded(), cluster_ha=True), now=at(20))
    assert back.action is not None and back.status.phase == "Upgrading"
