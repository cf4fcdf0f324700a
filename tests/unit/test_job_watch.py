"""The per-cluster observer: one job-list read per cluster per interval, and a wake-up only for the
FlinkJobs whose job looks different from what their last pass saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flinkop.flink_client import FlinkClient, FlinkUnreachable, JobInfo
from flinkop.job_watch import MISSING, JobWatch

RUNNING_ALL = ("RUNNING", True, 0)


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


def info(job_id: str, state: str = "RUNNING", running: int = 2, total: int = 2, started: int = 0) -> JobInfo:
    return JobInfo(id=job_id, name="j", state=state, tasks=(running, total), start_time_ms=started)


class Lists:
    """What each cluster's job list says; counts the reads."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, JobInfo] | None] = {}
        self.reads: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, client: FlinkClient) -> dict[str, JobInfo]:
        with self.lock:
            self.reads[client.base_url] = self.reads.get(client.base_url, 0) + 1
            jobs = self.jobs.get(client.base_url)
        if jobs is None:
            raise FlinkUnreachable("list jobs", client.base_url, "connection refused")
        return jobs


def test_only_the_flinkjob_whose_job_changed_is_woken_and_each_cluster_is_read_once_per_look() -> None:
    lists = Lists()
    a, b = FlinkClient("http://a:8081"), FlinkClient("http://b:8081")
    lists.jobs = {a.base_url: {"j1": info("j1"), "j2": info("j2")}, b.base_url: {"j3": info("j3")}}
    woken: list[str] = []
    watch = JobWatch(lists, woken.append, interval=0.05)
    try:
        watch.track("u1", a, "j1", RUNNING_ALL)
        watch.track("u2", a, "j2", RUNNING_ALL)
        watch.track("u3", b, "j3", RUNNING_ALL)
        wait_for(lambda: lists.reads.get(a.base_url, 0) >= 2 and lists.reads.get(b.base_url, 0) >= 2)
        assert woken == []  # nothing changed: nobody woken
        lists.jobs[a.base_url] = {"j1": info("j1", "FAILED", 0, 2), "j2": info("j2")}
        wait_for(lambda: "u1" in woken)
        assert "u2" not in woken and "u3" not in woken
    finally:
        watch.stop()


def test_a_job_started_again_between_two_looks_wakes_its_flinkjob_though_it_runs_as_before() -> None:
    """A JobManager that restarted (application mode) runs the same job id again, every task running:
    only its start-time tells, and the pass must see it (it reports a restart without HA)."""
    lists = Lists()
    a = FlinkClient("http://a:8081")
    lists.jobs = {a.base_url: {"j1": info("j1", started=1000), "j2": info("j2", started=1000)}}
    woken: list[str] = []
    watch = JobWatch(lists, woken.append, interval=0.05)
    try:
        watch.track("same", a, "j1", ("RUNNING", True, 1000))
        watch.track("restarted", a, "j2", ("RUNNING", True, 1000))
        wait_for(lambda: lists.reads.get(a.base_url, 0) >= 2)
        assert woken == []
        lists.jobs[a.base_url] = {"j1": info("j1", started=1000), "j2": info("j2", started=9000)}
        wait_for(lambda: "restarted" in woken)
        assert "same" not in woken
    finally:
        watch.stop()


def test_a_job_gone_from_the_list_wakes_its_flinkjob_and_one_seen_missing_does_not() -> None:
    lists = Lists()
    a = FlinkClient("http://a:8081")
    lists.jobs = {a.base_url: {}}
    woken: list[str] = []
    watch = JobWatch(lists, woken.append, interval=0.05)
    try:
        watch.track("gone", a, "j1", RUNNING_ALL)
        watch.track("known-gone", a, "j2", MISSING)
        wait_for(lambda: "gone" in woken)
        time.sleep(0.15)
        assert "known-gone" not in woken
    finally:
        watch.stop()


def test_an_unreachable_cluster_wakes_its_flinkjobs_once_not_at_every_look() -> None:
    lists = Lists()
    a = FlinkClient("http://a:8081")
    lists.jobs = {a.base_url: None}
    woken: list[str] = []
    watch = JobWatch(lists, woken.append, interval=0.03)
    try:
        watch.track("u1", a, "j1", RUNNING_ALL)
        wait_for(lambda: lists.reads.get(a.base_url, 0) >= 4)
        assert woken == ["u1"]
    finally:
        watch.stop()


def test_an_untracked_flinkjob_is_not_woken_and_an_empty_cluster_is_no_longer_read() -> None:
    lists = Lists()
    a = FlinkClient("http://a:8081")
    lists.jobs = {a.base_url: {}}
    woken: list[str] = []
    watch = JobWatch(lists, woken.append, interval=0.03)
    try:
        watch.track("u1", a, "j1", RUNNING_ALL)
        watch.untrack("u1")
        time.sleep(0.1)
        reads = lists.reads.get(a.base_url, 0)
        time.sleep(0.1)
        assert woken == [] and lists.reads.get(a.base_url, 0) == reads and watch.clusters == 0
    finally:
        watch.stop()


def test_a_cluster_whose_flinkjobs_leave_and_come_back_is_still_read_once_per_look() -> None:
    # Found at 10,000 FlinkJobs: each time a cluster's last FlinkJob at rest went into an upgrade and
    # came back, the cluster got one more look of its own, and the job lists were read ever faster.
    lists = Lists()
    a = FlinkClient("http://a:8081")
    lists.jobs = {a.base_url: {"j1": info("j1")}}
    watch = JobWatch(lists, lambda uid: None, interval=0.05)
    try:
        for _ in range(20):
            watch.track("u1", a, "j1", RUNNING_ALL)
            watch.untrack("u1")
        watch.track("u1", a, "j1", RUNNING_ALL)
        time.sleep(0.1)  # the entries of the earlier memberships come up and end
        start = lists.reads.get(a.base_url, 0)
        time.sleep(0.5)
        reads = lists.reads.get(a.base_url, 0) - start
        assert 5 <= reads <= 13, f"{reads} reads in 0.5 s at one per 0.05 s"
    finally:
        watch.stop()
