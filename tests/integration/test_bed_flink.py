"""The Flink half of the test bed, against a real session cluster: the test job's state survives a
stop-with-savepoint and a restore at a higher parallelism, and the job's variants do what the
operator's tests will rely on them doing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from testbed.flink import FlinkCluster
from testbed.flink_rest import FlinkRest, FlinkRestError, SavepointFailed

pytestmark = pytest.mark.integration

KEYS = 8
RATE = 400  # records/s over the whole source: 50 per key and second


@pytest.fixture
def rest(flink_rest: FlinkRest) -> FlinkRest:
    """The session's client (tests/conftest.py cancels its leftover jobs after each test)."""
    return flink_rest


@pytest.fixture(scope="module")
def jar_id(flink_rest: FlinkRest, test_job_jar: Path) -> str:
    return flink_rest.upload_jar(test_job_jar)


@dataclass(frozen=True)
class CounterSavepoint:
    path: str
    job_id: str
    count_before_stop: int  # state counter read right before the stop-with-savepoint


@pytest.fixture(scope="module")
def counter_savepoint(flink_rest: FlinkRest, jar_id: str) -> CounterSavepoint:
    """A savepoint of the normal test job, run at parallelism 2 until its counts reached 100."""
    rest = flink_rest
    job_id = rest.run_jar(jar_id, 2, args=["--rate", str(RATE), "--keys", str(KEYS)])
    rest.wait_job_running(job_id)
    rest.wait_state_counter_at_least(job_id, 100)
    count = rest.state_counter(job_id)
    path = rest.stop_with_savepoint(job_id)
    rest.wait_job_state(job_id, "FINISHED")
    return CounterSavepoint(path=path, job_id=job_id, count_before_stop=count)


def _new_job_ids(rest: FlinkRest, before: set[str]) -> list[str]:
    return [j["jid"] for j in rest.jobs_overview() if j["jid"] not in before]


def test_restore_at_higher_parallelism_continues_counts_from_savepoint(
    rest: FlinkRest, jar_id: str, counter_savepoint: CounterSavepoint
) -> None:
    # A slow rate after the restore: counting from zero could not catch up with the saved counts.
    job_id = rest.run_jar(jar_id, 3, args=["--rate", "20", "--keys", str(KEYS)], savepoint_path=counter_savepoint.path)
    try:
        rest.wait_job_running(job_id)  # every subtask, the third source subtask included
        assert rest.job_parallelism(job_id) == 3
        assert set(rest.vertex_parallelism(job_id).values()) == {3}
        assert rest.restored_from(job_id) == counter_savepoint.path

        counted = rest.wait_state_counter_at_least(job_id, counter_savepoint.count_before_stop, timeout=30)
        records_in = int(rest.operator_metric(job_id, "counter.numRecordsIn", "sum"))
        # From zero, no key's count could exceed the records the new job's counter has received.
        assert counted > records_in, (counted, records_in)
        rest.wait_for(
            f"all {KEYS} keys to come back with their counts",
            lambda: ((n := rest.restored_keys(job_id)) == KEYS, n),
            timeout=30,
        )
        # ... and the counts go on growing.
        rest.wait_state_counter_at_least(job_id, counted + 2, timeout=30)
    finally:
        rest.cancel_job(job_id)
        rest.wait_job_state(job_id, "CANCELED")


def test_stock_datagen_source_leaves_extra_subtasks_finished_on_restore_at_higher_parallelism(
    rest: FlinkRest, jar_id: str
) -> None:
    """The gotcha the test job's source avoids: one split per first subtask, none for new ones."""
    job_id = rest.run_jar(jar_id, 2, args=["--stock-splits", "--rate", str(RATE)])
    rest.wait_job_running(job_id)
    savepoint = rest.stop_with_savepoint(job_id)
    restored = rest.run_jar(jar_id, 3, args=["--stock-splits", "--rate", str(RATE)], savepoint_path=savepoint)
    try:

        def source_tasks() -> tuple[bool, dict[str, int]]:
            source = next(v for v in rest.job(restored)["vertices"] if v["name"].startswith("Source"))
            tasks = {k: int(n) for k, n in source["tasks"].items() if n}
            return tasks.get("FINISHED", 0) == 1 and tasks.get("RUNNING", 0) == 2, tasks

        rest.wait_for("one of 3 source subtasks FINISHED, 2 RUNNING", source_tasks, timeout=30)
    finally:
        rest.cancel_job(restored)
        rest.wait_job_state(restored, "CANCELED")


def test_restore_without_counter_fails_without_allow_non_restored_state(
    rest: FlinkRest, jar_id: str, counter_savepoint: CounterSavepoint
) -> None:
    before = {j["jid"] for j in rest.jobs_overview()}
    with pytest.raises(FlinkRestError) as refused:
        rest.run_jar(jar_id, 2, args=["--drop-counter"], savepoint_path=counter_savepoint.path)
    assert "Could not execute application" in refused.value.body
    new = _new_job_ids(rest, before)
    assert len(new) == 1, new
    assert rest.job_state(new[0]) == "FAILED"
    exceptions = rest.job_exceptions(new[0])
    assert "Cannot map checkpoint/savepoint state" in exceptions, exceptions[:3000]
    assert "allowNonRestoredState" in exceptions


def test_restore_without_counter_succeeds_with_allow_non_restored_state(
    rest: FlinkRest, jar_id: str, counter_savepoint: CounterSavepoint
) -> None:
    job_id = rest.run_jar(
        jar_id,
        2,
        args=["--drop-counter"],
        savepoint_path=counter_savepoint.path,
        allow_non_restored_state=True,
    )
    try:
        rest.wait_job_running(job_id)
        assert rest.restored_from(job_id) == counter_savepoint.path
        assert not any("counter" in name for name in rest.vertex_parallelism(job_id))
    finally:
        rest.cancel_job(job_id)
        rest.wait_job_state(job_id, "CANCELED")


def test_fail_in_main_makes_jar_run_answer_an_error(rest: FlinkRest, jar_id: str) -> None:
    before = {j["jid"] for j in rest.jobs_overview()}
    with pytest.raises(FlinkRestError) as refused:
        rest.run_jar(jar_id, 1, args=["--fail-in-main"])
    assert refused.value.status >= 400
    assert "--fail-in-main given" in refused.value.body
    assert _new_job_ids(rest, before) == []


def test_fail_at_start_ends_failed_without_restarts(rest: FlinkRest, jar_id: str) -> None:
    job_id = rest.run_jar(jar_id, 1, args=["--fail-at-start"])
    rest.wait_job_state(job_id, "FAILED", timeout=30)
    exceptions = rest.job_exceptions(job_id)
    assert "--fail-at-start given" in exceptions
    assert "NoRestartBackoffTimeStrategy" in exceptions


def test_snapshot_switch_files_make_savepoints_slow_or_fail_while_job_keeps_running(
    rest: FlinkRest, jar_id: str, flink: FlinkCluster, tmp_path: Path
) -> None:
    slow, fail = tmp_path / "slow", tmp_path / "fail"
    args = ["--slow-snapshot-file", str(slow), "--slow-snapshot-ms", "3000", "--fail-snapshot-file", str(fail)]
    job_id = rest.run_jar(jar_id, 2, args=args)
    try:
        rest.wait_job_running(job_id)
        rest.wait_checkpoint_completed(job_id)

        slow.touch()
        started = time.monotonic()
        rest.trigger_savepoint(job_id)
        assert time.monotonic() - started >= 3.0
        slow.unlink()

        fail.touch()
        with pytest.raises(SavepointFailed) as failed:
            rest.trigger_savepoint(job_id)
        assert "exists, failing the snapshot" in failed.value.cause
        assert rest.job_state(job_id) == "RUNNING"
        # A stop-with-savepoint that fails in a task makes Flink recover from a global failure:
        # the job (same id) restarts from its latest checkpoint and runs on.
        restores = int(rest.checkpoints(job_id)["counts"]["restored"])
        with pytest.raises(SavepointFailed):
            rest.stop_with_savepoint(job_id)
        rest.wait_for(
            f"job {job_id} to restore from its latest checkpoint",
            lambda: ((n := int(rest.checkpoints(job_id)["counts"]["restored"])) > restores, n),
            timeout=30,
        )
        rest.wait_job_running(job_id)
        fail.unlink()

        path = rest.stop_with_savepoint(job_id)
        assert flink.savepoint_dir is not None
        assert path.startswith(flink.savepoint_dir.as_uri().rstrip("/").replace("file:///", "file:/"))
        rest.wait_job_state(job_id, "FINISHED")
    finally:
        if rest.job_state(job_id) not in ("FINISHED", "CANCELED", "FAILED"):
            rest.cancel_job(job_id)
