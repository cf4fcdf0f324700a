"""Builders for planner unit tests: specs, statuses and observations as plain values (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flinkop.flink_client import (
    JobInfo,
    LatestSavepoint,
    SavepointOperation,
    SavepointStatus,
    StartProgress,
    VertexInfo,
)
from flinkop.observation import APP_JAR_ID, AppView, JarCheck, JobView, Observation
from flinkop.plan import Decision, PlanInput, plan
from flinkop.spec import FlinkJobSpec, SpecError, parse_spec
from flinkop.status import Status

NOW = datetime(2024, 5, 1, 12, 0, 0)
FLINK_URL = "http://flink:8081"

OLD_JOB = "1" * 32  # the job running the previous spec
NEW_JOB = "2" * 32  # the job an upgrade submits
TRIGGER = "3" * 32  # the savepoint trigger an upgrade uses
FRESH = "4" * 32  # the fresh id handed to the pass under test
ROLLBACK_JOB = "5" * 32

JAR_V1 = "https://repo.example/job-1.0.jar"
JAR_V2 = "https://repo.example/job-2.0.jar"
JAR_IDS = {JAR_V1: "cluster-jar-v1", JAR_V2: "cluster-jar-v2"}
SHA = "ab" * 32

SP_DIR = "file:///savepoints"
CLUSTER_SP_DIR = "file:///cluster-savepoints"
SP_PATH = "file:///savepoints/savepoint-111111-aaaaaaaaaaaa"
OLDER_SP_PATH = "file:///savepoints/savepoint-000000-bbbbbbbbbbbb"
INITIAL_SP_PATH = "file:///imported/savepoint-999999-cccccccccccc"


# A started job that passed the stability gate: it checkpoints, and a checkpoint completed after it
# started (the kit's jobs start at 0 ms) with no failure since.
STABLE = StartProgress(checkpointing=True, latest_checkpoint_ms=1)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def make_spec(**fields: Any) -> FlinkJobSpec:
    """A parsed spec; keyword arguments are spec fields in the resource's own (camelCase) names."""
    raw: dict[str, Any] = {
        "flinkRestUrl": FLINK_URL,
        "jar": {"uri": JAR_V1},
        "parallelism": 2,
        "savepointDirectory": SP_DIR,
    }
    raw.update(fields)
    return parse_spec(raw)


V1 = make_spec()


def job_info(
    job_id: str, state: str = "RUNNING", vertices: tuple[str, ...] | None = None, parallelism: int = 2
) -> JobInfo:
    if vertices is None:
        vertices = ("RUNNING", "RUNNING") if state == "RUNNING" else (state, state)
    return JobInfo(
        id=job_id,
        name="test-job",
        state=state,
        vertices=tuple(VertexInfo(f"v{i}", f"vertex {i}", parallelism, s) for i, s in enumerate(vertices)),
    )


def job(
    job_id: str,
    state: str = "RUNNING",
    *,
    vertices: tuple[str, ...] | None = None,
    parallelism: int = 2,
    failure: str | None = None,
) -> JobView:
    return JobView(job_id, job_info(job_id, state, vertices, parallelism), failure)


def gone(job_id: str) -> JobView:
    """A job Flink does not know (404)."""
    return JobView(job_id, None)


def jar_uploaded(uri: str = JAR_V1, expected_sha256: str | None = None) -> JarCheck:
    """`expected_sha256`: the digest the deployment asks for (jar.sha256), if any."""
    return JarCheck(
        uri=uri,
        sha256=SHA,
        local_path=Path("/cache/job.jar"),
        cluster_jar_id=JAR_IDS[uri],
        expected_sha256=expected_sha256,
    )


def jar_fetched(uri: str = JAR_V1, expected_sha256: str | None = None) -> JarCheck:
    """Fetched and checked, not yet on the cluster."""
    return JarCheck(uri=uri, sha256=SHA, local_path=Path("/cache/job.jar"), expected_sha256=expected_sha256)


def jar_bad(uri: str, reason: str, error: str, expected_sha256: str | None = None) -> JarCheck:
    return JarCheck(uri=uri, error_reason=reason, error=error, expected_sha256=expected_sha256)


def savepoint(status: SavepointStatus, location: str | None = None, failure: str | None = None) -> SavepointOperation:
    return SavepointOperation(status, location, failure)


def latest(path: str, triggered: datetime) -> LatestSavepoint:
    return LatestSavepoint(path, int((triggered - datetime(1970, 1, 1)).total_seconds() * 1000))


def steady(spec: FlinkJobSpec = V1, job_id: str = OLD_JOB, **fields: Any) -> Status:
    """The status of a job that runs `spec` healthily."""
    dep = spec.deployment
    base = Status(
        phase="Running",
        job_id=job_id,
        job_state="RUNNING",
        parallelism=dep.parallelism,
        deployed=dep,
        last_stable=dep,
        jar_id=JAR_IDS.get(dep.jar_uri),
        message=f"Job {job_id} is running.",
        observed_generation=1,
    )
    return replace(base, **fields)


def run(
    spec: FlinkJobSpec | SpecError,
    status: Status,
    obs: Observation | None = None,
    *,
    now: datetime = NOW,
    fresh_id: str = FRESH,
    generation: int = 1,
    deleting: bool = False,
    deadline: datetime | None = None,
    slot_free: bool = True,
    jars_used_elsewhere: frozenset[str] = frozenset(),
) -> Decision:
    return plan(
        PlanInput(
            spec=spec,
            status=status,
            observation=obs or Observation(),
            now=now,
            fresh_id=fresh_id,
            generation=generation,
            deleting=deleting,
            delete_deadline=deadline,
            upgrade_slot_free=slot_free,
            jars_used_elsewhere=jars_used_elsewhere,
        )
    )


def condition(decision_or_status: Decision | Status, kind: str) -> Mapping[str, Any]:
    status = decision_or_status.status if isinstance(decision_or_status, Decision) else decision_or_status
    found = [c for c in status.conditions if c["type"] == kind]
    assert len(found) == 1, f"expected one {kind} condition in {status.conditions}"
    return found[0]


def cond_status(decision: Decision) -> dict[str, str]:
    """{'Ready': 'True', 'Reconciling': 'False', 'Stalled': 'False'} for a decision."""
    return {c["type"]: c["status"] for c in decision.status.conditions}


def event_reasons(decision: Decision) -> list[str]:
    return [e.reason for e in decision.events]


# -- scenario steps: statuses reached by running the planner itself ---------------------------


def upgrade_started(frm: FlinkJobSpec, to: FlinkJobSpec, *, now: datetime = NOW) -> Status:
    """`frm` runs as OLD_JOB, the spec became `to`: the savepoint with trigger TRIGGER is recorded."""
    d = run(
        to,
        steady(frm),
        Observation(job=job(OLD_JOB), jar=jar_uploaded(to.deployment.jar_uri)),
        now=now,
        fresh_id=TRIGGER,
    )
    assert d.status.upgrade is not None and d.status.upgrade.trigger_id == TRIGGER, d
    return d.status


def savepoint_taken(frm: FlinkJobSpec, to: FlinkJobSpec, *, now: datetime = NOW) -> Status:
    """After `upgrade_started`: the savepoint SP_PATH completed and NEW_JOB is recorded to start."""
    obs = Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH))
    d = run(to, upgrade_started(frm, to, now=now), obs, now=now + timedelta(seconds=10), fresh_id=NEW_JOB)
    assert d.status.upgrade is not None and d.status.upgrade.new_job_id == NEW_JOB, d
    return d.status


# -- application mode (spec.cluster): the job's own cluster -----------------------------------

APP_JAR = "local:///opt/flink/usrlib/job.jar"  # inside the image: nothing to fetch or upload
IMAGE_V1 = "registry.example/team/job:1.0"
IMAGE_V2 = "registry.example/team/job:2.0"
PODS_STARTING = "JobManager 0/1 ready, TaskManagers 0/1 ready"
PODS_READY = "JobManager 1/1 ready, TaskManagers 1/1 ready"


def make_app_spec(image: str = IMAGE_V1, **fields: Any) -> FlinkJobSpec:
    """A parsed application-mode spec (spec.cluster, no flinkRestUrl); keyword arguments as in make_spec."""
    raw: dict[str, Any] = {
        "cluster": {"image": image},
        "jar": {"uri": APP_JAR},
        "parallelism": 2,
        "savepointDirectory": SP_DIR,
    }
    raw.update(fields)
    return parse_spec(raw)


def app_jar(uri: str = APP_JAR) -> JarCheck:
    """What observe_app.app_jar_check says of a local:// jar: ready, nothing uploaded."""
    return JarCheck(uri=uri, cluster_jar_id=APP_JAR_ID)


def starting_cluster(job_id: str, readiness: str = PODS_STARTING, problem: str | None = None) -> AppView:
    """The cluster applied for `job_id`, whose JobManager does not answer yet."""
    return AppView(job_id, f"{readiness}; {problem}" if problem else readiness, problem)


def answering_cluster(job_id: str, readiness: str = PODS_READY) -> AppView:
    return AppView(job_id, readiness, None, answering=True)


def app_obs(app: AppView, jar: JarCheck | None = None, **fields: Any) -> Observation:
    """An application-mode observation as observe_app makes it: with a JobManager that does not answer
    (or no cluster) only the cluster and the jar check are known; `fields` are the JobManager's reads."""
    if app.job_id is None or app.starting:
        assert not set(fields) - {"job", "new_job"}, "nothing but missing jobs is known without a JobManager"
    return Observation(app=app, jar=jar, **fields)


def no_cluster(status: Status, jar: JarCheck | None = None) -> Observation:
    """No cluster (observe_app._no_cluster): every job the status names is missing, gone with it."""
    up = status.upgrade
    job_id = (up.from_job_id if up is not None and up.from_job_id else None) or status.job_id
    new_id = up.new_job_id if up is not None and up.step in ("Submitting", "Starting") else None
    return app_obs(
        AppView(None),
        jar,
        job=JobView(job_id, None) if job_id else None,
        new_job=JobView(new_id, None) if new_id else None,
    )
