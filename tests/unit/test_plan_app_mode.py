"""The planner in application mode (spec.cluster): the job's own cluster is applied for the job id
recorded first, waited for while its JobManager does not answer, replaced through a savepoint on an
upgrade (a parallelism change too), removed on suspend and made again on resume; a start whose cluster
never comes up fails like any other start. Also the mode checks of a pass (reconcile) and where an
action goes (act.perform).

Sequences drive the planner pass after pass, each pass planning from the status the one before
decided, with observations as observe_app makes them (tests/unit/planner_kit.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

import pytest
from flinkop import status as st
from flinkop.act import perform
from flinkop.actions import (
    Action,
    CancelJob,
    DeleteCluster,
    DisposeSavepoint,
    RescaleInPlace,
    SubmitJob,
    TriggerSavepoint,
)
from flinkop.app_acts import AppClusterActs
from flinkop.app_cluster_kube import AppClusterError, AppClusterKube, RestAddress
from flinkop.flink_client import FlinkClient, FlinkError, FlinkUnreachable, StartProgress
from flinkop.jars import JarFetcher
from flinkop.observation import APP_JAR_ID, JobView, Observation
from flinkop.observe_app import app_jar_check, observe_app
from flinkop.plan import Decision
from flinkop.reconcile import in_application_mode, mode_change_refusal
from flinkop.spec import FlinkJobSpec
from flinkop.status import Savepoint, Status, Upgrade
from flinkop.times import format_time_ms
from planner_kit import (
    APP_JAR,
    FRESH,
    IMAGE_V2,
    NEW_JOB,
    NOW,
    OLD_JOB,
    OLDER_SP_PATH,
    PODS_STARTING,
    ROLLBACK_JOB,
    SP_DIR,
    SP_PATH,
    STABLE,
    TRIGGER,
    V1,
    answering_cluster,
    app_jar,
    app_obs,
    at,
    cond_status,
    condition,
    event_reasons,
    gone,
    iso,
    job,
    make_app_spec,
    make_spec,
    no_cluster,
    run,
    savepoint,
    starting_cluster,
    steady,
)

A1 = make_app_spec()  # the job on its own cluster, image 1.0
A2 = make_app_spec(image=IMAGE_V2)  # a new image: a new program
FIXED_IMAGE = "registry.example/team/job:2.0.1"
FRESH_APP = "6" * 32  # another fresh id

READY_RUNNING = {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
IN_PROGRESS = {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
IMAGE_MISSING = (
    "pod job-jobmanager-7d9f-x2k: ImageMissing: image registry.example/team/job:2.0 cannot be pulled "
    "(ErrImagePull): manifest unknown"
)


def app_steady(spec: FlinkJobSpec = A1, job_id: str = OLD_JOB, **fields: Any) -> Status:
    """`spec` runs healthily as `job_id` on its own cluster (deployed through the planner: jar id APP_JAR_ID)."""
    return steady(spec, job_id, jar_id=APP_JAR_ID, **fields)


def started_on_its_cluster(spec: FlinkJobSpec, submitted: Decision, new_id: str, *, t: float) -> Decision:
    """After `submitted` (a SubmitJob of `new_id` on its own cluster): the cluster comes up, its
    JobManager answers, the job runs every vertex; each step checked on the way."""
    assert isinstance(submitted.action, SubmitJob) and submitted.action.job_id == new_id
    starting = run(spec, submitted.status, app_obs(starting_cluster(new_id), app_jar()), now=at(t))
    assert starting.action is None and starting.status.upgrade is not None
    answering = app_obs(answering_cluster(new_id), app_jar(), new_job=gone(new_id))
    listed = run(spec, starting.status, answering, now=at(t + 5))
    assert listed.action is None and listed.status.upgrade is not None
    running = app_obs(answering_cluster(new_id), app_jar(), new_job=job(new_id), new_job_progress=STABLE)
    return run(spec, listed.status, running, now=at(t + 10))


# -- 1. first deploy -------------------------------------------------------------------------


def test_first_deploy_applies_its_own_cluster_for_the_job_id_recorded_first_waits_for_it_and_runs() -> None:
    first = run(A1, Status(), no_cluster(Status(), app_jar()), fresh_id=NEW_JOB)
    assert first.action == SubmitJob(APP_JAR_ID, NEW_JOB, A1.deployment, None, False)
    assert first.action.deployment.cluster is not None
    assert "on its own application cluster" in first.action.describe()
    up = first.status.upgrade
    assert up is not None and (up.kind, up.step, up.new_job_id) == (st.DEPLOY, st.SUBMITTING, NEW_JOB)
    assert first.status.cluster_readiness == "no cluster"
    assert first.status.phase == "Deploying" and cond_status(first) == IN_PROGRESS

    # The cluster is there, its JobManager not answering: waits, saying how far its pods are.
    status = first.status
    for t in (1, 5, 30):
        waiting = run(A1, status, app_obs(starting_cluster(NEW_JOB), app_jar()), now=at(t), fresh_id=ROLLBACK_JOB)
        assert waiting.action is None, "never applied a second time while it comes up"
        assert waiting.status.cluster_readiness == PODS_STARTING
        assert PODS_STARTING in waiting.status.message and NEW_JOB in waiting.status.message
        assert waiting.status.upgrade == first.status.upgrade, "the recorded job id stays"
        assert waiting.requeue_after is not None and cond_status(waiting) == IN_PROGRESS
        status = waiting.status

    # Its JobManager answers but does not list the job yet: still waits, never resubmits.
    listed = run(A1, status, app_obs(answering_cluster(NEW_JOB), app_jar(), new_job=gone(NEW_JOB)), now=at(40))
    assert listed.action is None
    assert "does not list it yet" in listed.status.message
    assert listed.status.cluster_readiness == "JobManager 1/1 ready, TaskManagers 1/1 ready"

    running = app_obs(answering_cluster(NEW_JOB), app_jar(), new_job=job(NEW_JOB), new_job_progress=STABLE)
    done = run(A1, listed.status, running, now=at(45))
    s = done.status
    assert done.action is None
    assert (s.phase, s.job_id, s.job_state, s.upgrade) == ("Running", NEW_JOB, "RUNNING", None)
    assert s.deployed == A1.deployment and s.last_stable == A1.deployment
    assert cond_status(done) == READY_RUNNING


def test_a_cluster_that_does_not_answer_for_long_fails_the_first_deploy_without_a_rollback() -> None:
    first = run(A1, Status(), no_cluster(Status(), app_jar()), fresh_id=NEW_JOB)
    starting = app_obs(starting_cluster(NEW_JOB, problem=IMAGE_MISSING), app_jar())
    within = run(A1, first.status, starting, now=at(A1.stability_timeout_seconds))
    assert within.action is None and within.status.upgrade is not None
    assert "ClusterNotReady" in event_reasons(within) and IMAGE_MISSING in within.status.message
    past = run(A1, within.status, starting, now=at(A1.stability_timeout_seconds + 1), fresh_id=ROLLBACK_JOB)
    assert past.action is None and past.status.upgrade is None
    assert past.status.phase == "Failed"
    assert condition(past, "Stalled")["reason"] == "UnstableStart"
    assert IMAGE_MISSING in condition(past, "Stalled")["message"]
    # Its broken cluster is not waited for any more: the stall holds quietly, and a fixed image deploys.
    held = run(A1, past.status, starting, now=at(400))
    assert held.action is None and held.events == () and condition(held, "Stalled")["reason"] == "UnstableStart"
    assert "did not start" in held.status.message
    fixed = make_app_spec(image=FIXED_IMAGE)
    redeploy = run(fixed, held.status, starting, now=at(401), fresh_id=FRESH_APP)
    assert redeploy.action == SubmitJob(APP_JAR_ID, FRESH_APP, fixed.deployment, None, False)


# -- 2. savepoint upgrade on an image change -------------------------------------------------


def _upgrade_to_a2_submitted() -> Decision:
    """A1 runs as OLD_JOB; the spec became A2: stop with a savepoint, then submit A2 on its cluster."""
    obs = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB))
    stop = run(A2, app_steady(), obs, fresh_id=TRIGGER)
    assert stop.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    assert stop.status.upgrade is not None and stop.status.upgrade.kind == st.UPGRADE
    assert stop.status.phase == "Upgrading"
    in_progress = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS"))
    wait = run(A2, stop.status, in_progress, now=at(1))
    assert wait.action is None
    completed = app_obs(
        answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)
    )
    submit = run(A2, wait.status, completed, now=at(3), fresh_id=NEW_JOB)
    return submit


def test_an_image_change_stops_with_a_savepoint_then_starts_the_new_cluster_from_it() -> None:
    submit = _upgrade_to_a2_submitted()
    assert submit.action == SubmitJob(APP_JAR_ID, NEW_JOB, A2.deployment, SP_PATH, False)
    up = submit.status.upgrade
    assert up is not None and (up.step, up.new_job_id, up.savepoint_path) == (st.SUBMITTING, NEW_JOB, SP_PATH)
    assert submit.status.last_savepoint is not None
    assert (submit.status.last_savepoint.path, submit.status.last_savepoint.reason) == (SP_PATH, "upgrade")

    # The old cluster is replaced; the new one comes up: waits without applying it again.
    starting = run(A2, submit.status, app_obs(starting_cluster(NEW_JOB), app_jar()), now=at(4))
    assert starting.action is None and starting.status.phase == "Upgrading"
    assert PODS_STARTING in starting.status.message
    answering = app_obs(answering_cluster(NEW_JOB), app_jar(), job=gone(OLD_JOB), new_job=gone(NEW_JOB))
    listed = run(A2, starting.status, answering, now=at(8))
    assert listed.action is None and listed.status.upgrade is not None
    running = app_obs(
        answering_cluster(NEW_JOB), app_jar(), job=gone(OLD_JOB), new_job=job(NEW_JOB), new_job_progress=STABLE
    )
    done = run(A2, listed.status, running, now=at(12))
    s = done.status
    assert done.action is None, "no jar to delete in application mode"
    assert (s.phase, s.job_id, s.deployed, s.last_stable) == ("Running", NEW_JOB, A2.deployment, A2.deployment)
    assert s.last_savepoint is not None and s.last_savepoint.path == SP_PATH
    assert cond_status(done) == READY_RUNNING


def test_a_change_undone_while_the_savepoint_runs_reaches_the_recorded_target_then_upgrades_back() -> None:
    obs = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB))
    stop = run(A2, app_steady(), obs, fresh_id=TRIGGER)
    # Undone (the spec is A1 again) while the stop runs: the recorded target is followed, as in session mode.
    completed = app_obs(
        answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)
    )
    submit = run(A1, stop.status, completed, now=at(3), fresh_id=NEW_JOB)
    assert isinstance(submit.action, SubmitJob) and submit.action.deployment == A2.deployment
    done = started_on_its_cluster(A1, submit, NEW_JOB, t=4)
    assert done.status.deployed == A2.deployment and done.status.upgrade is None
    assert cond_status(done)["Ready"] == "False", "A1 is wanted again"
    back = run(A1, done.status, app_obs(answering_cluster(NEW_JOB), app_jar(), job=job(NEW_JOB)), now=at(20))
    assert back.action == TriggerSavepoint(NEW_JOB, FRESH, SP_DIR, "stop")
    assert back.status.upgrade is not None
    assert (back.status.upgrade.source, back.status.upgrade.target) == (A2.deployment, A1.deployment)


def test_a_change_undone_while_a_refused_stop_waits_for_its_retry_leaves_the_job_running() -> None:
    from flinkop.plan import record_action_failure

    obs = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB))
    stop = run(A2, app_steady(), obs, fresh_id=TRIGGER)
    assert isinstance(stop.action, TriggerSavepoint)
    refused = record_action_failure(stop.status, stop.action, "snapshot failed", at(1))
    undone = run(A1, refused, obs, now=at(3), generation=2)
    assert undone.action is None and undone.status.upgrade is None
    assert "UpgradeCancelled" in event_reasons(undone)
    rest = run(A1, undone.status, obs, now=at(4), generation=2)
    assert rest.action is None and cond_status(rest) == READY_RUNNING


# -- 3. a new version whose cluster never starts ----------------------------------------------


def _new_cluster_never_starts(frm: FlinkJobSpec, to: FlinkJobSpec) -> tuple[Decision, Observation]:
    """`to`'s cluster is applied at at(3) and its JobManager never comes up (the image is missing):
    the pass just past stabilityTimeoutSeconds after the submission."""
    obs = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB))
    stop = run(to, app_steady(frm), obs, fresh_id=TRIGGER)
    completed = app_obs(
        answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)
    )
    submit = run(to, stop.status, completed, now=at(3), fresh_id=NEW_JOB)
    assert isinstance(submit.action, SubmitJob) and submit.action.deployment == to.deployment
    broken = app_obs(starting_cluster(NEW_JOB, problem=IMAGE_MISSING), app_jar())
    status = submit.status
    for t in (5, 60, 3 + to.stability_timeout_seconds):
        waiting = run(to, status, broken, now=at(t), fresh_id=ROLLBACK_JOB)
        assert waiting.action is None and waiting.status.upgrade == submit.status.upgrade
        assert IMAGE_MISSING in waiting.status.message and IMAGE_MISSING in (waiting.status.cluster_readiness or "")
        status = waiting.status
    past = run(to, status, broken, now=at(4 + to.stability_timeout_seconds), fresh_id=ROLLBACK_JOB)
    return past, broken


def test_a_new_version_whose_cluster_never_starts_is_rolled_back_from_the_same_savepoint() -> None:
    failed, broken = _new_cluster_never_starts(A1, A2)
    up = failed.status.upgrade
    assert up is not None
    assert (up.kind, up.step, up.target, up.source) == (st.ROLLBACK, st.SUBMITTING, A1.deployment, A2.deployment)
    assert (up.savepoint_path, up.new_job_id, up.from_job_id) == (SP_PATH, ROLLBACK_JOB, NEW_JOB)
    assert failed.status.phase == "RollingBack" and "UnstableStart" in event_reasons(failed)
    assert IMAGE_MISSING in failed.status.message

    # The broken cluster is still there (its JobManager never answers): the rollback replaces it.
    submit = run(A2, failed.status, broken, now=at(310), fresh_id="f" * 32)
    assert submit.action == SubmitJob(APP_JAR_ID, ROLLBACK_JOB, A1.deployment, SP_PATH, False)
    done = started_on_its_cluster(A2, submit, ROLLBACK_JOB, t=311)
    s = done.status
    assert (s.phase, s.job_id, s.deployed, s.upgrade) == ("Running", ROLLBACK_JOB, A1.deployment, None)
    assert condition(done, "Stalled")["reason"] == "UnstableStart"
    assert IMAGE_MISSING in condition(done, "Stalled")["message"]
    rest = run(A2, s, app_obs(answering_cluster(ROLLBACK_JOB), app_jar(), job=job(ROLLBACK_JOB)), now=at(400))
    assert rest.action is None, "the failed version is not tried again until the spec changes"


def test_a_new_version_whose_cluster_never_starts_under_policy_fail_stalls_keeping_the_savepoint() -> None:
    frm, to = make_app_spec(restoreFailurePolicy="Fail"), make_app_spec(image=IMAGE_V2, restoreFailurePolicy="Fail")
    failed, broken = _new_cluster_never_starts(frm, to)
    s = failed.status
    assert failed.action is None and s.upgrade is None
    assert (s.phase, s.job_id, s.deployed) == ("Failed", NEW_JOB, to.deployment)
    assert s.last_savepoint is not None and s.last_savepoint.path == SP_PATH
    stalled = condition(failed, "Stalled")
    assert stalled["reason"] == "UnstableStart" and SP_PATH in stalled["message"]
    assert IMAGE_MISSING in stalled["message"]
    for t in (400, 401, 900):  # its broken cluster is not waited for: the stall holds, said once
        again = run(to, s, broken, now=at(t))
        assert again.action is None and again.events == ()
        assert again.status.phase == "Failed" and condition(again, "Stalled")["reason"] == "UnstableStart"
        assert again.status.message == failed.status.message
        s = again.status


def test_suspending_after_a_start_whose_cluster_never_came_up_removes_that_cluster() -> None:
    frm, to = make_app_spec(restoreFailurePolicy="Fail"), make_app_spec(image=IMAGE_V2, restoreFailurePolicy="Fail")
    failed, broken = _new_cluster_never_starts(frm, to)
    suspend = make_app_spec(image=IMAGE_V2, restoreFailurePolicy="Fail", state="suspended")
    d = run(suspend, failed.status, broken, now=at(400))
    assert d.action == DeleteCluster(NEW_JOB)
    assert d.status.phase == "Suspended" and SP_PATH in d.status.message


def test_a_move_to_a_session_cluster_after_a_failed_start_waits_for_a_suspend_that_removes_the_cluster() -> None:
    """Failed in application mode, its cluster's objects are still there: a move straight to a session
    cluster would leave them behind for good. It is refused until a suspend has removed them."""
    frm, to = make_app_spec(restoreFailurePolicy="Fail"), make_app_spec(image=IMAGE_V2, restoreFailurePolicy="Fail")
    failed, broken = _new_cluster_never_starts(frm, to)
    assert failed.status.phase == "Failed"
    to_session = make_spec(restoreFailurePolicy="Fail")
    refusal = mode_change_refusal(to_session, failed.status)
    assert refusal is not None and refusal[0] == "ModeChangeNeedsSuspend"
    assert NEW_JOB in refusal[1] and "spec.state: suspended" in refusal[1] and "objects stay" in refusal[1]
    assert mode_change_refusal(to, failed.status) is None, "staying in application mode is never refused"

    suspend = make_app_spec(image=IMAGE_V2, restoreFailurePolicy="Fail", state="suspended")
    removing = run(suspend, failed.status, broken, now=at(400))
    assert removing.action == DeleteCluster(NEW_JOB)
    gone_now = run(suspend, removing.status, no_cluster(removing.status), now=at(401))
    assert gone_now.status.phase == "Suspended" and gone_now.action is None
    assert mode_change_refusal(to_session, gone_now.status) is None, "suspended: the move is let through"


def test_fixing_the_image_after_a_cluster_that_never_started_deploys_from_the_kept_savepoint() -> None:
    frm, to = make_app_spec(restoreFailurePolicy="Fail"), make_app_spec(image=IMAGE_V2, restoreFailurePolicy="Fail")
    failed, broken = _new_cluster_never_starts(frm, to)
    fixed = make_app_spec(image=FIXED_IMAGE, restoreFailurePolicy="Fail")
    d = run(fixed, failed.status, broken, now=at(400), fresh_id=FRESH_APP)
    assert d.action == SubmitJob(APP_JAR_ID, FRESH_APP, fixed.deployment, SP_PATH, False)


# -- 4. suspend and resume -------------------------------------------------------------------


RETAINING = {"savepointHistoryLimit": 1, "savepointMaxAgeSeconds": 60}
OLD_SAVEPOINT = Savepoint(OLDER_SP_PATH, iso(at(-3600)), "periodic")


def test_suspend_stops_with_a_savepoint_removes_the_cluster_keeps_every_savepoint_and_resumes_from_it() -> None:
    suspend, resume = make_app_spec(state="suspended", **RETAINING), make_app_spec(**RETAINING)
    running = app_steady(resume, savepoint_history=(OLD_SAVEPOINT,), last_savepoint=OLD_SAVEPOINT)
    up = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB))
    stop = run(suspend, running, up, fresh_id=TRIGGER)
    assert stop.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    assert stop.status.upgrade is not None and stop.status.upgrade.kind == st.SUSPEND
    completed = app_obs(
        answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)
    )
    suspended = run(suspend, stop.status, completed, now=at(2))
    assert suspended.status.phase == "Suspended" and suspended.status.upgrade is None
    assert suspended.status.last_savepoint is not None and suspended.status.last_savepoint.path == SP_PATH

    # Its JobManager still answers, the job FINISHED: the cluster goes.
    finished = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB, "FINISHED"))
    removing = run(suspend, suspended.status, finished, now=at(3))
    assert removing.action == DeleteCluster(OLD_JOB)
    assert "ClusterRemoved" in event_reasons(removing)

    # No cluster any more: nothing to do, and no savepoint is disposed of without a JobManager,
    # although the history holds one over the limit and past savepointMaxAgeSeconds.
    status = removing.status
    for t in (4, 120, 3600):
        idle = run(suspend, status, no_cluster(status), now=at(t))
        assert idle.action is None, idle.action
        assert idle.status.phase == "Suspended" and idle.status.disposal is None
        assert idle.status.cluster_readiness == "no cluster"
        assert cond_status(idle) == READY_RUNNING
        status = idle.status
    assert [s.path for s in status.savepoint_history] == [SP_PATH, OLDER_SP_PATH]

    # Resumed: its cluster is made again, the job starting from the suspend savepoint.
    resumed = run(resume, status, no_cluster(status, app_jar()), now=at(3700), fresh_id=NEW_JOB)
    assert resumed.action == SubmitJob(APP_JAR_ID, NEW_JOB, resume.deployment, SP_PATH, False)
    assert "Resuming" in event_reasons(resumed)
    done = started_on_its_cluster(resume, resumed, NEW_JOB, t=3701)
    assert (done.status.phase, done.status.job_id) == ("Running", NEW_JOB)


def test_the_same_suspended_status_on_a_session_cluster_disposes_of_the_savepoint_past_retention() -> None:
    """The counterpart of the test above: its retention settings do dispose in session mode."""
    suspend = make_spec(state="suspended", **RETAINING)
    history = (Savepoint(SP_PATH, iso(at(3)), "suspend"), OLD_SAVEPOINT)
    status = steady(suspend, phase="Suspended", savepoint_history=history, last_savepoint=history[0])
    d = run(suspend, status, Observation(job=job(OLD_JOB, "FINISHED")), now=at(120))
    assert d.action == DisposeSavepoint(OLDER_SP_PATH)


def test_a_suspend_savepoint_that_fails_leaves_the_cluster_and_its_job_running() -> None:
    suspend = make_app_spec(state="suspended")
    up = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB))
    stop = run(suspend, app_steady(), up, fresh_id=TRIGGER)
    failed = app_obs(
        answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB), savepoint=savepoint("FAILED", failure="boom")
    )
    d = run(suspend, stop.status, failed, now=at(2))
    assert d.action is None and d.status.phase == "Running"
    assert d.status.upgrade is not None and d.status.upgrade.retry_at is not None


# -- 5. a parallelism-only change ------------------------------------------------------------


@pytest.mark.parametrize("rescale_mode", ["Auto", "InPlace"])
def test_an_in_place_rescale_in_application_mode_sets_the_taskmanagers_then_the_job_requirements(
    rescale_mode: str,
) -> None:
    frm, to = make_app_spec(rescaleMode=rescale_mode), make_app_spec(parallelism=4, rescaleMode=rescale_mode)
    obs = replace(app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB)), cluster_scheduler="adaptive")
    d = run(to, app_steady(frm), obs, fresh_id=TRIGGER)
    assert isinstance(d.action, RescaleInPlace) and d.action.job_id == OLD_JOB
    assert d.action.taskmanagers == to.deployment.taskmanagers == 4  # one slot per TaskManager
    assert {n for _, n in d.action.upper_bounds} == {4}
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.RESCALE


def test_rescale_mode_in_place_without_the_adaptive_scheduler_stalls_in_application_mode_too() -> None:
    frm, to = make_app_spec(rescaleMode="InPlace"), make_app_spec(parallelism=4, rescaleMode="InPlace")
    d = run(to, app_steady(frm), app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB)), fresh_id=TRIGGER)
    assert d.action is None and condition(d, "Stalled")["reason"] == "InPlaceRescaleUnsupported"


def test_parallelism_changes_in_application_mode_wait_for_min_rescale_interval() -> None:
    frm = make_app_spec(minRescaleIntervalSeconds=600)
    to = make_app_spec(parallelism=4, minRescaleIntervalSeconds=600)
    obs = app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB))
    recent = replace(app_steady(frm), last_rescale_at=iso(NOW))
    d = run(to, recent, obs, now=at(60), fresh_id=TRIGGER)
    assert d.action is None and d.status.rescale_pending_until is not None
    assert d.requeue_after == pytest.approx(540)


@pytest.mark.parametrize(("rescale_mode", "scheduler"), [("Auto", None), ("Savepoint", "adaptive")])
def test_a_parallelism_change_in_application_mode_is_an_upgrade_through_a_savepoint_unless_in_place(
    rescale_mode: str, scheduler: str | None
) -> None:
    frm, to = make_app_spec(rescaleMode=rescale_mode), make_app_spec(parallelism=4, rescaleMode=rescale_mode)
    obs = replace(app_obs(answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB)), cluster_scheduler=scheduler)
    stop = run(to, app_steady(frm), obs, fresh_id=TRIGGER)
    assert not isinstance(stop.action, RescaleInPlace)
    assert stop.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    up = stop.status.upgrade
    assert up is not None and (up.kind, up.step, up.target) == (st.UPGRADE, st.SAVEPOINTING, to.deployment)
    completed = app_obs(
        answering_cluster(OLD_JOB), app_jar(), job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)
    )
    submit = run(to, stop.status, completed, now=at(3), fresh_id=NEW_JOB)
    assert submit.action == SubmitJob(APP_JAR_ID, NEW_JOB, to.deployment, SP_PATH, False)
    assert to.deployment.taskmanagers == 4  # one slot per TaskManager: the new cluster has 4
    starting = run(to, submit.status, app_obs(starting_cluster(NEW_JOB), app_jar()), now=at(4))
    running = app_obs(
        answering_cluster(NEW_JOB), app_jar(), new_job=job(NEW_JOB, parallelism=4), new_job_progress=STABLE
    )
    done = run(to, starting.status, running, now=at(9))
    assert (done.status.phase, done.status.parallelism, done.status.deployed) == ("Running", 4, to.deployment)


# -- 6. moving between session and application mode -------------------------------------------


S1 = V1  # the same job on a session cluster


@pytest.mark.parametrize(
    ("deployed", "wanted", "where"),
    [
        pytest.param(S1, A1, "runs on a session cluster", id="session-to-app"),
        pytest.param(A1, S1, "runs on its own cluster", id="app-to-session"),
    ],
)
def test_a_spec_moved_to_the_other_mode_while_its_job_runs_is_refused_naming_the_way(
    deployed: FlinkJobSpec, wanted: FlinkJobSpec, where: str
) -> None:
    refusal = mode_change_refusal(wanted, steady(deployed))
    assert refusal is not None
    reason, message = refusal
    assert reason == "ModeChangeNeedsSuspend"
    assert where in message and OLD_JOB in message and "spec.state: suspended" in message
    assert in_application_mode(wanted, steady(deployed)) is wanted.application_mode


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(steady(S1, phase="Suspended", job_state="FINISHED"), id="suspended"),
        pytest.param(steady(S1, phase="Failed", job_state="FAILED"), id="failed"),
        pytest.param(steady(S1, job_state="CANCELED"), id="job-ended"),
        pytest.param(Status(), id="never-deployed"),
        pytest.param(replace(steady(S1), job_id=None), id="no-job"),
    ],
)
def test_a_mode_change_without_a_running_job_is_not_refused(status: Status) -> None:
    assert mode_change_refusal(A1, status) is None


def test_a_spec_in_the_same_mode_is_never_refused() -> None:
    assert mode_change_refusal(A2, app_steady()) is None
    assert mode_change_refusal(make_spec(parallelism=4), steady(S1)) is None


def test_an_upgrade_in_flight_is_finished_in_its_targets_mode_whatever_the_spec_says_now() -> None:
    to_app = replace(steady(S1), upgrade=Upgrade.begin(st.DEPLOY, st.SUBMITTING, A1.deployment, iso(NOW)))
    to_session = replace(app_steady(), upgrade=Upgrade.begin(st.UPGRADE, st.SAVEPOINTING, A2.deployment, iso(NOW)))
    assert in_application_mode(S1, to_app) is True
    assert in_application_mode(A1, replace(to_app, upgrade=replace(to_app.upgrade, target=S1.deployment))) is False
    assert in_application_mode(S1, to_session) is True
    assert mode_change_refusal(S1, to_session) is None, "the step in flight finishes first"
    assert in_application_mode(A1, Status()) is True and in_application_mode(S1, Status()) is False


def test_a_suspended_session_job_resumes_on_its_own_cluster_from_the_suspend_savepoint() -> None:
    suspend_sp = Savepoint(SP_PATH, iso(at(-60)), "suspend")
    suspended = steady(S1, phase="Suspended", job_state="FINISHED", last_savepoint=suspend_sp)
    assert mode_change_refusal(A1, suspended) is None and in_application_mode(A1, suspended)
    d = run(A1, suspended, no_cluster(suspended, app_jar()), fresh_id=NEW_JOB)
    assert d.action == SubmitJob(APP_JAR_ID, NEW_JOB, A1.deployment, SP_PATH, False)


# -- 6b. a JobManager that restarts without high availability ---------------------------------

T_START = int((at(-3600) - datetime(1970, 1, 1)).total_seconds() * 1000)  # Flink's start-time of the job (ms)
T_START_ISO = format_time_ms(at(-3600))


def _started(job_id: str, at_ms: int) -> JobView:
    view = job(job_id)
    assert view.info is not None
    return JobView(job_id, replace(view.info, start_time_ms=at_ms))


def test_a_jobmanager_that_ran_the_job_again_from_its_start_savepoint_is_reported_once() -> None:
    """Without HA, a restarted JobManager runs the same job id again from the savepoint in its start
    arguments: nothing fails, only the job's start-time moves. The state since then was lost or is
    replayed: a Warning Event and the message say so, once, naming the savepoint."""
    running = app_steady(started_from=SP_PATH, job_start_time=T_START_ISO)
    same = run(A1, running, app_obs(answering_cluster(OLD_JOB), job=_started(OLD_JOB, T_START)))
    assert same.events == () and same.status.job_start_time == T_START_ISO

    later = T_START + 600_000
    again = run(A1, running, app_obs(answering_cluster(OLD_JOB), job=_started(OLD_JOB, later)))
    [event] = [e for e in again.events if e.reason == "JobManagerRestarted"]
    assert event.type == "Warning" and OLD_JOB in event.message and SP_PATH in event.message
    assert "high availability" in event.message and again.status.message == event.message
    assert again.status.job_start_time == format_time_ms(at(-3000))
    assert again.status.job_id == OLD_JOB and again.action is None and again.status.phase == "Running"
    told = run(A1, again.status, app_obs(answering_cluster(OLD_JOB), job=_started(OLD_JOB, later)))
    assert "JobManagerRestarted" not in event_reasons(told), "said once"


@pytest.mark.parametrize(
    "wanted",
    [
        pytest.param(A1, id="same-spec"),
        pytest.param(A2, id="spec-changed-meanwhile"),
        pytest.param(make_app_spec(state="suspended"), id="suspend-asked-meanwhile"),
    ],
)
def test_a_restarted_jobmanager_that_does_not_list_its_job_yet_is_waited_for_never_taken_for_lost(
    wanted: FlinkJobSpec,
) -> None:
    """Seen on the real node under load: the new JobManager pod answered before it had submitted the job
    again, and the pass took the job for lost and started a new cluster with a new job id. It waits now:
    no new start (that would replace the cluster the job runs again on), no suspend without a savepoint."""
    last = Savepoint(SP_PATH, iso(at(-600)), "suspend")
    running = app_steady(started_from=SP_PATH, job_start_time=T_START_ISO, last_savepoint=last)
    not_listed = app_obs(answering_cluster(OLD_JOB), app_jar(), job=gone(OLD_JOB))
    waiting = run(wanted, running, not_listed, fresh_id=NEW_JOB)
    assert waiting.action is None and waiting.requeue_after is not None
    assert waiting.status.job_id == OLD_JOB and waiting.status.upgrade is None
    assert "does not list the job yet" in waiting.status.message
    assert condition(waiting, "Ready")["status"] == "False", "its job does not run: not Ready"
    assert condition(waiting, "Reconciling")["status"] == "True"
    assert not {"LostJobRestarted", "Suspended", "ClusterRemoved"} & set(event_reasons(waiting))
    back = app_obs(answering_cluster(OLD_JOB), app_jar(), job=_started(OLD_JOB, T_START + 60_000))
    listed = run(A1, waiting.status, back)
    assert listed.status.phase == "Running" and "JobManagerRestarted" in event_reasons(listed)
    assert condition(listed, "Ready")["status"] == "True"
    # Its JobManager not answering at all (the pod being replaced): not Ready either, and nothing done.
    down = run(A1, running, app_obs(starting_cluster(OLD_JOB)))
    assert down.action is None and condition(down, "Ready")["status"] == "False"
    assert down.status.job_id == OLD_JOB and "does not answer yet" in down.status.message


@pytest.mark.parametrize(
    ("spec", "status", "obs"),
    [
        pytest.param(
            A1,
            app_steady(started_from=SP_PATH, job_start_time=T_START_ISO),
            app_obs(answering_cluster(OLD_JOB), job=_started(OLD_JOB, T_START + 600_000), cluster_ha=True),
            id="application-mode-with-ha",  # recovered from its latest checkpoint
        ),
        pytest.param(
            S1,
            steady(S1, job_start_time=T_START_ISO),
            Observation(job=_started(OLD_JOB, T_START + 600_000)),
            id="session-cluster",  # a JobManager failover there keeps or loses the job, never replays it
        ),
        pytest.param(
            A1, app_steady(), app_obs(answering_cluster(OLD_JOB), job=_started(OLD_JOB, T_START)), id="first-seen"
        ),
    ],
)
def test_a_new_start_time_is_recorded_without_a_warning_where_no_state_was_replayed(
    spec: FlinkJobSpec, status: Status, obs: Observation
) -> None:
    d = run(spec, status, obs)
    assert "JobManagerRestarted" not in event_reasons(d)
    assert d.status.job_start_time is not None and d.status.job_start_time != status.job_start_time


def test_the_start_time_of_a_new_version_is_recorded_when_it_runs_so_it_is_never_taken_for_a_restart() -> None:
    starting = replace(_upgrade_starting(A2, last_stable=A1, source=A1), job_start_time=T_START_ISO)
    new_start = T_START + 3_610_000  # NOW + 10 s
    checkpointed = StartProgress(checkpointing=True, latest_checkpoint_ms=new_start + 5_000)
    up = app_obs(
        answering_cluster(NEW_JOB), app_jar(), new_job=_started(NEW_JOB, new_start), new_job_progress=checkpointed
    )
    done = run(A2, starting, up, now=at(30))
    assert done.status.job_id == NEW_JOB and done.status.job_start_time == format_time_ms(at(10))
    after = run(A2, done.status, app_obs(answering_cluster(NEW_JOB), job=_started(NEW_JOB, new_start)), now=at(31))
    assert "JobManagerRestarted" not in event_reasons(after)


# -- 7. no rollback across modes --------------------------------------------------------------


def _upgrade_starting(target: FlinkJobSpec, last_stable: FlinkJobSpec, source: FlinkJobSpec) -> Status:
    """An upgrade from `source` to `target` whose new job NEW_JOB was submitted from SP_PATH at NOW."""
    up = Upgrade.begin(
        st.UPGRADE,
        st.SUBMITTING,
        target.deployment,
        iso(NOW),
        source=source.deployment,
        from_job_id=OLD_JOB,
        savepoint_path=SP_PATH,
        new_job_id=NEW_JOB,
    )
    return replace(steady(source), phase="Upgrading", upgrade=up, last_stable=last_stable.deployment)


def test_a_start_that_failed_never_rolls_back_to_a_last_stable_spec_of_the_other_mode() -> None:
    # On its own cluster, the last stable spec a session one: stall, keep the savepoint.
    on_app = _upgrade_starting(A2, last_stable=S1, source=A1)
    broken = app_obs(starting_cluster(NEW_JOB, problem=IMAGE_MISSING), app_jar())
    d = run(A2, on_app, broken, now=at(A2.stability_timeout_seconds + 1), fresh_id=ROLLBACK_JOB)
    assert d.action is None and d.status.upgrade is None
    assert d.status.phase == "Failed" and condition(d, "Stalled")["reason"] == "UnstableStart"
    assert d.status.last_savepoint is not None and d.status.last_savepoint.path == SP_PATH
    # On a session cluster, the last stable spec an application one.
    v2 = make_spec(args=["--v2"])
    on_session = _upgrade_starting(v2, last_stable=A1, source=S1)
    failed = Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "FAILED", failure="boom"))
    s = run(v2, on_session, failed, now=at(20), fresh_id=ROLLBACK_JOB)
    assert s.action is None and s.status.upgrade is None
    assert s.status.phase == "Failed" and condition(s, "Stalled")["reason"] == "RestoreFailed"


def test_a_start_that_failed_rolls_back_to_a_last_stable_spec_of_the_same_mode() -> None:
    """The counterpart: the same failure with an application-mode last stable spec rolls back."""
    d = run(
        A2,
        _upgrade_starting(A2, last_stable=A1, source=A1),
        app_obs(starting_cluster(NEW_JOB, problem=IMAGE_MISSING), app_jar()),
        now=at(A2.stability_timeout_seconds + 1),
        fresh_id=ROLLBACK_JOB,
    )
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.ROLLBACK
    assert d.status.upgrade.target == A1.deployment


# -- 8. deletion -----------------------------------------------------------------------------

DEADLINE = at(300)


def test_deleting_a_running_job_stops_it_with_a_final_savepoint_through_its_jobmanager() -> None:
    up = app_obs(answering_cluster(OLD_JOB), job=job(OLD_JOB))
    d = run(A1, app_steady(), up, deleting=True, deadline=DEADLINE, fresh_id=TRIGGER)
    assert d.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.DELETE and not d.done_deleting
    waiting = app_obs(answering_cluster(OLD_JOB), job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS"))
    held = run(A1, d.status, waiting, now=at(2), deleting=True, deadline=DEADLINE)
    assert held.action is None and not held.done_deleting
    completed = app_obs(
        answering_cluster(OLD_JOB), job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)
    )
    done = run(A1, held.status, completed, now=at(4), deleting=True, deadline=DEADLINE)
    assert done.done_deleting and done.action is None
    assert done.status.last_savepoint is not None
    assert (done.status.last_savepoint.path, done.status.last_savepoint.reason) == (SP_PATH, "delete")


def test_a_final_savepoint_past_the_deletion_deadline_says_the_job_ends_with_its_cluster_not_that_it_runs_on() -> None:
    up = app_obs(answering_cluster(OLD_JOB), job=job(OLD_JOB))
    d = run(A1, app_steady(), up, deleting=True, deadline=DEADLINE, fresh_id=TRIGGER)
    waiting = app_obs(answering_cluster(OLD_JOB), job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS"))
    gave_up = run(A1, d.status, waiting, now=DEADLINE, deleting=True, deadline=DEADLINE)
    assert gave_up.done_deleting and gave_up.action is None
    [event] = [e for e in gave_up.events if e.reason == "DeleteGaveUp"]
    assert OLD_JOB in event.message and "ends without a final savepoint" in event.message
    assert "cluster is removed with the FlinkJob" in event.message and "left" not in event.message
    # Past the deadline before any savepoint was asked for: the same account of the job.
    late = run(A1, app_steady(), up, now=DEADLINE, deleting=True, deadline=DEADLINE)
    [event] = [e for e in late.events if e.reason == "DeleteGaveUp"]
    assert "ends without a final savepoint" in event.message and "the deletion timed out" in event.message


def test_deleting_while_its_cluster_does_not_answer_waits_until_the_deadline_then_gives_up_naming_it() -> None:
    starting = app_obs(starting_cluster(OLD_JOB, problem=IMAGE_MISSING))
    before = run(A1, app_steady(), starting, now=at(10), deleting=True, deadline=DEADLINE)
    assert before.action is None and not before.done_deleting
    after = run(A1, before.status, starting, now=DEADLINE, deleting=True, deadline=DEADLINE)
    assert after.done_deleting and after.action is None
    assert "DeleteGaveUp" in event_reasons(after)
    assert "does not answer" in after.status.message and IMAGE_MISSING in after.status.message
    assert OLD_JOB in after.status.message


def test_deleting_a_suspended_job_without_a_cluster_finishes_at_once() -> None:
    suspended = app_steady(phase="Suspended", job_state="FINISHED")
    d = run(A1, suspended, no_cluster(suspended), deleting=True, deadline=DEADLINE)
    assert d.done_deleting and d.action is None


# -- the observation the kit builds is the one observe_app makes -------------------------------


@dataclass
class _Kube:
    """A stand-in AppClusterKube: the job id its JobManager Deployment runs, and nothing else."""

    job_id: str | None
    calls: list[str] = field(default_factory=list)

    def look(self, namespace: str, names: object, uid: str, via: RestAddress) -> object:
        from flinkop.app_cluster_kube import ClusterLook, ClusterReadiness, ComponentReadiness

        self.calls.append("look")
        if self.job_id is None:
            return ClusterLook(None)
        # Its pods are there, none ready, and no JobManager pod has an address yet.
        return ClusterLook(self.job_id, ClusterReadiness(ComponentReadiness(0, 1, 1), ComponentReadiness(0, 0, 1)))


class _NoFetcher:
    """A JarFetcher that must not be asked: a local:// jar is in the image."""

    def fetch(self, uri: str, expected_sha256: str | None) -> object:
        raise AssertionError(f"fetched {uri}")


def _observe(kube: _Kube, status: Status, spec: FlinkJobSpec = A1) -> Observation:
    def no_client(url: str) -> FlinkClient:
        raise AssertionError(f"asked for a client of {url}")

    obs, client = observe_app(
        spec,
        status,
        kube=cast(AppClusterKube, kube),
        namespace="ns",
        name="job",
        uid="uid-1",
        via=RestAddress.POD_IP,
        client_for=no_client,
        fetcher=cast(JarFetcher, _NoFetcher()),
    )
    assert client is None
    return obs


def test_a_local_jar_is_ready_without_being_fetched_or_uploaded() -> None:
    check = app_jar_check(cast(JarFetcher, _NoFetcher()), A1.deployment)
    assert check == app_jar()
    assert check.cluster_jar_id == APP_JAR_ID and check.covers(A1.deployment)
    assert check.uri == APP_JAR and check.local_path is None


def test_without_a_cluster_every_job_the_status_names_is_missing_as_the_kit_says() -> None:
    deploying = run(A1, Status(), no_cluster(Status(), app_jar()), fresh_id=NEW_JOB).status
    upgrading = _upgrade_starting(A2, last_stable=A1, source=A1)
    for status in (app_steady(phase="Suspended"), deploying, upgrading):
        obs = _observe(_Kube(None), status, A2 if status is upgrading else A1)
        assert obs == replace(no_cluster(status, obs.jar), cluster_savepoint_dir=SP_DIR)
    assert _observe(_Kube(None), upgrading, A2).new_job == gone(NEW_JOB)


def test_a_cluster_without_a_jobmanager_address_is_starting_and_nothing_of_its_job_is_known() -> None:
    kube = _Kube(NEW_JOB)
    obs = _observe(kube, app_steady())
    assert obs.app is not None and obs.app.starting and obs.app.job_id == NEW_JOB
    assert obs.app.readiness == "JobManager 0/1 ready, TaskManagers 0/1 ready"
    assert obs.job is None and obs.new_job is None and obs.flink_error is None
    assert kube.calls == ["look"], "the cluster is read once per pass"


# -- where an action goes --------------------------------------------------------------------


@dataclass
class _Acts:
    """A stand-in AppClusterActs recording what it was asked; `error` makes it fail as the Kubernetes API would."""

    error: str | None = None
    permanent: bool = False
    started: list[SubmitJob] = field(default_factory=list)
    deleted: list[DeleteCluster] = field(default_factory=list)
    scaled: list[int] = field(default_factory=list)

    def start(self, action: SubmitJob) -> None:
        if self.error:
            raise AppClusterError(self.error, permanent=self.permanent)
        self.started.append(action)

    def delete(self, action: DeleteCluster) -> None:
        if self.error:
            raise AppClusterError(self.error, permanent=self.permanent)
        self.deleted.append(action)

    def scale(self, taskmanagers: int) -> None:
        if self.error:
            raise AppClusterError(self.error, permanent=self.permanent)
        self.scaled.append(taskmanagers)


@dataclass
class _Client:
    """A stand-in FlinkClient recording the calls made on it."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args))

        return call


def _perform(action: Action, client: _Client | None, acts: _Acts | None) -> str | None:
    return perform(cast(FlinkClient | None, client), action, cast(AppClusterActs | None, acts))


APP_START = SubmitJob(APP_JAR_ID, NEW_JOB, A1.deployment, SP_PATH, False)


def test_a_start_on_its_own_cluster_and_a_cluster_removal_go_to_the_kubernetes_api_not_to_flink() -> None:
    acts, client = _Acts(), _Client()
    assert _perform(APP_START, client, acts) is None
    assert _perform(DeleteCluster(OLD_JOB), client, acts) is None
    assert acts.started == [APP_START] and acts.deleted == [DeleteCluster(OLD_JOB)]
    assert client.calls == []
    # A start while no JobManager answers (the usual case: the cluster is made by it).
    assert _perform(APP_START, None, acts) is None and len(acts.started) == 2


def test_savepoints_and_cancels_in_application_mode_go_to_its_jobmanager() -> None:
    acts, client = _Acts(), _Client()
    _perform(TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop"), client, acts)
    _perform(CancelJob(NEW_JOB), client, acts)
    assert [name for name, _ in client.calls] == ["stop_with_savepoint", "cancel_job"]
    assert acts.started == [] and acts.deleted == []
    with pytest.raises(FlinkUnreachable):
        _perform(TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop"), None, acts)


def test_a_session_start_goes_to_flink_even_when_application_acts_are_at_hand() -> None:
    acts, client = _Acts(), _Client()
    _perform(SubmitJob("cluster-jar-v1", NEW_JOB, V1.deployment, None, False), client, acts)
    assert [name for name, _ in client.calls] == ["run_jar"] and acts.started == []


@pytest.mark.parametrize("action", [APP_START, DeleteCluster(OLD_JOB)], ids=["start", "delete"])
def test_a_failed_kubernetes_call_is_retried_unless_it_cannot_succeed_and_says_what_failed(action: Action) -> None:
    # A call that may succeed later (a timeout, a conflict, an object still being deleted): the next
    # pass tries again, as when Flink does not answer; the start does not fail for it.
    with pytest.raises(FlinkUnreachable) as transient:
        _perform(action, _Client(), _Acts(error="replace Deployment ns/job-jobmanager: ReadTimeoutError"))
    assert "ReadTimeoutError" in transient.value.detail
    # One that cannot (an object of that name is not this FlinkJob's): the action fails, saying why.
    with pytest.raises(FlinkError) as failed:
        _perform(action, _Client(), _Acts(error="Deployment ns/job-jobmanager exists and is not owned", permanent=True))
    assert not isinstance(failed.value, FlinkUnreachable)
    assert "not owned" in failed.value.detail
    with pytest.raises(FlinkError) as no_access:
        _perform(action, _Client(), None)
    assert "no access" in no_access.value.detail


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the apiserver applies the operator's status patches."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def test_a_session_spec_written_over_an_application_one_leaves_no_cluster_in_the_stored_status() -> None:
    """A move between modes: the status is a merge patch, which keeps any key the patch leaves out."""
    from flinkop.status import Status, Upgrade

    on_app = Status(phase="Running", job_id=OLD_JOB, deployed=A1.deployment, last_stable=A1.deployment)
    stored = _merge_patch({}, on_app.to_patch())
    up = Upgrade.begin(st.DEPLOY, st.SUBMITTING, S1.deployment, iso(NOW), source=A1.deployment)
    moved = Status(phase="Running", job_id=NEW_JOB, deployed=S1.deployment, last_stable=S1.deployment, upgrade=up)
    stored = _merge_patch(stored, moved.to_patch())
    read = Status.from_dict(stored)
    assert read.deployed == S1.deployment and read.deployed.cluster is None
    assert read.last_stable == S1.deployment
    assert read.upgrade is not None and read.upgrade.target == S1.deployment
    assert read.deployed.fingerprint == S1.deployment.fingerprint  # the fingerprint still leaves the key out


def test_an_in_place_rescale_of_its_own_cluster_sets_the_taskmanagers_before_asking_flink() -> None:
    acts, client = _Acts(), _Client()
    _perform(RescaleInPlace(OLD_JOB, (("v0", 4),), taskmanagers=2), client, acts)
    assert acts.scaled == [2] and [name for name, _ in client.calls] == ["set_resource_requirements"]
    # The count cannot be set: Flink is not asked (the next pass tries again).
    acts, client = _Acts(error="replace Deployment ns/job-taskmanager: ReadTimeoutError"), _Client()
    with pytest.raises(FlinkUnreachable):
        _perform(RescaleInPlace(OLD_JOB, (("v0", 4),), taskmanagers=2), client, acts)
    assert client.calls == []


def test_the_cluster_settings_are_those_the_operator_wrote_for_the_start_that_runs() -> None:
    """Not the JobManager's answer, which is cached by REST URL (a pod IP passes between clusters)."""
    adaptive = {"jobmanager.scheduler": "adaptive", "high-availability.type": "kubernetes"}
    running = make_app_spec(
        cluster={"image": IMAGE_V2 + "-old", "flinkConfiguration": adaptive}, savepointDirectory=None
    )
    wanted = make_app_spec(
        cluster={"image": IMAGE_V2, "flinkConfiguration": {"state.savepoints.dir": "file:///other"}},
        savepointDirectory=None,
    )
    # Its old cluster runs (an upgrade's savepoint): the running cluster's settings.
    status = _upgrade_starting(wanted, last_stable=running, source=running)
    status = replace(status, deployed=running.deployment)
    old = _observe(_Kube(OLD_JOB), status, wanted)
    assert (old.cluster_scheduler, old.cluster_ha, old.cluster_savepoint_dir) == ("adaptive", True, None)
    # The new start's cluster is there: its settings.
    new = _observe(_Kube(NEW_JOB), status, wanted)
    assert (new.cluster_scheduler, new.cluster_ha, new.cluster_savepoint_dir) == (None, False, "file:///other")
