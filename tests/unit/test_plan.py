"""The planner, pass by pass: (spec, status, observation) -> (status to record, at most one action).

Observations are built as plain values; multi-pass scenarios feed each decision's status into the
next pass, as the reconcile loop does after writing it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from flinkop import status as st
from flinkop.actions import CancelJob, DeleteJar, SubmitJob, TriggerSavepoint, UploadJar
from flinkop.flink_client import LatestSavepoint
from flinkop.jar_users import JarUsers
from flinkop.observation import JobView, Observation, after_action
from flinkop.observe import at_rest, jar_to_check
from flinkop.plan import BACKOFF_MAX, POLL_SAVEPOINT, POLL_STOPPING, backoff_seconds, record_action_failure
from flinkop.spec import SpecError
from flinkop.status import Failure, Savepoint, Status
from planner_kit import (
    CLUSTER_SP_DIR,
    FRESH,
    INITIAL_SP_PATH,
    JAR_IDS,
    JAR_V1,
    JAR_V2,
    NEW_JOB,
    NOW,
    OLD_JOB,
    OLDER_SP_PATH,
    ROLLBACK_JOB,
    SP_DIR,
    SP_PATH,
    STABLE,
    TRIGGER,
    V1,
    at,
    cond_status,
    condition,
    event_reasons,
    gone,
    iso,
    jar_bad,
    jar_fetched,
    jar_uploaded,
    job,
    latest,
    make_spec,
    run,
    savepoint,
    savepoint_taken,
    steady,
    upgrade_started,
)

V2 = make_spec(jar={"uri": JAR_V2})  # a new program
V1_SCALED = make_spec(parallelism=4)  # the same program at another parallelism

READY_RUNNING = {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
IN_PROGRESS = {"Ready": "False", "Reconciling": "True", "Stalled": "False"}


# -- first deployment ------------------------------------------------------------------------


def test_first_deploy_waits_for_the_jar_to_be_checked_before_acting() -> None:
    d = run(V1, Status(), Observation(jar=None))
    assert d.action is None
    assert d.requeue_after is not None
    assert d.status.upgrade is None


def test_first_deploy_uploads_a_jar_that_is_not_on_the_cluster_yet() -> None:
    d = run(V1, Status(), Observation(jar=jar_fetched(JAR_V1)))
    assert isinstance(d.action, UploadJar)
    assert d.action.uri == JAR_V1
    assert d.status.upgrade is None, "nothing is submitted before the jar is uploaded"
    assert d.requeue_after is not None


def test_first_deploy_submits_the_uploaded_jar_under_the_fresh_id_recorded_before_the_action() -> None:
    d = run(V1, Status(), Observation(jar=jar_uploaded(JAR_V1)), fresh_id=FRESH)
    assert d.action == SubmitJob(JAR_IDS[JAR_V1], FRESH, V1.deployment, None, False)
    up = d.status.upgrade
    assert up is not None
    assert (up.kind, up.step, up.new_job_id, up.target) == (st.DEPLOY, st.SUBMITTING, FRESH, V1.deployment)
    assert d.status.phase == "Deploying"
    assert cond_status(d) == IN_PROGRESS
    assert d.status.observed_generation == 1


@pytest.mark.parametrize(("policy", "allow"), [("Never", False), ("Always", True)])
def test_first_deploy_starts_from_initial_savepoint_path(policy: str, allow: bool) -> None:
    spec = make_spec(initialSavepointPath=INITIAL_SP_PATH, allowNonRestoredState=policy)
    d = run(spec, Status(), Observation(jar=jar_uploaded(JAR_V1)))
    assert isinstance(d.action, SubmitJob)
    assert d.action.savepoint_path == INITIAL_SP_PATH
    assert d.action.allow_non_restored_state is allow
    assert d.status.upgrade is not None and d.status.upgrade.savepoint_path == INITIAL_SP_PATH


def test_first_deploy_submits_once_and_waits_while_the_new_job_starts() -> None:
    deploying = run(V1, Status(), Observation(jar=jar_uploaded(JAR_V1)), fresh_id=NEW_JOB).status
    obs = Observation(new_job=job(NEW_JOB, vertices=("RUNNING", "DEPLOYING")), jar=jar_uploaded(JAR_V1))
    d = run(V1, deploying, obs, now=at(2), fresh_id=FRESH)
    assert d.action is None, "a submitted job is not submitted again"
    assert d.status.upgrade is not None
    assert (d.status.upgrade.step, d.status.upgrade.new_job_id) == (st.STARTING, NEW_JOB)
    assert d.status.phase == "Deploying"
    assert cond_status(d) == IN_PROGRESS


def test_first_deploy_resubmits_the_recorded_job_id_when_flink_does_not_know_it() -> None:
    deploying = run(V1, Status(), Observation(jar=jar_uploaded(JAR_V1)), fresh_id=NEW_JOB).status
    d = run(V1, deploying, Observation(new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V1)), now=at(2), fresh_id=FRESH)
    assert isinstance(d.action, SubmitJob)
    assert d.action.job_id == NEW_JOB, "the id recorded before the first attempt, not a fresh one"


def test_first_deploy_is_done_when_every_vertex_runs() -> None:
    deploying = run(V1, Status(), Observation(jar=jar_uploaded(JAR_V1)), fresh_id=NEW_JOB).status
    d = run(
        V1, deploying, Observation(new_job=job(NEW_JOB), new_job_progress=STABLE, jar=jar_uploaded(JAR_V1)), now=at(5)
    )
    s = d.status
    assert d.action is None
    assert (s.phase, s.job_id, s.job_state, s.parallelism) == ("Running", NEW_JOB, "RUNNING", 2)
    assert s.deployed == V1.deployment
    assert s.last_stable == V1.deployment
    assert s.upgrade is None
    assert s.jar_id == JAR_IDS[JAR_V1]
    assert cond_status(d) == READY_RUNNING


# -- a bad jar -------------------------------------------------------------------------------

BAD_JARS = [
    pytest.param("JarFetchFailed", "could not fetch https://repo.example/job-2.0.jar: 404", id="fetch-error"),
    pytest.param("JarDigestMismatch", "sha256 of job-2.0.jar is 00ff..., spec.jar.sha256 says ab12...", id="digest"),
    pytest.param("NotAJar", "job-2.0.jar is not a jar (zip) file", id="not-a-jar"),
]


@pytest.mark.parametrize(("reason", "error"), BAD_JARS)
def test_bad_jar_on_first_deploy_stalls_with_its_reason_and_submits_nothing(reason: str, error: str) -> None:
    spec = make_spec(jar={"uri": JAR_V2})
    d = run(spec, Status(), Observation(jar=jar_bad(JAR_V2, reason, error)))
    assert d.action is None
    assert d.status.upgrade is None
    assert d.status.failure is not None and d.status.failure.reason == reason
    assert error in d.status.message
    assert condition(d, "Stalled")["status"] == "True"
    assert condition(d, "Stalled")["reason"] == reason
    assert condition(d, "Ready")["status"] == "False"
    assert "Warning" in [e.type for e in d.events]


@pytest.mark.parametrize("mode", ["savepoint", "stateless"])
@pytest.mark.parametrize(("reason", "error"), BAD_JARS)
def test_bad_jar_for_an_upgrade_stalls_and_never_touches_the_running_job(mode: str, reason: str, error: str) -> None:
    to = make_spec(jar={"uri": JAR_V2}, upgradeMode=mode)
    obs = Observation(job=job(OLD_JOB), jar=jar_bad(JAR_V2, reason, error))
    d = run(to, steady(V1), obs)
    assert d.action is None, "neither a savepoint, a cancel nor a submission"
    assert d.status.upgrade is None
    assert d.status.job_id == OLD_JOB
    assert d.status.phase == "Running"
    assert condition(d, "Stalled")["reason"] == reason
    assert condition(d, "Ready")["status"] == "False"
    again = run(to, d.status, obs, now=at(60))
    assert again.action is None, "the stall holds on the next pass"
    assert again.events == (), "and is not reported twice"
    assert condition(again, "Stalled")["reason"] == reason


# -- steady state ----------------------------------------------------------------------------


def test_steady_running_job_is_ready_records_last_stable_spec_and_needs_nothing() -> None:
    just_deployed = steady(V1, phase="Deploying", last_stable=None)
    d = run(V1, just_deployed, Observation(job=job(OLD_JOB)), generation=7)
    assert d.action is None
    assert d.requeue_after is None
    assert d.status.phase == "Running"
    assert d.status.last_stable == V1.deployment
    assert d.status.observed_generation == 7
    assert cond_status(d) == READY_RUNNING
    assert all(c["observedGeneration"] == 7 for c in d.status.conditions)


def test_steady_running_job_twice_changes_nothing() -> None:
    first = run(V1, steady(V1), Observation(job=job(OLD_JOB)))
    second = run(V1, first.status, Observation(job=job(OLD_JOB)), now=at(60))
    assert second.status == first.status
    assert (second.action, second.requeue_after, second.events) == (None, None, ())


@pytest.mark.parametrize(
    ("state", "vertices"),
    [
        pytest.param("RUNNING", ("RUNNING", "INITIALIZING"), id="vertex-initializing"),
        pytest.param("RUNNING", ("SCHEDULED", "DEPLOYING"), id="vertices-scheduled"),
        pytest.param("RUNNING", (), id="no-vertices-yet"),
        pytest.param("RESTARTING", ("RUNNING", "CANCELING"), id="job-restarting"),
        pytest.param("CREATED", ("CREATED", "CREATED"), id="job-created"),
    ],
)
def test_job_with_not_every_vertex_running_is_deploying(state: str, vertices: tuple[str, ...]) -> None:
    d = run(V1, steady(V1), Observation(job=job(OLD_JOB, state, vertices=vertices)))
    assert d.action is None
    assert d.status.phase == "Deploying"
    assert d.status.job_state == state
    assert d.requeue_after is not None
    assert condition(d, "Ready")["status"] == "False"


# -- starting an upgrade ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("savepoint_mode", "drain", "mode", "drained"),
    [
        pytest.param("stop", False, "stop", False, id="stop"),
        pytest.param("stop", True, "stop", True, id="stop-with-drain"),
        pytest.param("cancel", False, "cancel", False, id="cancel-with-savepoint"),
    ],
)
def test_spec_change_triggers_a_savepoint_with_the_trigger_id_recorded_first(
    savepoint_mode: str, drain: bool, mode: str, drained: bool
) -> None:
    to = make_spec(jar={"uri": JAR_V2}, savepointMode=savepoint_mode, drain=drain)
    d = run(to, steady(V1), Observation(job=job(OLD_JOB), jar=jar_uploaded(JAR_V2)), fresh_id=TRIGGER)
    assert d.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, mode, drain=drained)
    up = d.status.upgrade
    assert up is not None
    assert (up.kind, up.step, up.trigger_id, up.from_job_id) == (st.UPGRADE, st.SAVEPOINTING, TRIGGER, OLD_JOB)
    assert (up.source, up.target, up.savepoint_directory) == (V1.deployment, to.deployment, SP_DIR)
    assert up.started_at == iso(NOW)
    assert d.status.phase == "Upgrading"
    assert cond_status(d) == IN_PROGRESS


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"jar": {"uri": JAR_V2}}, id="jar"),
        pytest.param({"jar": {"uri": JAR_V1, "sha256": "cd" * 32}}, id="jar-digest"),
        pytest.param({"parallelism": 4}, id="parallelism"),
        pytest.param({"args": ["--mode", "fast"]}, id="args"),
        pytest.param({"entryClass": "io.example.Other"}, id="entry-class"),
        pytest.param({"restartNonce": 1}, id="restart-nonce"),
    ],
)
def test_change_to_the_deployment_is_an_upgrade_through_a_savepoint(fields: dict[str, object]) -> None:
    to = make_spec(**fields)
    jar = jar_uploaded(to.deployment.jar_uri, to.deployment.jar_sha256)
    d = run(to, steady(V1), Observation(job=job(OLD_JOB), jar=jar))
    assert isinstance(d.action, TriggerSavepoint)
    assert d.status.upgrade is not None and d.status.upgrade.target == to.deployment


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"savepointMode": "cancel"}, id="savepoint-mode"),
        pytest.param({"drain": True}, id="drain"),
        pytest.param({"savepointTimeoutSeconds": 5}, id="timeout"),
        pytest.param({"allowNonRestoredState": "Always"}, id="allow-non-restored"),
        pytest.param({"restoreFailurePolicy": "Fail"}, id="restore-failure-policy"),
        pytest.param({"upgradeMode": "stateless"}, id="upgrade-mode"),
    ],
)
def test_change_to_how_upgrades_are_made_does_not_restart_the_job(fields: dict[str, object]) -> None:
    d = run(make_spec(**fields), steady(V1), Observation(job=job(OLD_JOB)))
    assert d.action is None
    assert d.status.upgrade is None
    assert cond_status(d) == READY_RUNNING


def test_upgrade_uses_the_cluster_savepoint_directory_when_the_spec_names_none() -> None:
    frm, to = make_spec(savepointDirectory=None), make_spec(savepointDirectory=None, parallelism=4)
    obs = Observation(job=job(OLD_JOB), cluster_savepoint_dir=CLUSTER_SP_DIR, jar=jar_uploaded(JAR_V1))
    d = run(to, steady(frm), obs)
    assert isinstance(d.action, TriggerSavepoint)
    assert d.action.directory == CLUSTER_SP_DIR
    assert d.status.upgrade is not None and d.status.upgrade.savepoint_directory == CLUSTER_SP_DIR


def test_no_savepoint_directory_anywhere_stalls_naming_both_settings_and_leaves_the_job_running() -> None:
    frm, to = make_spec(savepointDirectory=None), make_spec(savepointDirectory=None, parallelism=4)
    obs = Observation(job=job(OLD_JOB), cluster_savepoint_dir=None, jar=jar_uploaded(JAR_V1))
    d = run(to, steady(frm), obs)
    assert d.action is None
    assert d.status.upgrade is None
    assert d.status.job_id == OLD_JOB
    assert "spec.savepointDirectory" in d.status.message
    assert "state.savepoints.dir" in d.status.message
    assert condition(d, "Stalled")["status"] == "True"
    assert condition(d, "Stalled")["reason"] == "NoSavepointDirectory"
    assert "NoSavepointDirectory" in event_reasons(d)
    again = run(to, d.status, obs, now=at(30))
    assert again.action is None
    assert condition(again, "Stalled")["reason"] == "NoSavepointDirectory"


def test_no_savepoint_directory_stall_clears_once_the_cluster_gets_one() -> None:
    frm, to = make_spec(savepointDirectory=None), make_spec(savepointDirectory=None, parallelism=4)
    stalled = run(to, steady(frm), Observation(job=job(OLD_JOB), jar=jar_uploaded(JAR_V1))).status
    fixed = Observation(job=job(OLD_JOB), cluster_savepoint_dir=CLUSTER_SP_DIR, jar=jar_uploaded(JAR_V1))
    d = run(to, stalled, fixed, now=at(30))
    assert isinstance(d.action, TriggerSavepoint)
    assert d.action.directory == CLUSTER_SP_DIR
    assert condition(d, "Stalled")["status"] == "False"


def test_bad_jar_stall_clears_once_the_jar_can_be_fetched() -> None:
    bad = Observation(job=job(OLD_JOB), jar=jar_bad(JAR_V2, "JarFetchFailed", "jar cannot be read"))
    stalled = run(V2, steady(V1), bad).status
    assert stalled.failure is not None and stalled.failure.reason == "JarFetchFailed"
    d = run(V2, stalled, Observation(job=job(OLD_JOB), jar=jar_uploaded(JAR_V2)), now=at(30))
    assert isinstance(d.action, TriggerSavepoint)
    assert condition(d, "Stalled")["status"] == "False"


def test_upgrade_uploads_the_new_jar_before_touching_the_running_job() -> None:
    d = run(V2, steady(V1), Observation(job=job(OLD_JOB), jar=jar_fetched(JAR_V2)))
    assert isinstance(d.action, UploadJar)
    assert d.status.upgrade is None, "no savepoint until the new jar is on the cluster"


def test_upgrade_waits_for_the_jar_check_before_touching_the_running_job() -> None:
    d = run(V2, steady(V1), Observation(job=job(OLD_JOB), jar=None))
    assert d.action is None
    assert d.status.upgrade is None


@pytest.mark.parametrize("state", ["RESTARTING", "CREATED", "INITIALIZING"])
def test_upgrade_waits_until_the_old_job_is_running(state: str) -> None:
    d = run(V2, steady(V1), Observation(job=job(OLD_JOB, state), jar=jar_uploaded(JAR_V2)))
    assert d.action is None
    assert d.status.upgrade is None
    assert d.requeue_after is not None


# -- the savepoint ---------------------------------------------------------------------------


def test_savepoint_in_progress_is_waited_for() -> None:
    started = upgrade_started(V1, V2)
    obs = Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS"))
    d = run(V2, started, obs, now=at(5))
    assert d.action is None
    assert d.requeue_after is not None
    assert d.status.upgrade == started.upgrade
    assert d.status.phase == "Upgrading"


def test_a_stopping_job_is_watched_more_closely_than_a_savepoint_that_keeps_it_running() -> None:
    # From the moment a stop-with-savepoint completes the job processes nothing until the new one
    # runs: the operator looks as often as the hand-run sequence it is measured against (bench B1).
    to = make_spec(jar={"uri": JAR_V2})
    triggered = run(to, steady(V1), Observation(job=job(OLD_JOB), jar=jar_uploaded(JAR_V2)), fresh_id=TRIGGER)
    in_progress = Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS"))
    waiting = run(to, upgrade_started(V1, to), in_progress, now=at(1))
    waiting_long = run(to, upgrade_started(V1, to), in_progress, now=at(3))
    manual = make_spec(savepointNonce=1)
    kept = run(manual, steady(manual), Observation(job=job(OLD_JOB)), fresh_id=TRIGGER)
    assert isinstance(triggered.action, TriggerSavepoint) and triggered.action.mode == "stop"
    assert isinstance(kept.action, TriggerSavepoint) and kept.action.mode == "keep"
    # Closest in the first 2 s after the trigger, when a small state's savepoint completes.
    assert triggered.requeue_after == waiting.requeue_after == POLL_STOPPING
    assert waiting_long.requeue_after == POLL_SAVEPOINT > POLL_STOPPING
    assert kept.requeue_after is not None and kept.requeue_after > POLL_SAVEPOINT


def test_an_upload_is_followed_by_the_savepoint_without_reading_flink_again() -> None:
    d = run(V2, steady(V1), Observation(job=job(OLD_JOB), jar=jar_fetched(JAR_V2)))
    assert isinstance(d.action, UploadJar)
    after = after_action(Observation(job=job(OLD_JOB), jar=jar_fetched(JAR_V2)), d.action, "uploaded-jar-id")
    assert after is not None and after.jar is not None and after.jar.cluster_jar_id == "uploaded-jar-id"
    then = run(V2, d.status, after, fresh_id=TRIGGER)
    assert then.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    stop = TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    assert after_action(after, stop, None) is None, "a savepoint's outcome is only known by reading Flink"


def test_savepoint_past_its_timeout_is_reported_and_the_job_is_left_running() -> None:
    to = make_spec(jar={"uri": JAR_V2}, savepointTimeoutSeconds=60)
    started = upgrade_started(V1, to)
    obs = Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS"))
    d = run(to, started, obs, now=at(61))
    assert d.action is None, "no cancel, no second trigger: the job keeps running"
    assert "savepointTimeoutSeconds" in d.status.message
    assert "60" in d.status.message
    assert "SavepointTimeout" in event_reasons(d)
    assert d.status.upgrade is not None and d.status.upgrade.trigger_id == TRIGGER
    assert d.status.job_id == OLD_JOB
    later = run(to, d.status, obs, now=at(90))
    assert later.action is None
    assert "SavepointTimeout" not in event_reasons(later), "reported once"


def test_savepoint_that_completes_after_its_timeout_still_finishes_the_upgrade() -> None:
    to = make_spec(jar={"uri": JAR_V2}, savepointTimeoutSeconds=60)
    timed_out = run(
        to, upgrade_started(V1, to), Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS")), now=at(61)
    ).status
    obs = Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH))
    d = run(to, timed_out, obs, now=at(70), fresh_id=NEW_JOB)
    assert d.status.last_savepoint is not None and d.status.last_savepoint.path == SP_PATH
    assert d.status.upgrade is not None and d.status.upgrade.step == st.SUBMITTING


def test_failed_savepoint_backs_off_without_action_then_triggers_anew() -> None:
    started = upgrade_started(V1, V2)
    failed = run(
        V2, started, Observation(job=job(OLD_JOB), savepoint=savepoint("FAILED", failure="disk full")), now=at(5)
    )
    assert failed.action is None
    up = failed.status.upgrade
    assert up is not None
    assert (up.attempts, up.trigger_id, up.last_error) == (1, None, "disk full")
    assert up.retry_at == iso(at(5 + backoff_seconds(1)))
    assert failed.requeue_after == backoff_seconds(1)
    assert "disk full" in failed.status.message
    assert "SavepointFailed" in event_reasons(failed)
    assert failed.status.job_id == OLD_JOB

    # The trigger was dropped, so the next observation has no savepoint operation.
    waiting = run(V2, failed.status, Observation(job=job(OLD_JOB)), now=at(6), fresh_id="9" * 32)
    assert waiting.action is None, "nothing before retry_at"
    assert waiting.requeue_after is not None and 0 < waiting.requeue_after <= backoff_seconds(1)

    retry = run(V2, waiting.status, Observation(job=job(OLD_JOB)), now=at(5 + backoff_seconds(1)), fresh_id=FRESH)
    assert retry.action == TriggerSavepoint(OLD_JOB, FRESH, SP_DIR, "stop")
    assert retry.status.upgrade is not None
    assert (retry.status.upgrade.trigger_id, retry.status.upgrade.retry_at) == (FRESH, None)
    assert retry.status.upgrade.step_started_at == iso(at(5 + backoff_seconds(1))), "the timeout counts anew"


@pytest.mark.parametrize(("attempts", "delay"), [(1, 10.0), (2, 20.0), (3, 40.0), (5, 160.0), (6, 300.0), (20, 300.0)])
def test_backoff_doubles_up_to_its_maximum(attempts: int, delay: float) -> None:
    assert backoff_seconds(attempts) == delay
    assert backoff_seconds(attempts) <= BACKOFF_MAX


def test_completed_savepoint_is_recorded_with_the_new_job_id_before_any_submission() -> None:
    history = (Savepoint(OLDER_SP_PATH, "2024-04-01T00:00:00Z", "manual"),)
    started = replace(upgrade_started(V1, V2), savepoint_history=history, last_savepoint=history[0])
    obs = Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH))
    d = run(V2, started, obs, now=at(10), fresh_id=NEW_JOB)
    # The decision's status (written before its action) holds the savepoint and the new job's id;
    # the jar's cluster id was recorded with the trigger, so nothing more needs reading first.
    assert d.action == SubmitJob(JAR_IDS[V2.deployment.jar_uri], NEW_JOB, V2.deployment, SP_PATH, False)
    s = d.status
    assert s.last_savepoint == Savepoint(SP_PATH, iso(at(10)), "upgrade", triggered_at=iso(NOW))
    assert [sp.path for sp in s.savepoint_history] == [SP_PATH, OLDER_SP_PATH]
    up = s.upgrade
    assert up is not None
    assert (up.step, up.savepoint_path, up.new_job_id) == (st.SUBMITTING, SP_PATH, NEW_JOB)
    assert "SavepointCompleted" in event_reasons(d)


def test_trigger_unknown_to_flink_while_the_job_runs_is_retriggered_with_the_same_id() -> None:
    """The operator died after recording the trigger id and before (or while) calling Flink."""
    started = upgrade_started(V1, V2)
    for op in (savepoint("UNKNOWN"), None):
        d = run(V2, started, Observation(job=job(OLD_JOB), savepoint=op), now=at(3), fresh_id=FRESH)
        assert d.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
        assert d.status.upgrade is not None
        assert d.status.upgrade.trigger_id == TRIGGER
        assert d.status.upgrade.step_started_at == iso(NOW)


def test_trigger_unknown_with_the_job_finished_and_a_fresh_latest_savepoint_counts_as_completed() -> None:
    started = upgrade_started(V1, V2)
    obs = Observation(
        job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("UNKNOWN"), latest_savepoint=latest(SP_PATH, at(1))
    )
    d = run(V2, started, obs, now=at(20), fresh_id=NEW_JOB)
    assert isinstance(d.action, SubmitJob) and d.action.savepoint_path == SP_PATH
    assert d.status.last_savepoint is not None and d.status.last_savepoint.path == SP_PATH
    assert d.status.upgrade is not None
    assert (d.status.upgrade.step, d.status.upgrade.savepoint_path) == (st.SUBMITTING, SP_PATH)
    assert d.status.upgrade.new_job_id == NEW_JOB


@pytest.mark.parametrize(
    "latest_sp",
    [pytest.param(None, id="no-savepoint"), pytest.param(latest(OLDER_SP_PATH, at(-3600)), id="older-savepoint")],
)
def test_job_that_ended_without_a_savepoint_during_the_upgrade_is_reported_not_resubmitted(
    latest_sp: LatestSavepoint | None,
) -> None:
    started = upgrade_started(V1, V2)
    obs = Observation(job=job(OLD_JOB, "CANCELED"), savepoint=savepoint("UNKNOWN"), latest_savepoint=latest_sp)
    d = run(V2, started, obs, now=at(20))
    assert d.action is None
    assert d.status.upgrade is None
    assert d.status.phase == "Failed"
    assert condition(d, "Stalled")["reason"] == "JobTerminated"
    again = run(V2, d.status, Observation(job=job(OLD_JOB, "CANCELED"), jar=jar_uploaded(JAR_V2)), now=at(30))
    assert again.action is None


# -- starting the new version ----------------------------------------------------------------


def test_submission_waits_until_the_old_job_is_terminal() -> None:
    taken = savepoint_taken(V1, V2)
    obs = Observation(job=job(OLD_JOB, "RUNNING"), new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V2))
    d = run(V2, taken, obs, now=at(12))
    assert d.action is None
    assert d.requeue_after is not None
    assert d.status.upgrade == taken.upgrade


@pytest.mark.parametrize("old_state", ["FINISHED", "CANCELED"])
def test_missing_new_job_is_submitted_under_the_recorded_id_from_the_savepoint(old_state: str) -> None:
    taken = savepoint_taken(V1, V2)
    obs = Observation(job=job(OLD_JOB, old_state), new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V2))
    d = run(V2, taken, obs, now=at(12), fresh_id=FRESH)
    assert d.action == SubmitJob(JAR_IDS[JAR_V2], NEW_JOB, V2.deployment, SP_PATH, False)
    assert d.status.phase == "Upgrading"


@pytest.mark.parametrize(
    ("policy", "change", "allow"),
    [
        pytest.param("Never", {"jar": {"uri": JAR_V2}}, False, id="never-jar-change"),
        pytest.param("Always", {"parallelism": 4}, True, id="always-parallelism-change"),
        pytest.param("Always", {"jar": {"uri": JAR_V2}}, True, id="always-jar-change"),
        pytest.param("OnJarChange", {"jar": {"uri": JAR_V2}}, True, id="onjarchange-jar"),
        pytest.param("OnJarChange", {"entryClass": "io.example.Other"}, True, id="onjarchange-entry-class"),
        pytest.param("OnJarChange", {"args": ["--new"]}, True, id="onjarchange-args"),
        pytest.param("OnJarChange", {"parallelism": 4}, False, id="onjarchange-parallelism-only"),
        pytest.param("OnJarChange", {"restartNonce": 2}, False, id="onjarchange-restart-nonce-only"),
    ],
)
def test_allow_non_restored_state_of_the_submission_follows_the_policy(
    policy: str, change: dict[str, object], allow: bool
) -> None:
    frm = make_spec(allowNonRestoredState=policy)
    to = make_spec(allowNonRestoredState=policy, **change)
    taken = savepoint_taken(frm, to)
    assert taken.upgrade is not None and taken.upgrade.allow_non_restored_state is allow
    uri = to.deployment.jar_uri
    obs = Observation(job=job(OLD_JOB, "FINISHED"), new_job=gone(NEW_JOB), jar=jar_uploaded(uri))
    d = run(to, taken, obs, now=at(12))
    assert isinstance(d.action, SubmitJob)
    assert d.action.allow_non_restored_state is allow
    assert d.action.savepoint_path == SP_PATH


def test_upgrade_is_done_when_every_vertex_of_the_new_job_runs_and_the_old_jar_is_deleted() -> None:
    taken = savepoint_taken(V1, V2)
    obs = Observation(
        job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB), new_job_progress=STABLE, jar=jar_uploaded(JAR_V2)
    )
    d = run(V2, taken, obs, now=at(20))
    s = d.status
    assert (s.phase, s.job_id, s.deployed, s.last_stable, s.upgrade) == (
        "Running",
        NEW_JOB,
        V2.deployment,
        V2.deployment,
        None,
    )
    assert s.jar_id == JAR_IDS[JAR_V2]
    assert s.last_savepoint is not None and s.last_savepoint.path == SP_PATH
    assert d.action == DeleteJar(JAR_IDS[JAR_V1])
    assert cond_status(d) == READY_RUNNING
    assert SP_PATH in s.message


def test_an_old_jar_another_flinkjob_on_the_cluster_runs_from_is_not_deleted() -> None:
    taken = savepoint_taken(V1, V2)
    obs = Observation(
        job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB), new_job_progress=STABLE, jar=jar_uploaded(JAR_V2)
    )
    d = run(V2, taken, obs, now=at(20), jars_used_elsewhere=frozenset({JAR_IDS[JAR_V1]}))
    assert d.status.upgrade is None and d.status.jar_id == JAR_IDS[JAR_V2]
    assert d.action is None


def test_jar_users_are_counted_per_cluster_and_forgotten_with_their_flinkjob() -> None:
    users = JarUsers()
    users.record("a", "http://flink-1:8081", "shared.jar")
    users.record("b", "http://flink-1:8081", "shared.jar")
    users.record("c", "http://flink-2:8081", "other.jar")
    assert users.used_elsewhere("a", "http://flink-1:8081") == {"shared.jar"}
    assert users.used_elsewhere("c", "http://flink-2:8081") == frozenset()
    users.forget("b")
    assert users.used_elsewhere("a", "http://flink-1:8081") == frozenset()
    users.record("c", "http://flink-1:8081", "shared.jar")  # c moved to cluster 1
    assert users.used_elsewhere("a", "http://flink-1:8081") == {"shared.jar"}
    assert users.used_elsewhere("x", "http://flink-2:8081") == frozenset()
    users.record("a", "http://flink-1:8081", "new.jar")  # a moved off the shared jar
    assert users.used_elsewhere("a", "http://flink-1:8081") == {"shared.jar"}
    assert users.used_elsewhere("c", "http://flink-1:8081") == {"new.jar"}


def test_parallelism_only_upgrade_keeps_the_jar() -> None:
    taken = savepoint_taken(V1, V1_SCALED)
    obs = Observation(
        job=job(OLD_JOB, "FINISHED"),
        new_job=job(NEW_JOB, parallelism=4),
        new_job_progress=STABLE,
        jar=jar_uploaded(JAR_V1),
    )
    d = run(V1_SCALED, taken, obs, now=at(20))
    assert d.action is None
    assert (d.status.phase, d.status.parallelism, d.status.jar_id) == ("Running", 4, JAR_IDS[JAR_V1])


# -- restore failure -------------------------------------------------------------------------

CAUSE = "java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint: operator x not mapped"


def test_new_job_failing_to_restore_is_rolled_back_to_the_last_stable_spec_from_the_same_savepoint() -> None:
    taken = savepoint_taken(V1, V2)
    failed_obs = Observation(
        job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "FAILED", failure=CAUSE), jar=jar_uploaded(JAR_V2)
    )
    d = run(V2, taken, failed_obs, now=at(20), fresh_id=ROLLBACK_JOB)
    assert d.action is None
    up = d.status.upgrade
    assert up is not None
    assert (up.kind, up.step, up.target, up.source) == (st.ROLLBACK, st.SUBMITTING, V1.deployment, V2.deployment)
    assert (up.savepoint_path, up.new_job_id, up.from_job_id) == (SP_PATH, ROLLBACK_JOB, NEW_JOB)
    assert d.status.phase == "RollingBack"
    assert CAUSE in d.status.message
    assert "RestoreFailed" in event_reasons(d)

    # The failed job is the one to wait for now; the rollback job is submitted from the same savepoint.
    submit_obs = Observation(job=job(NEW_JOB, "FAILED"), new_job=gone(ROLLBACK_JOB), jar=jar_uploaded(JAR_V1))
    submit = run(V2, d.status, submit_obs, now=at(21))
    assert submit.action == SubmitJob(JAR_IDS[JAR_V1], ROLLBACK_JOB, V1.deployment, SP_PATH, False)

    running_obs = Observation(
        job=job(NEW_JOB, "FAILED"), new_job=job(ROLLBACK_JOB), new_job_progress=STABLE, jar=jar_uploaded(JAR_V1)
    )
    done = run(V2, submit.status, running_obs, now=at(30))
    s = done.status
    assert (s.phase, s.job_id, s.deployed, s.upgrade) == ("Running", ROLLBACK_JOB, V1.deployment, None)
    assert condition(done, "Stalled")["status"] == "True"
    assert condition(done, "Stalled")["reason"] == "RestoreFailed"
    assert CAUSE in condition(done, "Stalled")["message"]
    assert condition(done, "Ready")["status"] == "False"
    assert condition(done, "Reconciling")["status"] == "False"
    assert "RolledBack" in event_reasons(done)

    # At rest afterwards: the failed spec is not tried again until it changes.
    rest = run(V2, s, Observation(job=job(ROLLBACK_JOB), jar=jar_uploaded(JAR_V2)), now=at(90))
    assert rest.action is None
    assert rest.status.upgrade is None
    assert condition(rest, "Stalled")["reason"] == "RestoreFailed"


ROLLED_BACK_FROM_V2 = Failure("RestoreFailed", "rolled back", V2.deployment.fingerprint)


def test_after_a_rollback_a_new_spec_is_upgraded_to_again() -> None:
    rolled_back = steady(V1, job_id=ROLLBACK_JOB, failure=ROLLED_BACK_FROM_V2)
    v3 = make_spec(jar={"uri": JAR_V2}, args=["--fixed"])
    d = run(v3, rolled_back, Observation(job=job(ROLLBACK_JOB), jar=jar_uploaded(JAR_V2)), fresh_id=TRIGGER)
    assert d.action == TriggerSavepoint(ROLLBACK_JOB, TRIGGER, SP_DIR, "stop")
    assert condition(d, "Stalled")["status"] == "False"


def test_reverting_the_spec_after_a_rollback_clears_the_stall() -> None:
    rolled_back = steady(V1, job_id=ROLLBACK_JOB, failure=ROLLED_BACK_FROM_V2)
    d = run(V1, rolled_back, Observation(job=job(ROLLBACK_JOB)))
    assert d.action is None
    assert d.status.failure is None
    assert cond_status(d) == READY_RUNNING


def test_new_job_failing_to_restore_with_policy_fail_stops_and_keeps_the_savepoint() -> None:
    frm, to = make_spec(restoreFailurePolicy="Fail"), make_spec(jar={"uri": JAR_V2}, restoreFailurePolicy="Fail")
    taken = savepoint_taken(frm, to)
    obs = Observation(
        job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "FAILED", failure=CAUSE), jar=jar_uploaded(JAR_V2)
    )
    d = run(to, taken, obs, now=at(20), fresh_id=FRESH)
    s = d.status
    assert d.action is None
    assert s.phase == "Failed"
    assert s.upgrade is None
    assert s.last_savepoint is not None and s.last_savepoint.path == SP_PATH
    assert SP_PATH in s.message and CAUSE in s.message
    assert condition(d, "Stalled")["reason"] == "RestoreFailed"
    assert condition(d, "Ready")["status"] == "False"
    rest = run(to, s, Observation(job=job(NEW_JOB, "FAILED", failure=CAUSE)), now=at(60))
    assert rest.action is None, "not resubmitted"
    assert rest.status.phase == "Failed"


def test_fixing_the_spec_after_a_failed_restore_deploys_from_the_kept_savepoint() -> None:
    frm, to = make_spec(restoreFailurePolicy="Fail"), make_spec(jar={"uri": JAR_V2}, restoreFailurePolicy="Fail")
    obs = Observation(
        job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "FAILED", failure=CAUSE), jar=jar_uploaded(JAR_V2)
    )
    failed = run(to, savepoint_taken(frm, to), obs, now=at(20)).status
    fixed = make_spec(jar={"uri": JAR_V2}, restoreFailurePolicy="Fail", args=["--compat"])
    obs = Observation(job=job(NEW_JOB, "FAILED"), jar=jar_uploaded(JAR_V2))
    d = run(fixed, failed, obs, now=at(60), fresh_id=FRESH)
    assert d.action == SubmitJob(JAR_IDS[JAR_V2], FRESH, fixed.deployment, SP_PATH, False)


# -- a job ended outside the operator --------------------------------------------------------

ENDED = [
    pytest.param(job(OLD_JOB, "CANCELED"), id="cancelled"),
    pytest.param(job(OLD_JOB, "FAILED", failure="java.lang.OutOfMemoryError"), id="failed"),
    pytest.param(job(OLD_JOB, "FINISHED"), id="finished"),
]
# A job its cluster no longer lists (gone) is restarted from its last savepoint: test_lost_jobs.py.


@pytest.mark.parametrize("ended", ENDED)
def test_job_ended_outside_the_operator_is_reported_and_not_resubmitted(ended: JobView) -> None:
    status = steady(V1, last_savepoint=Savepoint(SP_PATH, "2024-05-01T11:00:00Z", "upgrade"))
    d = run(V1, status, Observation(job=ended))
    assert d.action is None
    assert d.status.phase == "Failed"
    assert condition(d, "Stalled")["reason"] == "JobTerminated"
    assert condition(d, "Ready")["status"] == "False"
    assert SP_PATH in d.status.message
    assert "JobTerminated" in event_reasons(d)
    again = run(V1, d.status, Observation(job=ended), now=at(60))
    assert again.action is None
    assert again.events == ()
    assert again.status.phase == "Failed"


def test_job_failure_cause_is_in_the_message() -> None:
    d = run(V1, steady(V1), Observation(job=job(OLD_JOB, "FAILED", failure="java.lang.OutOfMemoryError")))
    assert "java.lang.OutOfMemoryError" in d.status.message


def test_spec_change_after_the_job_ended_deploys_from_the_last_savepoint() -> None:
    status = steady(V1, last_savepoint=Savepoint(SP_PATH, "2024-05-01T11:00:00Z", "upgrade"))
    ended = run(V1, status, Observation(job=job(OLD_JOB, "CANCELED"))).status
    to = make_spec(jar={"uri": JAR_V2}, allowNonRestoredState="OnJarChange")
    d = run(to, ended, Observation(job=job(OLD_JOB, "CANCELED"), jar=jar_uploaded(JAR_V2)), now=at(60), fresh_id=FRESH)
    assert d.action == SubmitJob(JAR_IDS[JAR_V2], FRESH, to.deployment, SP_PATH, True)
    up = d.status.upgrade
    assert up is not None
    assert (up.kind, up.new_job_id, up.savepoint_path) == (st.DEPLOY, FRESH, SP_PATH)
    assert condition(d, "Stalled")["status"] == "False"


# -- Flink unreachable -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(Status(), id="first-deploy"),
        pytest.param(steady(V1), id="steady"),
        pytest.param(upgrade_started(V1, V2), id="upgrade-in-flight"),
    ],
)
def test_unreachable_flink_gets_no_action_and_the_message_says_so(status: Status) -> None:
    d = run(V2, status, Observation(flink_error="connection refused"))
    assert d.action is None
    assert "unreachable" in d.status.message
    assert "connection refused" in d.status.message
    assert d.status.upgrade == status.upgrade
    assert d.status.job_id == status.job_id
    assert d.requeue_after is not None


# -- a change during an upgrade --------------------------------------------------------------


def test_change_during_an_upgrade_waits_for_it_to_reach_its_recorded_target() -> None:
    v3 = make_spec(jar={"uri": JAR_V2}, parallelism=6)
    started = upgrade_started(V1, V2)
    # The spec moves to v3 while the savepoint is under way: the same trigger is followed.
    d = run(v3, started, Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS")), now=at(2))
    assert d.action is None
    assert d.status.upgrade == started.upgrade
    taken = run(
        v3,
        d.status,
        Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)),
        now=at(5),
        fresh_id=NEW_JOB,
    )
    assert taken.status.upgrade is not None and taken.status.upgrade.target == V2.deployment
    submit = run(
        v3,
        taken.status,
        Observation(job=job(OLD_JOB, "FINISHED"), new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V2)),
        now=at(6),
    )
    assert isinstance(submit.action, SubmitJob)
    assert submit.action.deployment == V2.deployment, "v2, the recorded target, not v3"
    done = run(
        v3,
        submit.status,
        Observation(
            job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB), new_job_progress=STABLE, jar=jar_uploaded(JAR_V2)
        ),
        now=at(10),
    )
    assert done.status.deployed == V2.deployment
    assert done.status.upgrade is None
    assert condition(done, "Ready")["status"] == "False", "v3 is not running yet"
    # Afterwards a new upgrade starts, from the job the first one started.
    nxt = run(v3, done.status, Observation(job=job(NEW_JOB), jar=jar_uploaded(JAR_V2)), now=at(11), fresh_id=FRESH)
    assert nxt.action == TriggerSavepoint(NEW_JOB, FRESH, SP_DIR, "stop")
    assert nxt.status.upgrade is not None
    assert (nxt.status.upgrade.source, nxt.status.upgrade.target) == (V2.deployment, v3.deployment)


# -- stateless upgrades ----------------------------------------------------------------------


def test_stateless_upgrade_cancels_then_submits_without_a_savepoint() -> None:
    to = make_spec(jar={"uri": JAR_V2}, upgradeMode="stateless", allowNonRestoredState="Always")
    d = run(to, steady(V1), Observation(job=job(OLD_JOB), jar=jar_uploaded(JAR_V2)))
    assert d.action == CancelJob(OLD_JOB)
    assert d.status.upgrade is not None
    assert (d.status.upgrade.step, d.status.upgrade.from_job_id) == (st.CANCELLING, OLD_JOB)
    assert d.status.phase == "Upgrading"

    still = run(to, d.status, Observation(job=job(OLD_JOB, "CANCELLING")), now=at(1))
    assert still.action == CancelJob(OLD_JOB), "cancelling is repeated until the job is gone"

    cancelled = run(to, still.status, Observation(job=job(OLD_JOB, "CANCELED")), now=at(2), fresh_id=NEW_JOB)
    assert cancelled.action is None
    up = cancelled.status.upgrade
    assert up is not None
    assert (up.step, up.new_job_id, up.savepoint_path) == (st.SUBMITTING, NEW_JOB, None)

    submit = run(
        to,
        cancelled.status,
        Observation(job=job(OLD_JOB, "CANCELED"), new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V2)),
        now=at(3),
        fresh_id=FRESH,
    )
    assert submit.action == SubmitJob(JAR_IDS[JAR_V2], NEW_JOB, to.deployment, None, False)

    done = run(
        to,
        submit.status,
        Observation(
            job=job(OLD_JOB, "CANCELED"), new_job=job(NEW_JOB), new_job_progress=STABLE, jar=jar_uploaded(JAR_V2)
        ),
        now=at(8),
    )
    assert (done.status.phase, done.status.job_id) == ("Running", NEW_JOB)
    assert done.status.last_savepoint is None
    assert cond_status(done) == READY_RUNNING


def test_stateless_upgrade_uploads_the_new_jar_before_cancelling() -> None:
    to = make_spec(jar={"uri": JAR_V2}, upgradeMode="stateless")
    d = run(to, steady(V1), Observation(job=job(OLD_JOB), jar=jar_fetched(JAR_V2)))
    assert isinstance(d.action, UploadJar)
    assert d.status.upgrade is None


def test_stateless_upgrade_needs_no_savepoint_directory() -> None:
    frm = make_spec(savepointDirectory=None)
    to = make_spec(savepointDirectory=None, parallelism=4, upgradeMode="stateless")
    d = run(to, steady(frm), Observation(job=job(OLD_JOB), jar=jar_uploaded(JAR_V1)))
    assert d.action == CancelJob(OLD_JOB)


# -- deletion --------------------------------------------------------------------------------

DEADLINE = at(300)


def test_deletion_stops_the_job_with_a_savepoint_and_finishes_once_it_completes() -> None:
    d = run(V1, steady(V1), Observation(job=job(OLD_JOB)), deleting=True, deadline=DEADLINE, fresh_id=TRIGGER)
    assert d.action == TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    assert d.status.upgrade is not None
    assert (d.status.upgrade.kind, d.status.upgrade.trigger_id) == (st.DELETE, TRIGGER)
    assert not d.done_deleting

    waiting = run(
        V1,
        d.status,
        Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS")),
        now=at(5),
        deleting=True,
        deadline=DEADLINE,
    )
    assert waiting.action is None
    assert not waiting.done_deleting

    done = run(
        V1,
        waiting.status,
        Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)),
        now=at(10),
        deleting=True,
        deadline=DEADLINE,
    )
    assert done.done_deleting
    assert done.action is None
    assert done.status.last_savepoint == Savepoint(SP_PATH, iso(at(10)), "delete", triggered_at=iso(NOW))
    assert done.status.upgrade is None


def test_deletion_uses_the_cluster_savepoint_directory_and_never_drains() -> None:
    spec = make_spec(savepointDirectory=None, drain=True)
    d = run(
        spec,
        steady(spec),
        Observation(job=job(OLD_JOB), cluster_savepoint_dir=CLUSTER_SP_DIR),
        deleting=True,
        deadline=DEADLINE,
        fresh_id=TRIGGER,
    )
    assert d.action == TriggerSavepoint(OLD_JOB, TRIGGER, CLUSTER_SP_DIR, "stop", drain=False)


def test_deletion_gives_up_on_the_savepoint_after_the_deadline() -> None:
    started = run(V1, steady(V1), Observation(job=job(OLD_JOB)), deleting=True, deadline=DEADLINE).status
    d = run(
        V1,
        started,
        Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS")),
        now=DEADLINE,
        deleting=True,
        deadline=DEADLINE,
    )
    assert d.done_deleting
    assert d.action is None
    [event] = [e for e in d.events if e.reason == "DeleteGaveUp"]
    assert OLD_JOB in event.message and "left as it is on the cluster" in event.message


def test_deletion_retries_a_failed_final_savepoint_until_the_deadline() -> None:
    started = run(V1, steady(V1), Observation(job=job(OLD_JOB)), deleting=True, deadline=DEADLINE).status
    d = run(
        V1,
        started,
        Observation(job=job(OLD_JOB), savepoint=savepoint("FAILED", failure="boom")),
        now=at(5),
        deleting=True,
        deadline=DEADLINE,
    )
    assert not d.done_deleting
    assert d.action is None
    assert d.status.upgrade is not None and d.status.upgrade.retry_at is not None


@pytest.mark.parametrize(
    ("status", "obs"),
    [
        pytest.param(Status(), Observation(), id="never-deployed"),
        pytest.param(steady(V1), Observation(job=job(OLD_JOB, "CANCELED")), id="job-ended"),
        pytest.param(steady(V1), Observation(job=gone(OLD_JOB)), id="job-gone"),
    ],
)
def test_deletion_with_no_running_job_finishes_at_once(status: Status, obs: Observation) -> None:
    d = run(V1, status, obs, deleting=True, deadline=DEADLINE)
    assert d.done_deleting
    assert d.action is None


def test_deletion_without_a_savepoint_directory_leaves_the_job_and_says_so() -> None:
    spec = make_spec(savepointDirectory=None)
    d = run(
        spec, steady(spec), Observation(job=job(OLD_JOB), cluster_savepoint_dir=None), deleting=True, deadline=DEADLINE
    )
    assert d.done_deleting
    assert d.action is None
    [event] = [e for e in d.events if e.reason == "DeleteGaveUp"]
    assert "no savepoint directory is configured" in event.message
    assert f"job {OLD_JOB} was left running on the cluster" in event.message


def test_deletion_waits_for_an_upgrade_savepoint_under_way() -> None:
    d = run(
        V2,
        upgrade_started(V1, V2),
        Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS")),
        now=at(2),
        deleting=True,
        deadline=DEADLINE,
    )
    assert d.action is None
    assert not d.done_deleting


def test_deletion_while_flink_is_unreachable_waits_until_the_deadline_then_gives_up() -> None:
    obs = Observation(flink_error="connection refused")
    before = run(V1, steady(V1), obs, now=at(10), deleting=True, deadline=DEADLINE)
    assert not before.done_deleting
    assert before.action is None
    after = run(V1, steady(V1), obs, now=DEADLINE, deleting=True, deadline=DEADLINE)
    assert after.done_deleting
    assert after.action is None
    assert "DeleteGaveUp" in event_reasons(after)


def test_deletion_of_an_invalid_spec_gives_up_at_the_deadline() -> None:
    bad = SpecError("spec.drain: true works only with spec.savepointMode: stop")
    before = run(bad, steady(V1), Observation(), now=at(10), deleting=True, deadline=DEADLINE)
    assert not before.done_deleting
    after = run(bad, steady(V1), Observation(), now=DEADLINE, deleting=True, deadline=DEADLINE)
    assert after.done_deleting
    assert after.action is None


# -- actions Flink refused -------------------------------------------------------------------


def test_refused_savepoint_trigger_is_retried_after_a_backoff_with_a_new_trigger_id() -> None:
    started = upgrade_started(V1, V2)
    action = TriggerSavepoint(OLD_JOB, TRIGGER, SP_DIR, "stop")
    failed = record_action_failure(started, action, "job is not running", NOW)
    up = failed.upgrade
    assert up is not None
    assert (up.attempts, up.trigger_id, up.last_error) == (1, None, "job is not running")
    assert up.retry_at == iso(at(backoff_seconds(1)))
    assert "job is not running" in failed.message
    assert failed.job_id == OLD_JOB

    waiting = run(V2, failed, Observation(job=job(OLD_JOB)), now=at(1))
    assert waiting.action is None
    retry = run(V2, failed, Observation(job=job(OLD_JOB)), now=at(backoff_seconds(1) + 1), fresh_id=FRESH)
    assert retry.action == TriggerSavepoint(OLD_JOB, FRESH, SP_DIR, "stop")


def test_refused_submission_of_an_upgrade_rolls_back() -> None:
    taken = savepoint_taken(V1, V2)
    action = SubmitJob(JAR_IDS[JAR_V2], NEW_JOB, V2.deployment, SP_PATH, False)
    failed = record_action_failure(taken, action, "ClassNotFoundException: io.example.Main", at(12))
    assert failed.upgrade is not None
    assert (failed.upgrade.attempts, failed.upgrade.last_error) == (1, "ClassNotFoundException: io.example.Main")
    obs = Observation(job=job(OLD_JOB, "FINISHED"), new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V2))
    d = run(V2, failed, obs, now=at(13), fresh_id=ROLLBACK_JOB)
    assert d.action is None, "the refused job is not submitted again"
    assert d.status.upgrade is not None
    assert (d.status.upgrade.kind, d.status.upgrade.target) == (st.ROLLBACK, V1.deployment)
    assert d.status.upgrade.savepoint_path == SP_PATH
    assert "ClassNotFoundException" in d.status.message


def test_refused_first_submission_stalls_as_deploy_failed() -> None:
    deploying = run(V1, Status(), Observation(jar=jar_uploaded(JAR_V1)), fresh_id=NEW_JOB)
    assert isinstance(deploying.action, SubmitJob)
    failed = record_action_failure(deploying.status, deploying.action, "no main class", NOW)
    d = run(V1, failed, Observation(new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V1)), now=at(1))
    assert d.action is None
    assert d.status.phase == "Failed"
    assert condition(d, "Stalled")["reason"] == "DeployFailed"
    assert "no main class" in d.status.message
    again = run(V1, d.status, Observation(job=gone(NEW_JOB), jar=jar_uploaded(JAR_V1)), now=at(60))
    assert again.action is None, "not retried until the spec changes"


def test_refused_action_outside_an_upgrade_only_sets_the_message() -> None:
    status = steady(V1)
    failed = record_action_failure(status, DeleteJar("cluster-jar-v0"), "jar is in use", NOW)
    assert failed.upgrade is None
    assert "jar is in use" in failed.message
    assert replace(failed, message=status.message) == status


# -- an invalid spec -------------------------------------------------------------------------


def test_invalid_spec_stalls_without_acting() -> None:
    bad = SpecError("spec.jar.sha256 'abc' is not 64 hexadecimal digits")
    d = run(bad, steady(V1), Observation())
    assert d.action is None
    assert condition(d, "Stalled")["reason"] == "InvalidSpec"
    assert "spec.jar.sha256" in d.status.message
    assert d.status.job_id == OLD_JOB


def test_completed_savepoint_of_an_ended_job_is_recorded_and_the_new_version_submitted_in_one_pass() -> None:
    obs = Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH), jar=jar_uploaded(JAR_V2))
    d = run(V2, upgrade_started(V1, V2), obs, now=at(10), fresh_id=NEW_JOB)
    assert isinstance(d.action, SubmitJob)
    assert (d.action.job_id, d.action.savepoint_path) == (NEW_JOB, SP_PATH)
    # What the pass writes before the call already names the savepoint and the job it starts.
    assert d.status.last_savepoint is not None and d.status.last_savepoint.path == SP_PATH
    up = d.status.upgrade
    assert up is not None and (up.step, up.savepoint_path, up.new_job_id) == (st.SUBMITTING, SP_PATH, NEW_JOB)


def test_the_new_jar_recorded_with_the_trigger_spares_listing_the_cluster_jars_while_the_savepoint_runs() -> None:
    started = upgrade_started(V1, V2)
    assert started.upgrade is not None and started.upgrade.target_jar_id == JAR_IDS[JAR_V2]
    assert jar_to_check(V2, started, deleting=False) is None
    # A record written before the id was kept (an older operator) still has the jar checked.
    older = replace(started, upgrade=replace(started.upgrade, target_jar_id=None))
    assert jar_to_check(V2, older, deleting=False) == V2.deployment


def test_a_jar_deleted_from_the_cluster_before_the_new_job_is_submitted_is_uploaded_again_not_rolled_back() -> None:
    obs = Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH))
    submitting = run(V2, upgrade_started(V1, V2), obs, now=at(10), fresh_id=NEW_JOB)
    assert isinstance(submitting.action, SubmitJob)
    error = "Jar file /tmp/flink-web/flink-web-upload/cluster-jar-v2 does not exist"
    refused = record_action_failure(submitting.status, submitting.action, error, at(10))
    assert refused.upgrade is not None and refused.upgrade.attempts == 0 and refused.upgrade.last_error is None
    jar_gone = Observation(job=job(OLD_JOB, "FINISHED"), new_job=gone(NEW_JOB), jar=jar_fetched(JAR_V2))
    upload = run(V2, refused, jar_gone, now=at(11))
    assert isinstance(upload.action, UploadJar)
    back = Observation(job=job(OLD_JOB, "FINISHED"), new_job=gone(NEW_JOB), jar=jar_uploaded(JAR_V2))
    resubmit = run(V2, upload.status, back, now=at(12))
    assert resubmit.action == SubmitJob(JAR_IDS[JAR_V2], NEW_JOB, V2.deployment, SP_PATH, False)
    assert "RollingBack" not in (resubmit.status.phase, upload.status.phase)


def test_completed_savepoint_waits_for_the_old_job_to_end_before_submitting() -> None:
    obs = Observation(job=job(OLD_JOB), savepoint=savepoint("COMPLETED", SP_PATH), jar=jar_uploaded(JAR_V2))
    d = run(V2, upgrade_started(V1, V2), obs, now=at(10), fresh_id=NEW_JOB)
    assert d.action is None
    assert d.status.upgrade is not None and d.status.upgrade.step == st.SUBMITTING


def test_deleting_a_never_started_flinkjob_with_an_invalid_spec_is_released_at_once() -> None:
    d = run(SpecError("spec.parallelism 0 must be an integer >= 1"), Status(), deleting=True)
    assert d.done_deleting
    assert d.action is None


def test_only_a_job_the_status_says_runs_is_looked_up_in_the_shared_overview() -> None:
    # A job just suspended is listed RUNNING in an overview read shortly before: it must be read live,
    # or the next pass would suspend it a second time.
    suspended_spec = make_spec(state="suspended")
    assert at_rest(V1, steady(V1), deleting=False)
    assert not at_rest(suspended_spec, steady(suspended_spec, phase="Suspended", job_state="FINISHED"), deleting=False)
    assert not at_rest(suspended_spec, steady(suspended_spec), deleting=False), "a suspension about to start"
    assert not at_rest(V2, steady(V1), deleting=False), "a spec change"
    assert not at_rest(V1, steady(V1), deleting=True)
    assert not at_rest(V2, upgrade_started(V1, V2), deleting=False)
