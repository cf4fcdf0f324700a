"""The soak's invariant checker on hand-made snapshots: it passes a converged bed and names each
kind of broken one (so a soak run that reports nothing has checked something)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from soak.invariants import (
    ClusterJob,
    CounterReading,
    FlinkJobView,
    Snapshot,
    StallSeen,
    check,
    check_counter,
    drop_allowed,
    stalled_reasons_in,
)

JAR = "file:///jars/flinkop-testjob.jar"
SP1 = "file:/sp/savepoint-1"
SP2 = "file:/sp/savepoint-2"


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "flinkRestUrl": "http://127.0.0.1:8081",
        "jar": {"uri": JAR},
        "parallelism": 2,
        "args": ["--job-name", "soak-a.base"],
        **extra,
    }


def conditions(ready: str, stalled: str = "False", reason: str = "", message: str = "", gen: int = 3) -> list[Any]:
    return [
        {"type": "Ready", "status": ready, "observedGeneration": gen},
        {"type": "Reconciling", "status": "False"},
        {"type": "Stalled", "status": stalled, "reason": reason, "message": message},
    ]


def status(job_id: str = "j1", ready: str = "True", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "observedGeneration": 3,
        "phase": "Running",
        "jobId": job_id,
        "conditions": conditions(ready),
        "lastStableSpec": {"jarUri": JAR, "entryClass": None, "args": ["--job-name", "soak-a.base"], "parallelism": 2},
        "lastSavepoint": {"path": SP2},
        "savepointHistory": [{"path": SP2}, {"path": SP1}],
    }
    base.update(extra)
    return base


def running_job(
    job_id: str = "j1", name: str = "soak-a.base", parallelism: int = 2, counter: bool = True
) -> ClusterJob:
    vertices = {"source": (parallelism, parallelism), "sink": (parallelism, parallelism)}
    if counter:
        vertices["counter"] = (parallelism, parallelism)
    return ClusterJob(job_id, name, "RUNNING", vertices)


def snapshot(fj: FlinkJobView, jobs: list[ClusterJob], paths: frozenset[str] = frozenset({SP1, SP2})) -> Snapshot:
    return Snapshot([fj], jobs, paths)


GOOD = FlinkJobView("a", 3, spec(), status())


def test_a_converged_running_flinkjob_passes() -> None:
    assert check(snapshot(GOOD, [running_job()])) == []


def test_a_suspended_flinkjob_with_no_job_and_ready_passes() -> None:
    fj = FlinkJobView("a", 3, spec(state="suspended"), status(phase="Suspended"))
    assert check(snapshot(fj, [replace(running_job(), state="FINISHED")])) == []


def test_ready_while_no_job_runs_is_a_violation() -> None:
    problems = check(snapshot(GOOD, [replace(running_job(), state="FINISHED")]))
    assert any("Ready True but 0 active jobs" in p for p in problems), problems


def test_ready_at_an_old_generation_is_a_violation() -> None:
    fj = FlinkJobView("a", 4, spec(), status())
    problems = check(snapshot(fj, [running_job()]))
    assert any("Ready True at observedGeneration 3" in p for p in problems), problems


def test_the_reported_suspend_resume_hang_is_a_violation() -> None:
    # Issue 12: resumed (state running) but phase Suspended, Ready False, not Stalled, nothing runs.
    fj = FlinkJobView("a", 3, spec(), status(ready="False", phase="Suspended"))
    problems = check(snapshot(fj, []))
    assert any("not converged" in p and "Suspended" in p for p in problems), problems


def test_wrong_parallelism_args_or_program_are_violations() -> None:
    assert any("parallelism 1" in p for p in check(snapshot(GOOD, [running_job(parallelism=1)])))
    assert any("named 'soak-a.rate'" in p for p in check(snapshot(GOOD, [running_job(name="soak-a.rate")])))
    assert any("lacks the counter" in p for p in check(snapshot(GOOD, [running_job(counter=False)])))


def test_a_job_not_all_running_under_ready_is_a_violation() -> None:
    job = ClusterJob("j1", "soak-a.base", "RUNNING", {"source": (2, 1), "counter": (2, 2), "sink": (2, 2)})
    assert any("not all running" in p for p in check(snapshot(GOOD, [job])))


def test_a_recorded_jar_other_than_the_wanted_one_is_a_violation() -> None:
    fj = FlinkJobView("a", 3, spec(jar={"uri": "file:///jars/v2.jar"}), status())
    assert any("recorded jar" in p for p in check(snapshot(fj, [running_job()])))


def test_an_unowned_job_and_a_second_job_are_violations() -> None:
    problems = check(snapshot(GOOD, [running_job(), running_job("stray", name="soak-b.base")]))
    assert any("stray" in p and "no FlinkJob owns it" in p for p in problems), problems


def test_a_suspended_flinkjob_with_its_job_running_is_a_violation() -> None:
    fj = FlinkJobView("a", 3, spec(state="suspended"), status(phase="Suspended"))
    assert any("although the FlinkJob is suspended" in p for p in check(snapshot(fj, [running_job()])))


def test_stalled_needs_a_listed_reason_and_a_message_and_excludes_ready() -> None:
    unlisted = status(ready="False", conditions=conditions("False", "True", "SomethingOdd", "do this"))
    assert any("does not list" in p for p in check(snapshot(FlinkJobView("a", 3, spec(), unlisted), [running_job()])))
    silent = status(ready="False", conditions=conditions("False", "True", "RestoreFailed", ""))
    assert any("without a message" in p for p in check(snapshot(FlinkJobView("a", 3, spec(), silent), [running_job()])))
    both = status(conditions=conditions("True", "True", "RestoreFailed", "fix it"))
    assert any("both True" in p for p in check(snapshot(FlinkJobView("a", 3, spec(), both), [running_job()])))
    fine = status(ready="False", conditions=conditions("False", "True", "RestoreFailed", "fix the program"))
    assert check(snapshot(FlinkJobView("a", 3, spec(), fine), [running_job()])) == []


def test_the_wanted_state_holding_without_ready_is_a_violation() -> None:
    fj = FlinkJobView("a", 3, spec(), status(ready="False"))
    assert any("holds on the cluster but Ready" in p for p in check(snapshot(fj, [running_job()])))


def test_a_savepoint_missing_on_disk_is_a_violation() -> None:
    problems = check(snapshot(GOOD, [running_job()], paths=frozenset({SP1})))
    assert any(SP2 in p and "not on disk" in p for p in problems), problems


def test_counter_continuity_flags_a_fresh_start_and_a_fall_back_unless_dropping_was_allowed() -> None:
    kept = CounterReading("j2", 900, 4, "counter", "j1", 800, "counter")
    assert check_counter("a", kept) == []
    fresh = CounterReading("j2", 30, 0, "counter", "j1", 800, "counter")
    problems = check_counter("a", fresh)
    assert any("restoredKeys 0" in p for p in problems) and any("went back" in p for p in problems)
    assert check_counter("a", replace(fresh, drop_allowed=True)) == []
    assert check_counter("a", replace(fresh, previous_counter_uid="counter-v2")) == []
    assert check_counter("a", replace(fresh, previous_count=None)) == []
    full = Snapshot([GOOD], [running_job()], frozenset({SP1, SP2}), {"a": fresh})
    assert any("restoredKeys 0" in p for p in check(full))


def test_dropping_state_is_allowed_only_by_a_stateless_spec_a_dropped_counter_or_a_re_creation() -> None:
    assert not drop_allowed([spec(), spec(parallelism=1)], recreated=False)
    assert drop_allowed([spec(), spec(upgradeMode="stateless")], recreated=False)
    assert drop_allowed([spec(args=["--drop-counter"])], recreated=False)
    assert drop_allowed([spec(args=["--counter-uid", "counter-v2"])], recreated=False)
    assert drop_allowed([spec()], recreated=True)


def test_a_restore_failure_not_retried_after_a_spec_change_is_a_violation() -> None:
    # Issue 12: allowNonRestoredState changed after a RestoreFailed rollback, and nothing happened.
    stalled = status(ready="False", conditions=conditions("False", "True", "RestoreFailed", "fix the program", gen=4))
    stalled["observedGeneration"] = 4
    stalled["failure"] = {"reason": "RestoreFailed", "message": "m", "fingerprint": "recorded-under-never"}
    fj = FlinkJobView("a", 4, spec(allowNonRestoredState="OnJarChange"), stalled)
    before = StallSeen(3, "RestoreFailed", "j1")
    stuck = Snapshot([fj], [running_job()], frozenset({SP1, SP2}), previous_stalls={"a": before})
    assert any("without a new attempt" in p for p in check(stuck)), check(stuck)
    retried = replace(fj, status={**stalled, "jobId": "j2"})
    assert check(Snapshot([retried], [running_job("j2")], frozenset({SP1, SP2}), previous_stalls={"a": before})) == []
    unchanged = replace(fj, generation=3, status={**stalled, "observedGeneration": 3})
    assert check(Snapshot([unchanged], [running_job()], frozenset({SP1, SP2}), previous_stalls={"a": before})) == []

    # A change to a field that cannot change the outcome (savepointHistoryLimit) lifts nothing.
    from flinkop.spec import parse_spec

    same = spec(allowNonRestoredState="OnJarChange")
    parsed = parse_spec(same)
    key = parsed.attempt_key(parsed.deployment)
    kept = replace(fj, spec={**same, "savepointHistoryLimit": 3}, status={**stalled, "failure": {"fingerprint": key}})
    assert check(Snapshot([kept], [running_job()], frozenset({SP1, SP2}), previous_stalls={"a": before})) == []


def test_the_listed_stalled_reasons_are_read_from_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    listed = stalled_reasons_in(readme)
    assert {"RestoreFailed", "DeployFailed", "JobTerminated", "InvalidSpec"} <= listed
    assert "Suspended" not in listed and "Running" not in listed
    table = "text\n| Stalled reason | what | do |\n|---|---|---|\n| `A` | x | y |\n| `B` | x | y |\n\n| `C` | z |\n"
    assert stalled_reasons_in(table) == {"A", "B"}


def test_a_savepoint_whose_disposal_is_in_flight_may_be_gone_from_disk_but_a_restore_point_may_not() -> None:
    """Seed 30002 (300 operations): with periodic savepoints every 10 s and a history limit, the
    disposal of the oldest one completes on disk a moment before the status drops it."""
    from soak.invariants import savepoint_paths

    history = [{"path": "sp-new"}, {"path": "sp-old"}]
    disposing = {"savepointHistory": history, "lastSavepoint": {"path": "sp-new"}, "disposal": {"path": "sp-old"}}
    assert savepoint_paths(disposing) == ["sp-new", "sp-new"]
    bad = {**disposing, "disposal": {"path": "sp-new"}}  # a restore point being disposed of: still checked
    assert "sp-new" in savepoint_paths(bad)
