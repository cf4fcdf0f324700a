"""The Argo CD health check (deploy/argocd/health.lua), run in Lua on FlinkJobs whose status is
exactly what the operator writes: statuses from the planner itself (or `derive_conditions` for the
corners it does not reach), stored as the apiserver keeps them after the operator's merge patch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
import yaml
from flinkop.conditions import derive_conditions
from flinkop.observation import Observation
from flinkop.plan import Decision
from flinkop.spec import FlinkJobSpec
from flinkop.status import Failure, Status
from planner_kit import (
    JAR_V1,
    JAR_V2,
    NEW_JOB,
    NOW,
    OLD_JOB,
    ROLLBACK_JOB,
    SP_PATH,
    STABLE,
    V1,
    at,
    condition,
    gone,
    jar_bad,
    jar_fetched,
    jar_uploaded,
    job,
    make_spec,
    run,
    savepoint,
    savepoint_taken,
    steady,
    upgrade_started,
)
from testbed.argocd import CM_PATCH, HEALTH_KEY, HEALTH_LUA, argocd_health

V2 = make_spec(jar={"uri": JAR_V2})
SUSPENDED_SPEC = make_spec(state="suspended")
CAUSE = "java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint: operator x not mapped"


def _without_nulls(value: Any) -> Any:
    """A merge patch as stored: a null deletes the field."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def flinkjob(status: Status | Decision | None, generation: int | float = 1) -> dict[str, Any]:
    """The FlinkJob as Argo CD reads it from the apiserver (JSON), with the operator's status."""
    resource: dict[str, Any] = {
        "apiVersion": "flinkop.io/v1alpha1",
        "kind": "FlinkJob",
        "metadata": {"name": "counter", "namespace": "flink", "generation": generation},
        "spec": {"flinkRestUrl": "http://flink:8081", "jar": {"uri": JAR_V1}, "parallelism": 2},
    }
    if isinstance(status, Decision):
        status = status.status
    if status is not None:
        resource["status"] = _without_nulls(status.to_patch())
    loaded: dict[str, Any] = json.loads(json.dumps(resource))
    return loaded


def derived(status: Status, desired: FlinkJobSpec, generation: int = 1, suspended: bool = False) -> Status:
    """`status` with the conditions and observedGeneration the operator derives for it."""
    conditions = derive_conditions(status, desired.deployment.fingerprint, generation, NOW, suspended)
    return replace(status, conditions=conditions, observed_generation=generation)


# -- statuses the planner writes ---------------------------------------------------------------

RUNNING = run(V1, steady(V1), Observation(job=job(OLD_JOB)))
PENDING_NO_MESSAGE = run(V1, Status(), Observation())  # message "" is not written at all
PENDING_UPLOADING = run(V1, Status(), Observation(jar=jar_fetched()))
DEPLOYING = run(V1, Status(), Observation(jar=jar_uploaded()))
UPGRADING = upgrade_started(V1, V2)
UPGRADE_SUBMITTING = savepoint_taken(V1, V2)
ROLLING_BACK = run(
    V2,
    UPGRADE_SUBMITTING,
    Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "FAILED", failure=CAUSE), jar=jar_uploaded(JAR_V2)),
    now=at(20),
    fresh_id=ROLLBACK_JOB,
)
ROLLBACK_SUBMITTED = run(
    V2,
    ROLLING_BACK.status,
    Observation(job=job(NEW_JOB, "FAILED"), new_job=gone(ROLLBACK_JOB), jar=jar_uploaded(JAR_V1)),
    now=at(21),
)
ROLLED_BACK = run(
    V2,
    ROLLBACK_SUBMITTED.status,
    Observation(
        job=job(NEW_JOB, "FAILED"), new_job=job(ROLLBACK_JOB), new_job_progress=STABLE, jar=jar_uploaded(JAR_V1)
    ),
    now=at(30),
)
RESTORE_FAILED_POLICY_FAIL = run(
    make_spec(jar={"uri": JAR_V2}, restoreFailurePolicy="Fail"),
    savepoint_taken(
        make_spec(restoreFailurePolicy="Fail"), make_spec(jar={"uri": JAR_V2}, restoreFailurePolicy="Fail")
    ),
    Observation(job=job(OLD_JOB, "FINISHED"), new_job=job(NEW_JOB, "FAILED", failure=CAUSE), jar=jar_uploaded(JAR_V2)),
    now=at(20),
)
JOB_ENDED = run(V1, steady(V1), Observation(job=job(OLD_JOB, "CANCELED")))
NO_SAVEPOINT_DIRECTORY = run(
    make_spec(savepointDirectory=None, parallelism=4), steady(V1), Observation(job=job(OLD_JOB), jar=jar_uploaded())
)
JAR_FETCH_FAILED = run(
    V2, steady(V1), Observation(job=job(OLD_JOB), jar=jar_bad(JAR_V2, "JarFetchFailed", "jar cannot be read: 404"))
)
MANUAL_SAVEPOINT = run(make_spec(savepointNonce=1), steady(V1), Observation(job=job(OLD_JOB)))
SUSPENDING = run(SUSPENDED_SPEC, steady(V1), Observation(job=job(OLD_JOB)))
SUSPENDED = run(
    SUSPENDED_SPEC,
    run(
        SUSPENDED_SPEC,
        SUSPENDING.status,
        Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)),
    ).status,
    Observation(job=job(OLD_JOB, "FINISHED")),
    now=at(30),
)

# -- corners the planner does not stop at, with the conditions it would derive ---------------

# Phase Failed, but the failure belongs to an older spec, so Stalled is False (and the next pass
# works on the current spec: Reconciling).
FAILED_NOT_STALLED = derived(
    steady(V1, phase="Failed", message="Job 1 is FAILED.", failure=Failure("JobTerminated", "Job 1 is FAILED.", "old")),
    V1,
)
# Phase Suspended while the spec asks to run again: Reconciling (the resume), neither Ready nor Stalled.
SUSPENDED_NOT_READY = derived(steady(V1, phase="Suspended", message="Job suspended."), V1)
# Suspended, and a stall on the current spec: Stalled wins.
SUSPENDED_AND_STALLED = derived(
    steady(
        V1,
        phase="Suspended",
        message="Job suspended.",
        failure=Failure("JarDigestMismatch", "jar digest is not jar.sha256", V1.deployment.fingerprint),
    ),
    V1,
    suspended=True,
)
# A Stalled condition written with an empty message (to_patch leaves the field out).
STALLED_NO_MESSAGE = derived(steady(V1, message="", failure=Failure("NotAJar", "", V1.deployment.fingerprint)), V1)


def msg(decision: Decision | Status) -> str:
    return decision.status.message if isinstance(decision, Decision) else decision.message


def stalled_msg(decision: Decision | Status) -> str:
    return str(condition(decision, "Stalled")["message"])


CASES = [
    # observedGeneration first: nothing else counts until the operator has seen the spec.
    pytest.param(flinkjob(None), "Progressing", "Waiting for the operator to observe generation 1", id="no-status"),
    pytest.param(
        {**flinkjob(None), "status": {"phase": "Running"}},
        "Progressing",
        "Waiting for the operator to observe generation 1",
        id="status-without-observed-generation",
    ),
    pytest.param(
        flinkjob(RUNNING, generation=2),
        "Progressing",
        "Waiting for the operator to observe generation 2",
        id="ready-but-older-generation",
    ),
    pytest.param(
        flinkjob(ROLLED_BACK, generation=3),
        "Progressing",
        "Waiting for the operator to observe generation 3",
        id="stalled-but-older-generation",
    ),
    pytest.param(
        flinkjob(RUNNING, generation=2.0),
        "Progressing",
        "Waiting for the operator to observe generation 2",
        id="generation-as-a-json-float",
    ),
    # Stalled: Degraded with the Stalled message, whatever the phase.
    pytest.param(
        flinkjob(ROLLED_BACK), "Degraded", stalled_msg(ROLLED_BACK), id="running-after-rollback-restore-failed"
    ),
    pytest.param(
        flinkjob(RESTORE_FAILED_POLICY_FAIL),
        "Degraded",
        stalled_msg(RESTORE_FAILED_POLICY_FAIL),
        id="failed-restore-failure-policy-fail",
    ),
    pytest.param(flinkjob(JOB_ENDED), "Degraded", stalled_msg(JOB_ENDED), id="failed-job-ended-outside"),
    pytest.param(
        flinkjob(NO_SAVEPOINT_DIRECTORY),
        "Degraded",
        stalled_msg(NO_SAVEPOINT_DIRECTORY),
        id="running-old-spec-no-savepoint-directory",
    ),
    pytest.param(
        flinkjob(JAR_FETCH_FAILED), "Degraded", "jar cannot be read: 404", id="running-old-spec-jar-fetch-failed"
    ),
    pytest.param(
        flinkjob(SUSPENDED_AND_STALLED),
        "Degraded",
        "jar digest is not jar.sha256",
        id="suspended-and-stalled",
    ),
    pytest.param(flinkjob(STALLED_NO_MESSAGE), "Degraded", "NotAJar", id="stalled-without-message-gives-reason"),
    # Phase Failed without a stall on the current spec.
    pytest.param(flinkjob(FAILED_NOT_STALLED), "Degraded", "Job 1 is FAILED.", id="failed-not-stalled"),
    # Suspended and Healthy.
    pytest.param(flinkjob(SUSPENDED), "Suspended", msg(SUSPENDED), id="suspended-as-asked"),
    pytest.param(flinkjob(RUNNING), "Healthy", msg(RUNNING), id="running-the-current-spec"),
    pytest.param(flinkjob(MANUAL_SAVEPOINT), "Healthy", msg(MANUAL_SAVEPOINT), id="manual-savepoint-keeps-it-healthy"),
    # Under way: Progressing with status.message.
    pytest.param(flinkjob(PENDING_UPLOADING), "Progressing", msg(PENDING_UPLOADING), id="pending-uploading-jar"),
    pytest.param(flinkjob(PENDING_NO_MESSAGE), "Progressing", "Pending", id="pending-without-message"),
    pytest.param(flinkjob(DEPLOYING), "Progressing", msg(DEPLOYING), id="deploying"),
    pytest.param(flinkjob(UPGRADING), "Progressing", msg(UPGRADING), id="upgrading-savepointing"),
    pytest.param(flinkjob(UPGRADE_SUBMITTING), "Progressing", msg(UPGRADE_SUBMITTING), id="upgrading-submitting"),
    pytest.param(flinkjob(ROLLING_BACK), "Progressing", msg(ROLLING_BACK), id="rolling-back"),
    pytest.param(flinkjob(ROLLBACK_SUBMITTED), "Progressing", msg(ROLLBACK_SUBMITTED), id="rolling-back-submitted"),
    pytest.param(flinkjob(SUSPENDING), "Progressing", msg(SUSPENDING), id="suspending-phase-running-reconciling"),
    pytest.param(
        {**flinkjob(None), "status": {"observedGeneration": 1, "phase": "Deploying", "message": "Deploying."}},
        "Progressing",
        "Deploying.",
        id="phase-deploying-without-conditions",
    ),
    # Otherwise: Progressing.
    pytest.param(
        flinkjob(SUSPENDED_NOT_READY), "Progressing", "Job suspended.", id="suspended-while-asked-to-run-is-progressing"
    ),
]


@pytest.mark.parametrize(("resource", "health", "message"), CASES)
def test_health(resource: dict[str, Any], health: str, message: str) -> None:
    assert argocd_health(resource) == (health, message)


def test_the_statuses_are_the_ones_the_rules_are_about() -> None:
    """The planner scenarios above reach the phases and conditions their case ids name."""

    def conds(d: Decision | Status) -> tuple[str, str, str, str]:
        s = d.status if isinstance(d, Decision) else d
        by_type = {c["type"]: c["status"] for c in s.conditions}
        return s.phase, by_type["Ready"], by_type["Reconciling"], by_type["Stalled"]

    assert conds(RUNNING) == ("Running", "True", "False", "False")
    assert conds(ROLLED_BACK) == ("Running", "False", "False", "True")
    assert condition(ROLLED_BACK, "Stalled")["reason"] == "RestoreFailed"
    assert CAUSE in stalled_msg(ROLLED_BACK)
    assert conds(RESTORE_FAILED_POLICY_FAIL) == ("Failed", "False", "False", "True")
    assert conds(JOB_ENDED) == ("Failed", "False", "False", "True")
    assert conds(FAILED_NOT_STALLED) == ("Failed", "False", "True", "False")
    assert conds(SUSPENDED) == ("Suspended", "True", "False", "False")
    assert conds(SUSPENDED_NOT_READY) == ("Suspended", "False", "True", "False")
    assert conds(SUSPENDED_AND_STALLED) == ("Suspended", "False", "False", "True")
    assert conds(SUSPENDING) == ("Running", "False", "True", "False")
    assert conds(MANUAL_SAVEPOINT)[:2] == ("Running", "True")
    assert conds(PENDING_NO_MESSAGE) == ("Pending", "False", "True", "False")
    assert conds(ROLLING_BACK) == ("RollingBack", "False", "True", "False")
    assert conds(UPGRADING)[0] == "Upgrading"
    assert conds(DEPLOYING)[0] == "Deploying"
    assert "message" not in flinkjob(PENDING_NO_MESSAGE)["status"]


def test_argocd_cm_patch_embeds_health_lua_exactly() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text())
    assert (patch["apiVersion"], patch["kind"], patch["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert list(patch["data"]) == [HEALTH_KEY]
    assert patch["data"][HEALTH_KEY] == HEALTH_LUA.read_text()


def test_argocd_cm_patch_is_the_rendered_one() -> None:
    script = HEALTH_LUA.parent / "render_cm_patch.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
