"""Observe in application mode: the FlinkJob's own cluster through the Kubernetes API, then its job
through its JobManager's REST API (the same reads as on a session cluster, flinkop.observe).

Reads only. The cluster's JobManager Deployment says which job it runs (its job-id label); while its
JobManager does not answer, nothing is known of that job (`AppView.starting`), and the planner waits
for it rather than take the job for lost. With no cluster at all, every job the status names is
missing: the cluster and its job went together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from flinkop import status as st
from flinkop.app_cluster import cluster_names
from flinkop.app_cluster_kube import AppClusterError, AppClusterKube, RestAddress
from flinkop.flink_client import FlinkClient
from flinkop.jars import JarError, JarFetcher
from flinkop.observation import APP_JAR_ID, AppView, JarCheck, JobView, Observation
from flinkop.observe import JobsOverviews, high_availability, jar_to_check, observe, savepoint_dir_of
from flinkop.spec import AppCluster, Deployment, FlinkJobSpec
from flinkop.status import Status


def app_jar_check(fetcher: JarFetcher, target: Deployment) -> JarCheck:
    """The jar of an application-mode start: local:// is in the image (the pods load it; nothing to
    check here); http(s):// is fetched and checked against jar.sha256 before anything is stopped, as
    on a session cluster. Nothing is uploaded: the JobManager loads it itself."""
    if target.jar_uri.startswith("local://"):
        return JarCheck(uri=target.jar_uri, cluster_jar_id=APP_JAR_ID, expected_sha256=target.jar_sha256)
    try:
        local = fetcher.fetch(target.jar_uri, target.jar_sha256)
    except JarError as exc:
        return JarCheck(uri=target.jar_uri, error_reason=exc.reason, error=str(exc), expected_sha256=target.jar_sha256)
    return JarCheck(
        uri=target.jar_uri,
        sha256=local.sha256,
        local_path=local.path,
        cluster_jar_id=APP_JAR_ID,
        expected_sha256=target.jar_sha256,
    )


def observe_app(
    spec: FlinkJobSpec,
    status: Status,
    *,
    kube: AppClusterKube,
    namespace: str,
    name: str,
    uid: str,
    via: RestAddress,
    client_for: Callable[[str], FlinkClient],
    fetcher: JarFetcher,
    deleting: bool = False,
    overviews: JobsOverviews | None = None,
) -> tuple[Observation, FlinkClient | None]:
    """What the pass knows of the job's own cluster and job, and the client of its JobManager (None
    while it has none that answers)."""
    target = jar_to_check(spec, status, deleting)
    jar = app_jar_check(fetcher, target) if target is not None else None
    names = cluster_names(name)
    try:
        look = kube.look(namespace, names, uid, via)
    except AppClusterError as exc:
        return Observation(flink_error=f"the application cluster could not be read: {exc}"), None
    running = look.job_id
    # The cluster's settings as the operator wrote them for the start that runs (not read back from the
    # JobManager: that answer is cached by REST URL, and a pod IP passes from one cluster to the next).
    cluster = _running_cluster(spec, status, running)
    config = cluster.configuration if cluster is not None else {}
    base = Observation(
        cluster_savepoint_dir=savepoint_dir_of(config) or spec.savepoint_directory,
        cluster_scheduler=config.get("jobmanager.scheduler"),
        cluster_ha=high_availability(config),
        jar=jar,
    )
    if running is None or look.readiness is None:
        return _no_cluster(base, status), None
    readiness, url = look.readiness, look.rest_url
    problems = readiness.problems
    view = AppView(running, readiness.summary(), str(problems[0]) if problems else None)
    if url is None:
        return replace(base, app=view), None
    client = client_for(url)
    seen = observe(spec, status, client, fetcher, deleting, overviews, check_jar=False)
    if seen.flink_error is not None:
        return replace(base, app=view), client  # its JobManager does not answer yet
    return (
        replace(
            seen,
            cluster_savepoint_dir=base.cluster_savepoint_dir,
            cluster_scheduler=base.cluster_scheduler,
            cluster_ha=base.cluster_ha,
            jar=jar,
            app=replace(view, answering=True),
        ),
        client,
    )


def _running_cluster(spec: FlinkJobSpec, status: Status, running: str | None) -> AppCluster | None:
    """The cluster section of the start whose JobManager is there (`running`: its job id)."""
    up = status.upgrade
    if up is not None and running is not None and running == up.new_job_id:
        return up.target.cluster
    if status.deployed is not None and status.deployed.cluster is not None and running is not None:
        return status.deployed.cluster
    return (up.target if up is not None else spec.deployment).cluster


def _no_cluster(base: Observation, status: Status) -> Observation:
    """No cluster: the jobs the status names are gone with it (a suspend removed it, or it was never made)."""
    up = status.upgrade
    job_id = (up.from_job_id if up is not None and up.from_job_id else None) or status.job_id
    starting = up is not None and up.step in (st.SUBMITTING, st.STARTING)
    new_id = up.new_job_id if up is not None and starting else None
    return replace(
        base,
        app=AppView(None),
        job=JobView(job_id, None) if job_id else None,
        new_job=JobView(new_id, None) if new_id else None,
    )
