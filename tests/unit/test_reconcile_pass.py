"""One reconcile pass around the planner: when the status is written relative to the action.

The planner's decisions come from the real planner; Flink is a recording stand-in that answers an
upload, since only the order of the pass's own writes and calls is under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flinkop.actions import UploadJar
from flinkop.flink_client import FlinkError
from flinkop.jars import JarFetcher
from flinkop.observation import Observation
from flinkop.reconcile import Clients, PassResult, run_pass
from planner_kit import FLINK_URL, JAR_V2, NOW, OLD_JOB, SP_DIR, jar_fetched, job, steady


class RecordingFlink:
    identity = FLINK_URL

    def __init__(self, calls: list[str], fail: bool = False) -> None:
        self.calls = calls
        self.fail = fail

    def upload_jar(self, path: Path, name: str) -> str:
        self.calls.append(f"upload {name}")
        if self.fail:
            raise FlinkError("upload jar", FLINK_URL, "disk full", 500)
        return "cluster-jar-v2"

    def stop_with_savepoint(self, job_id: str, **_: Any) -> None:
        self.calls.append(f"stop {job_id}")


class OneClient(Clients):
    def __init__(self, client: RecordingFlink) -> None:
        super().__init__()
        self.client = client

    def get(self, url: str, credentials: Any = None) -> Any:
        return self.client


SPEC_V2 = {"flinkRestUrl": FLINK_URL, "jar": {"uri": JAR_V2}, "parallelism": 2, "savepointDirectory": SP_DIR}


def upload_pass(tmp_path: Path, *, may_leave_unwritten: bool, fail: bool = False) -> tuple[PassResult, list[str]]:
    """The pass that uploads the new jar of a running FlinkJob whose spec moved from V1 to V2."""
    calls: list[str] = []
    result = run_pass(
        spec=SPEC_V2,
        status=steady().to_patch(),
        generation=2,
        clients=OneClient(RecordingFlink(calls, fail)),
        fetcher=JarFetcher(tmp_path),
        write_status=lambda patch: calls.append(f"write {patch['message']}"),
        emit=lambda event: None,
        now=NOW,
        observation=Observation(job=job(OLD_JOB), jar=jar_fetched(JAR_V2)),
        may_leave_unwritten=may_leave_unwritten,
    )
    assert isinstance(result.decision.action, UploadJar), result.decision
    return result, calls


def test_an_upload_chained_to_the_next_pass_leaves_its_status_to_that_pass_to_write(tmp_path: Path) -> None:
    result, calls = upload_pass(tmp_path, may_leave_unwritten=True)
    assert [c.split()[0] for c in calls] == ["upload"]
    assert result.unwritten_status is not None
    assert result.unwritten_status["message"].startswith(f"Uploading jar {JAR_V2}")
    assert result.observation_after is not None and result.observation_after.jar is not None
    assert result.observation_after.jar.cluster_jar_id == "cluster-jar-v2"


def test_an_upload_not_chained_writes_its_status_first(tmp_path: Path) -> None:
    result, calls = upload_pass(tmp_path, may_leave_unwritten=False)
    assert [c.split()[0] for c in calls] == ["write", "upload"]
    assert result.unwritten_status is None


def test_a_failed_upload_is_recorded_even_when_its_status_could_have_waited(tmp_path: Path) -> None:
    result, calls = upload_pass(tmp_path, may_leave_unwritten=True, fail=True)
    assert [c.split()[0] for c in calls] == ["upload", "write"]
    assert result.error == "action_failed"
    assert result.unwritten_status is None and result.observation_after is None


def test_the_chained_pass_writes_against_the_status_last_written(tmp_path: Path) -> None:
    # The chained pass plans from the upload pass's unwritten status; its write-ahead record is
    # compared with what was written, so it is written even where it equals the unwritten one.
    first, _ = upload_pass(tmp_path, may_leave_unwritten=True)
    assert first.unwritten_status is not None
    writes: list[dict[str, Any]] = []
    calls: list[str] = []
    run_pass(
        spec=SPEC_V2,
        status=first.unwritten_status,
        recorded_status=steady().to_patch(),
        generation=2,
        clients=OneClient(RecordingFlink(calls)),
        fetcher=JarFetcher(tmp_path),
        write_status=lambda patch: (writes.append(patch), calls.append("write")),
        emit=lambda event: None,
        now=NOW,
        observation=first.observation_after,
        may_leave_unwritten=True,
    )
    assert calls == ["write", f"stop {OLD_JOB}"]
    assert writes[0]["upgrade"]["triggerId"], writes[0]  # the stop's trigger id, written before the stop
