"""The pure parts of timing an application-mode upgrade from outside (bench/b4_app_upgrade.py and the
demo-app): what counts as the new job running, the old job's end, where a savepoint lies on the host,
which pod is the new JobManager, the summary and B4's section of bench/RESULTS.md."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flinkop.app_cluster import COMPONENT_LABEL, FLINKJOB_LABEL, JOB_ID_LABEL, ClusterStart, build_cluster
from flinkop.spec import parse_spec
from testbed import app_jobs
from testbed.app_jobs import app_spec, jobmanager_rest, jobmanager_selector
from testbed.app_timing import all_running, ended_at, savepoint_on_host, status_summary, summarise

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "a" * 32, "b" * 32


def overview_job(jid: str, state: str, running: int = 0, total: int = 4, end: int = -1) -> dict[str, Any]:
    return {"jid": jid, "state": state, "end-time": end, "tasks": {"running": running, "total": total}}


def test_a_job_counts_as_running_only_when_it_and_every_one_of_its_tasks_run() -> None:
    assert all_running([overview_job(OLD, "FINISHED", end=5), overview_job(NEW, "RUNNING", 4, 4)], NEW)
    assert not all_running([overview_job(NEW, "RUNNING", 3, 4)], NEW)
    assert not all_running([overview_job(NEW, "INITIALIZING", 0, 4)], NEW)
    assert not all_running([overview_job(NEW, "RUNNING", 0, 0)], NEW)  # no tasks yet: not running
    assert not all_running([overview_job(OLD, "RUNNING", 4, 4)], NEW)  # another job runs


def test_the_old_jobs_end_is_the_end_time_flink_recorded_once_the_job_ended() -> None:
    assert ended_at([overview_job(OLD, "RUNNING", 4, 4)], OLD) is None
    assert ended_at([overview_job(OLD, "FINISHED", end=-1)], OLD) is None  # ended, no end-time yet
    assert ended_at([overview_job(OLD, "FINISHED", end=1_700_000_000_123)], OLD) == pytest.approx(1_700_000_000.123)
    assert ended_at([overview_job(OLD, "CANCELED", end=2000)], OLD) == 2.0
    assert ended_at([overview_job(NEW, "FINISHED", end=2000)], OLD) is None  # not listed


def test_a_savepoint_lies_on_the_host_under_the_directory_the_pods_mount(tmp_path: Path) -> None:
    mount = "/flink-data"
    expected = tmp_path / "savepoints" / "savepoint-aaaaaa-0123"
    assert savepoint_on_host("file:/flink-data/savepoints/savepoint-aaaaaa-0123", tmp_path, mount) == expected
    assert savepoint_on_host("file:///flink-data/savepoints/savepoint-aaaaaa-0123", tmp_path, mount) == expected
    for outside in (
        "file:/elsewhere/savepoint-1",
        "file:/flink-data",
        "file:/flink-data/../etc/passwd",
        "file:/flink-data-other/savepoint-1",
        "s3://bucket/flink-data/savepoint-1",
        "file://host/flink-data/savepoint-1",
    ):
        with pytest.raises(ValueError, match="savepoint"):
            savepoint_on_host(outside, tmp_path, mount)


def pod(job_id: str, phase: str = "Running", ip: str | None = "10.200.0.7", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"jm-{job_id[:4]}", "labels": {JOB_ID_LABEL: job_id}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, **({"podIP": ip} if ip else {})}}


def test_the_new_jobmanager_is_a_running_pod_with_an_ip_of_another_job_that_is_not_being_deleted() -> None:
    assert jobmanager_rest([pod(OLD)]) == (OLD, "http://10.200.0.7:8081")
    assert jobmanager_rest([pod(OLD)], not_job_ids={OLD}) is None
    assert jobmanager_rest([pod(NEW, phase="Pending", ip=None)], not_job_ids={OLD}) is None
    assert jobmanager_rest([pod(NEW, ip=None)], not_job_ids={OLD}) is None
    assert jobmanager_rest([pod(NEW, deleting=True)], not_job_ids={OLD}) is None
    assert jobmanager_rest([pod(OLD, deleting=True), pod(NEW, ip="10.200.0.9")], not_job_ids={OLD}) == (
        NEW,
        "http://10.200.0.9:8081",
    )
    assert jobmanager_rest([pod(NEW, ip="fd00::5")]) == (NEW, "http://[fd00::5]:8081")


def test_the_bed_selects_jobmanagers_by_the_labels_the_operator_puts_on_them(tmp_path: Path) -> None:
    assert (app_jobs.FLINKJOB_LABEL, app_jobs.COMPONENT_LABEL, app_jobs.JOB_ID_LABEL) == (
        FLINKJOB_LABEL,
        COMPONENT_LABEL,
        JOB_ID_LABEL,
    )
    spec = parse_spec(app_spec(app_jobs.JOB_IMAGES[1], tmp_path, cpu="500m"))
    objects = build_cluster(name="bench", namespace="ns", uid="u-1", spec=spec, start=ClusterStart(NEW, "file:/x/sp"))
    labels = objects.jobmanager["spec"]["template"]["metadata"]["labels"]
    wanted = dict(pair.split("=") for pair in jobmanager_selector("bench").split(","))
    assert wanted.items() <= labels.items() and labels[JOB_ID_LABEL] == NEW
    container = objects.jobmanager["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == app_jobs.JOB_IMAGES[1]
    assert container["resources"]["limits"]["cpu"] == "500m"
    assert {"name": "data", "mountPath": app_jobs.DATA_MOUNT} in container["volumeMounts"]
    assert "--fromSavepoint" in container["args"]


def run(kind: str, pair: int, total: float, downtime: float, **more: Any) -> dict[str, Any]:
    return {"kind": kind, "pair": pair, "total": total, "downtime": downtime, **more}


def test_the_summary_is_each_sides_median_and_a_over_b() -> None:
    runs = [run("A", 0, 30.0, 20.0), run("B", 0, 25.0, 16.0), run("A", 1, 34.0, 22.0), run("B", 1, 20.0, 14.0)]
    runs += [run("A", 2, 32.0, 30.0), run("B", 2, 24.0, 15.0)]
    summary = summarise(runs)
    assert summary["total"] == {"A_median": 32.0, "B_median": 24.0, "A_over_B": pytest.approx(32 / 24)}
    assert summary["downtime"] == {"A_median": 22.0, "B_median": 15.0, "A_over_B": pytest.approx(22 / 15)}
    with pytest.raises(ValueError, match="no B run"):
        summarise([run("A", 0, 1.0, 1.0)])


def test_the_status_summary_names_the_phase_job_readiness_image_and_savepoint() -> None:
    text = status_summary(
        {
            "status": {
                "phase": "Running",
                "jobId": NEW,
                "clusterReadiness": "JobManager 1/1 ready, TaskManagers 1/1 ready",
                "deployedSpec": {"cluster": {"image": "localhost/flinkop-testjob:v2"}},
                "lastSavepoint": {"path": "file:/flink-data/savepoints/savepoint-aaaaaa", "reason": "upgrade"},
                "message": "Running.",
            }
        }
    )
    for part in ("Running", NEW, "TaskManagers 1/1 ready", "testjob:v2", "savepoint-aaaaaa (upgrade)"):
        assert part in text
    assert "phase:            -" in status_summary({})


def load_report(results: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", results)
    return module


def test_b4s_section_shows_every_pair_the_medians_the_ratios_and_a_downtime_read_off_the_savepoint_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = load_report(tmp_path, monkeypatch)
    assert "No results: run `make bench-app`" in "\n".join(report.b4())

    marks = {"pod_ip": 9.5, "rest_answers": 21.0, "all_running": 30.0}
    runs = [
        run("A", 0, 30.0, 20.0, marks=marks, end_source="end-time"),
        run("B", 0, 25.0, 16.0, marks=marks, end_source="savepoint-file"),
    ]
    data = {"runs": runs, "summary": summarise(runs), "settings": {"cpu_per_pod": "500m"}}
    (tmp_path / "b4.json").write_text(json.dumps(data))
    text = "\n".join(report.b4())
    assert "| 0 | 30.00 | 25.00 | 20.00 | 16.00* | 9.5 / 21.0 / 30.0 | 9.5 / 21.0 / 30.0 |" in text
    assert "| **median** | **30.00** | **25.00** | **20.00** | **16.00** | | |" in text
    assert "**A/B: 1.20 on total time, 1.25 on downtime.**" in text
    assert "500m CPU per pod" in text
    assert "`_metadata`" in text  # the starred downtime is explained
    assert report.b4 in report.SECTIONS
