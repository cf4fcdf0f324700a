"""FLINKOP_MAX_CONCURRENT_UPGRADES: the planner holds new upgrades while no slot is free, and the
slot registry counts the resources whose status records an upgrade in flight."""

from __future__ import annotations

import pytest
from flinkop.actions import TriggerSavepoint
from flinkop.observation import Observation
from flinkop.reconcile import forget_resource, remember_write, written_since
from flinkop.slots import UpgradeSlots
from flinkop.status import Status
from planner_kit import (
    OLD_JOB,
    TRIGGER,
    V1,
    condition,
    jar_uploaded,
    job,
    make_spec,
    run,
    savepoint,
    steady,
    upgrade_started,
)

V2 = make_spec(jar={"uri": "https://repo.example/job-2.0.jar"})
V1_AT_4 = make_spec(parallelism=4, rescaleMode="Savepoint")


@pytest.mark.parametrize("to", [pytest.param(V2, id="upgrade"), pytest.param(V1_AT_4, id="rescale")])
def test_without_a_free_slot_a_change_waits_and_the_job_is_not_touched(to: object) -> None:
    obs = Observation(job=job(OLD_JOB), jar=jar_uploaded("https://repo.example/job-2.0.jar"))
    d = run(to, steady(V1), obs, slot_free=False)  # type: ignore[arg-type]
    assert d.action is None
    assert d.status.upgrade is None
    assert "FLINKOP_MAX_CONCURRENT_UPGRADES" in d.status.message
    assert d.requeue_after is not None
    assert condition(d, "Reconciling")["status"] == "True"
    waiting_again = run(to, d.status, obs, slot_free=False)  # type: ignore[arg-type]
    assert waiting_again.events == (), "the wait is reported once, not on every look"


def test_once_a_slot_is_free_the_waiting_upgrade_starts() -> None:
    obs = Observation(job=job(OLD_JOB), jar=jar_uploaded("https://repo.example/job-2.0.jar"))
    waiting = run(V2, steady(V1), obs, slot_free=False)
    d = run(V2, waiting.status, obs, fresh_id=TRIGGER)
    assert isinstance(d.action, TriggerSavepoint)


def test_an_upgrade_in_flight_goes_on_without_a_free_slot() -> None:
    # The reconcile loop always gives a slot back to its holder; the planner never gates a step
    # of an upgrade already under way either.
    started = upgrade_started(V1, V2)
    d = run(V2, started, Observation(job=job(OLD_JOB), savepoint=savepoint("IN_PROGRESS")), slot_free=False)
    assert d.status.upgrade == started.upgrade
    assert "FLINKOP_MAX_CONCURRENT_UPGRADES" not in d.status.message


def test_slots_are_bounded_and_kept_by_resources_with_an_upgrade_in_flight() -> None:
    slots = UpgradeSlots(limit=2)
    in_flight = upgrade_started(V1, V2)
    assert slots.reserve("a") and slots.reserve("b")
    assert not slots.reserve("c"), "the third upgrade waits"
    slots.settle("a", in_flight)
    slots.settle("b", steady(V1))  # b's pass started nothing: its slot goes back
    assert slots.reserve("c")
    slots.settle("c", in_flight)
    assert slots.reserve("a"), "a holder always gets its slot again"
    assert not slots.reserve("d")
    slots.settle("a", Status())  # a's upgrade ended
    assert slots.reserve("d")
    assert slots.in_flight == 2


def test_no_limit_when_the_setting_is_zero() -> None:
    slots = UpgradeSlots(limit=0)
    assert all(slots.reserve(str(i)) for i in range(100))


def test_a_version_up_to_the_operators_own_last_write_is_known_already() -> None:
    # A watch event of such a version (the echo of its write, or an older one) brings nothing new:
    # the engine neither wakes a pass for it nor keeps it over the newer body it has.
    uid = "uid-stale-test"
    assert not written_since(uid, "100"), "nothing written yet"
    remember_write(uid, "120")
    assert written_since(uid, "119")
    assert written_since(uid, "120"), "the operator's own write: its echo brings nothing new"
    assert not written_since(uid, "121"), "a newer version (a spec change) is not stale"
    forget_resource(uid)
    assert not written_since(uid, "119")


def test_an_upgrade_whose_new_job_runs_every_vertex_gives_its_slot_up_while_the_stability_gate_waits() -> None:
    from dataclasses import replace as _replace

    from flinkop.flink_client import StartProgress
    from flinkop.observation import JobView
    from planner_kit import NEW_JOB, job_info, savepoint_taken

    starting = savepoint_taken(V1, V2)
    info = job_info(NEW_JOB)
    gate = Observation(
        job=job(OLD_JOB, "FINISHED"), new_job=JobView(NEW_JOB, info), new_job_progress=StartProgress(True)
    )
    d = run(V2, starting, gate)
    assert d.action is None and d.status.upgrade is not None and "checkpoint" in d.status.message
    assert d.gate_only
    slots = UpgradeSlots(1)
    assert slots.reserve("a")
    slots.settle("a", d.status, gate_only=d.gate_only)
    assert slots.reserve("b"), "the next upgrade may start while the first waits for its gate"
    # A new job not yet running every vertex keeps its slot: its start is still under way.
    deploying = _replace(gate, new_job=JobView(NEW_JOB, _replace(info, tasks=(1, 4))))
    d2 = run(V2, starting, deploying)
    assert not d2.gate_only
