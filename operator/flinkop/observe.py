"""Observe: read what the planner needs from Flink (and the jar's source) into an Observation.

Reads only: nothing here changes Flink. What is read depends on the status: a job at rest is
looked up in its cluster's `GET /jobs/overview`, read at most once per `max_age` seconds for every
FlinkJob on that cluster, so an idle operator costs Flink next to nothing per job.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, TypeVar

from flinkop import status as st
from flinkop.flink_client import FlinkClient, FlinkError, FlinkNotFound, JobInfo, StartProgress
from flinkop.jars import JarError, JarFetcher, is_cluster_name_for
from flinkop.observation import JarCheck, JobView, Observation
from flinkop.savepoint_metadata import explain_unmapped, unmapped_operator_ids
from flinkop.spec import Deployment, FlinkJobSpec
from flinkop.status import Status

_CONFIG_TTL = 30.0
_config_cache: dict[str, tuple[float, dict[str, str]]] = {}
_config_locks: dict[str, threading.Lock] = {}
_config_guard = threading.Lock()


class JobsOverviews:
    """Each cluster's `GET /jobs/overview`, shared by the FlinkJobs on it and read again once it is
    `max_age` seconds old (one reader at a time per cluster; the others wait for its answer)."""

    def __init__(self, max_age: float = 5.0) -> None:
        self.max_age = max_age
        self._entries: dict[str, tuple[float, dict[str, JobInfo]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, client: FlinkClient) -> dict[str, JobInfo]:
        key = client.identity
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._entries.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.max_age:
                return cached[1]
            jobs = client.jobs_overview()
            self._entries[key] = (time.monotonic(), jobs)
            return jobs

    def refresh(self, client: FlinkClient) -> dict[str, JobInfo]:
        """Reads the list now (the cluster's observer, `job_watch`) and shares it with the passes."""
        key = client.identity
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            jobs = client.jobs_overview()
            self._entries[key] = (time.monotonic(), jobs)
            return jobs


def at_rest(spec: FlinkJobSpec, status: Status, deleting: bool) -> bool:
    """Nothing is under way and the deployed spec is the wanted one: the job only needs a look."""
    # A job just suspended, stopped or replaced may still be listed RUNNING in an overview read
    # before that: only a job the status says runs is looked up there; anything else is read live.
    return (
        not deleting
        and spec.state == "running"
        and status.phase == "Running"
        and status.upgrade is None
        and status.job_id is not None
        and status.deployed is not None
        and status.deployed.fingerprint == spec.deployment.fingerprint
    )


def jar_to_check(spec: FlinkJobSpec, status: Status, deleting: bool) -> Deployment | None:
    """The deployment whose jar the next submission would use, if one may be needed soon: every
    planner decision that checks a jar (`plan.common.jar_ready`) finds it read by this rule, which
    tests/unit/test_reads_follow_the_planner.py goes through decision by decision."""
    if deleting:
        return None
    up = status.upgrade
    if up is not None:
        # While an upgrade's savepoint runs too, unless the jar's cluster id was recorded when it
        # was triggered: the pass that sees it complete can then submit at once.
        savepointing = up.kind == st.UPGRADE and up.step == st.SAVEPOINTING and up.target_jar_id is None
        in_flight = up.step in (st.SUBMITTING, st.STARTING) or savepointing
        return up.target if in_flight else None
    if status.deployed is None or status.deployed.fingerprint != spec.deployment.fingerprint:
        return spec.deployment
    if status.phase == "Suspended" and spec.state == "running":
        return spec.deployment  # a resume submits the wanted spec from the suspend savepoint
    return None


def observe(
    spec: FlinkJobSpec,
    status: Status,
    client: FlinkClient,
    fetcher: JarFetcher,
    deleting: bool = False,
    overviews: JobsOverviews | None = None,
    check_jar: bool = True,
) -> Observation:
    """`check_jar` False: the jar is not looked for on the cluster (application mode checks its own)."""
    try:
        return _observe(spec, status, client, fetcher, deleting, overviews, check_jar)
    except FlinkError as exc:
        return Observation(flink_error=str(exc.detail if exc.status is None else exc))


def _observe(
    spec: FlinkJobSpec,
    status: Status,
    client: FlinkClient,
    fetcher: JarFetcher,
    deleting: bool,
    overviews: JobsOverviews | None,
    check_jar: bool = True,
) -> Observation:
    up = status.upgrade
    job_id = (up.from_job_id if up is not None and up.from_job_id else None) or status.job_id
    savepoint = None
    latest = None
    if up is not None and up.step == st.SAVEPOINTING and up.from_job_id and up.trigger_id:
        # Read before the job: a completed stop-with-savepoint is then seen with its job ended.
        savepoint = client.savepoint_status(up.from_job_id, up.trigger_id)
    # The other reads do not depend on each other: whenever there is work (an upgrade, a deletion, a
    # spec change about to start one) they run at once (a pass then costs Flink's slowest answer, not
    # the sum of them). A job at rest needs at most cached answers: its reads run in the pass's own
    # thread, sparing two thread hand-offs per look.
    resting = at_rest(spec, status, deleting)
    with _Reads(parallel=not resting) as reads:
        job = None
        if job_id and overviews is not None and resting:
            listed = overviews.get(client).get(job_id)
            if listed is not None and listed.all_vertices_running:
                job = JobView(job_id, listed)  # anything else is read in full below
        job_read = reads.start(_job_view, client, job_id) if job is None and job_id else None
        # Flink caches a job's details for web.refresh-interval: a job just stopped, suspended or replaced
        # may still be RUNNING there. Whenever they are read, its state is asked for live too and wins.
        live_read = reads.start(_live_state, client, job_id) if job is None and job_id else None
        new_job_read = reads.start(_job_view, client, up.new_job_id) if up is not None and up.new_job_id else None
        # The job an upgrade starts is done once every task runs: that is read live from the overview
        # (the details above are cached for web.refresh-interval and would make Ready come seconds late).
        starting = up is not None and up.new_job_id is not None and up.step in (st.SUBMITTING, st.STARTING)
        live_overview = reads.start(client.jobs_overview) if starting else None
        # The stability gate: checkpoints and failures of the job being started (plan.stability).
        progress_read = (
            reads.start(_start_progress, client, up.new_job_id) if starting and up and up.new_job_id else None
        )
        disposal_read = None
        if status.disposal is not None and status.disposal.trigger_id:
            disposal_read = reads.start(client.disposal_status, status.disposal.trigger_id)
        config_read = reads.start(_cluster_config, client) if job_id or deleting else None
        target = jar_to_check(spec, status, deleting) if check_jar else None
        jar_read = reads.start(_check_jar, client, fetcher, target) if target is not None else None
        if target is None and job_id is None:
            client.overview()  # nothing else was read: make sure Flink answers at all

        if job_read is not None:
            job = job_read.result()
            # A job Flink does not know is 404 in its details but HTTP 500 in its live state (Flink
            # 2.3): the live state is only asked for a job that exists.
            live = live_read.result() if live_read is not None and not job.missing else None
            if live and job.info is not None and job.active and live != job.info.state:
                job = JobView(job.job_id, replace(job.info, state=live), job.failure)
        new_job = new_job_read.result() if new_job_read is not None else None
        if new_job is not None and new_job.info is not None and live_overview is not None:
            new_job = with_live_tasks(new_job, live_overview.result().get(new_job.job_id))
        progress = progress_read.result() if progress_read is not None else None
        disposal = disposal_read.result() if disposal_read is not None else None
        config = config_read.result() if config_read is not None else {}
        jar = jar_read.result() if jar_read is not None else None

    if up is not None and up.step == st.SAVEPOINTING and up.from_job_id:
        forgotten = savepoint is None or savepoint.status == "UNKNOWN"
        if forgotten and job is not None and not job.active and not job.missing:
            latest = client.latest_savepoint(up.from_job_id)
    diagnosis = None
    if up is not None and up.savepoint_path:
        failed = new_job.failure if new_job is not None and new_job.info is not None and new_job.info.terminal else None
        text = failed or up.last_error or ""
        if unmapped_operator_ids(text):
            diagnosis = explain_unmapped(text, up.savepoint_path)
    requirements = None
    if up is not None and up.kind == st.RESCALE and job is not None and job.active:
        requirements = client.resource_requirements(job.job_id)
    return Observation(
        cluster_savepoint_dir=savepoint_dir_of(config),
        cluster_scheduler=config.get("jobmanager.scheduler"),
        cluster_ha=high_availability(config),
        resource_requirements=requirements,
        job=job,
        new_job=new_job,
        savepoint=savepoint,
        latest_savepoint=latest,
        jar=jar,
        disposal=disposal,
        restore_diagnosis=diagnosis,
        new_job_progress=progress,
    )


_T = TypeVar("_T")
_read_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="flinkop-read")


class _Reads:
    """Reads of one pass started together; each `result()` waits for its own, and raises its error.

    Leaving the block waits for every read started, also when one failed: none outlives the pass."""

    def __init__(self, parallel: bool = True) -> None:
        self.parallel = parallel
        self._started: list[Future[Any]] = []

    def __enter__(self) -> _Reads:
        return self

    def __exit__(self, *exc_info: object) -> None:
        wait(self._started)

    def start(self, read: Callable[..., _T], *args: Any) -> Future[_T]:
        if not self.parallel:
            done: Future[_T] = Future()
            try:
                done.set_result(read(*args))
            except Exception as exc:  # raised by its result(), as from the pool
                done.set_exception(exc)
            return done
        context = contextvars.copy_context()  # the log lines of a read name the FlinkJob too
        future = _read_pool.submit(context.run, read, *args)
        self._started.append(future)
        return future


def with_live_tasks(view: JobView, listed: JobInfo | None) -> JobView:
    """A starting job's (cached) details with its live overview entry: the live task counts decide
    whether every task runs. A job that ended is taken as ended only once its details say so too:
    they carry the root exception to report (the live entry has none)."""
    if view.info is None or listed is None or (listed.state != "RUNNING" and view.info.terminal):
        return view
    state = listed.state if listed.state == "RUNNING" else view.info.state
    return JobView(view.job_id, replace(view.info, state=state, tasks=listed.tasks), view.failure)


def _start_progress(client: FlinkClient, job_id: str) -> StartProgress | None:
    try:
        return client.start_progress(job_id)
    except FlinkNotFound:
        return None


def _live_state(client: FlinkClient, job_id: str) -> str | None:
    try:
        return client.job_state(job_id)
    except FlinkNotFound:
        return None


def _job_view(client: FlinkClient, job_id: str) -> JobView:
    try:
        info = client.job(job_id)
    except FlinkNotFound:
        return JobView(job_id, None)
    failure = None
    if info.state == "FAILED":
        try:
            failure = client.job_root_exception(job_id)
        except FlinkNotFound:
            failure = None
    return JobView(job_id, info, failure)


def _cluster_config(client: FlinkClient) -> dict[str, str]:
    """The JobManager's configuration, read at most every 30 s per cluster (one reader at a time:
    passes that need it meanwhile wait for its answer rather than read it too)."""
    with _config_guard:
        lock = _config_locks.setdefault(client.identity, threading.Lock())
    with lock:
        cached = _config_cache.get(client.identity)
        if cached and time.monotonic() - cached[0] < _CONFIG_TTL:
            return cached[1]
        config = client.config()
        _config_cache[client.identity] = (time.monotonic(), config)
        return config


def high_availability(config: dict[str, str]) -> bool:
    # Flink 2 names it high-availability.type; high-availability is the older key.
    mode = config.get("high-availability.type") or config.get("high-availability") or "NONE"
    return mode.strip().upper() not in ("NONE", "")


def savepoint_dir_of(config: dict[str, str]) -> str | None:
    # Flink 2 names it execution.checkpointing.savepoint-dir; state.savepoints.dir is the older key.
    return config.get("execution.checkpointing.savepoint-dir") or config.get("state.savepoints.dir") or None


def check_jar(client: FlinkClient, fetcher: JarFetcher, target: Deployment) -> JarCheck | str:
    """The jar check of `target` alone, for a decision that waited for it (a string: Flink's error)."""
    try:
        return _check_jar(client, fetcher, target)
    except FlinkError as exc:
        return str(exc.detail if exc.status is None else exc)


def _check_jar(client: FlinkClient, fetcher: JarFetcher, target: Deployment) -> JarCheck:
    try:
        local = fetcher.fetch(target.jar_uri, target.jar_sha256)
    except JarError as exc:
        return JarCheck(uri=target.jar_uri, error_reason=exc.reason, error=str(exc), expected_sha256=target.jar_sha256)
    uploaded = [j for j in client.list_jars() if is_cluster_name_for(j.name, local.sha256)]
    uploaded.sort(key=lambda j: j.uploaded_ms)
    return JarCheck(
        uri=target.jar_uri,
        sha256=local.sha256,
        local_path=local.path,
        cluster_jar_id=uploaded[0].id if uploaded else None,
        expected_sha256=target.jar_sha256,
    )
