"""The kstatus conditions derived from a status: Ready, Reconciling, Stalled."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flinkop import status as st
from flinkop.conditions import derive_conditions
from flinkop.status import Failure, Status, Upgrade
from planner_kit import NOW, OLD_JOB, V1, at, iso, make_spec, steady

V2 = make_spec(parallelism=4)
FP1 = V1.deployment.fingerprint
FP2 = V2.deployment.fingerprint

UPGRADING = Upgrade(
    kind=st.UPGRADE,
    step=st.SAVEPOINTING,
    target=V2.deployment,
    started_at=iso(NOW),
    step_started_at=iso(NOW),
    source=V1.deployment,
    from_job_id=OLD_JOB,
    trigger_id="t" * 32,
)


def conditions(status: Status, desired: str | None, generation: int = 3) -> dict[str, dict[str, object]]:
    return {c["type"]: dict(c) for c in derive_conditions(status, desired, generation, NOW)}


@pytest.mark.parametrize(
    ("status", "desired", "ready", "reconciling", "stalled", "stalled_reason"),
    [
        pytest.param(steady(V1), FP1, "True", "False", "False", "None", id="running-the-desired-spec"),
        pytest.param(Status(), FP1, "False", "True", "False", "None", id="pending-first-deploy"),
        pytest.param(steady(V1, phase="Deploying"), FP1, "False", "True", "False", "None", id="deploying"),
        pytest.param(
            steady(V1, phase="Upgrading", upgrade=UPGRADING), FP2, "False", "True", "False", "None", id="upgrading"
        ),
        pytest.param(
            steady(V1, phase="RollingBack", upgrade=replace(UPGRADING, kind=st.ROLLBACK)),
            FP2,
            "False",
            "True",
            "False",
            "None",
            id="rolling-back",
        ),
        pytest.param(
            steady(V1, failure=Failure("RestoreFailed", "rolled back", FP2)),
            FP2,
            "False",
            "False",
            "True",
            "RestoreFailed",
            id="rolled-back-stalls-the-failed-spec",
        ),
        pytest.param(
            steady(V1, failure=Failure("NoSavepointDirectory", "no dir", FP2)),
            FP2,
            "False",
            "False",
            "True",
            "NoSavepointDirectory",
            id="no-savepoint-directory",
        ),
        pytest.param(
            Status(failure=Failure("JarDigestMismatch", "bad jar", FP1)),
            FP1,
            "False",
            "False",
            "True",
            "JarDigestMismatch",
            id="bad-jar-on-first-deploy",
        ),
        pytest.param(
            steady(V1, failure=Failure("RestoreFailed", "old failure", FP2)),
            FP1,
            "True",
            "False",
            "False",
            "None",
            id="failure-of-another-spec-does-not-stall",
        ),
        pytest.param(
            Status(failure=Failure("InvalidSpec", "bad spec", None)),
            None,
            "False",
            "False",
            "True",
            "InvalidSpec",
            id="invalid-spec-stalls-whatever-the-spec",
        ),
        pytest.param(
            steady(V1, phase="Failed", job_state="CANCELED", failure=Failure("JobTerminated", "cancelled", FP1)),
            FP1,
            "False",
            "False",
            "True",
            "JobTerminated",
            id="job-terminated",
        ),
        pytest.param(
            steady(V1), FP2, "False", "True", "False", "None", id="running-an-older-spec-is-reconciling-until-upgraded"
        ),
    ],
)
def test_conditions_follow_kstatus_meanings(
    status: Status, desired: str | None, ready: str, reconciling: str, stalled: str, stalled_reason: str
) -> None:
    c = conditions(status, desired)
    assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == (ready, reconciling, stalled)
    assert c["Stalled"]["reason"] == stalled_reason
    for kind in ("Ready", "Reconciling", "Stalled"):
        assert c[kind]["observedGeneration"] == 3


def test_stalled_condition_carries_the_failure_message_and_ready_says_the_reason() -> None:
    failure = Failure("RestoreFailed", "Rolled back: job did not start from savepoint s1 (boom).", FP2)
    c = conditions(steady(V1, failure=failure, message=failure.message), FP2)
    assert c["Stalled"]["message"] == failure.message
    assert c["Ready"]["reason"] == "RestoreFailed"


def test_reconciling_condition_names_the_upgrade_kind_and_step() -> None:
    c = conditions(steady(V1, phase="Upgrading", upgrade=UPGRADING), FP2)
    assert c["Reconciling"]["reason"] == "Upgrade"
    assert c["Reconciling"]["message"] == "upgrade: Savepointing"
    assert c["Ready"]["reason"] == "Savepointing"


def test_last_transition_time_moves_only_when_the_status_value_changes() -> None:
    earlier = NOW
    first = steady(V1, conditions=derive_conditions(steady(V1), FP1, 1, earlier))
    later = derive_conditions(first, FP1, 2, at(60))
    assert all(c["lastTransitionTime"] == iso(earlier) for c in later), "no value changed"
    upgrading = replace(first, phase="Upgrading", upgrade=UPGRADING)
    moved = {c["type"]: c for c in derive_conditions(upgrading, FP2, 3, at(120))}
    assert moved["Ready"]["lastTransitionTime"] == iso(at(120))  # True -> False
    assert moved["Reconciling"]["lastTransitionTime"] == iso(at(120))  # False -> True
    assert moved["Stalled"]["lastTransitionTime"] == iso(earlier)  # stays False
