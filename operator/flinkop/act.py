"""Act: carry out the one side effect the planner chose, on the Flink cluster."""

from __future__ import annotations

from collections.abc import Callable

from flinkop.actions import (
    Action,
    CancelJob,
    DeleteCluster,
    DeleteJar,
    DisposeSavepoint,
    RescaleInPlace,
    SubmitJob,
    TriggerSavepoint,
    UploadJar,
)
from flinkop.app_acts import AppClusterActs
from flinkop.app_cluster_kube import AppClusterError
from flinkop.flink_client import FlinkClient, FlinkError, FlinkUnreachable
from flinkop.jars import cluster_name


def perform(client: FlinkClient | None, action: Action, app: AppClusterActs | None = None) -> str | None:
    """Raises FlinkError (FlinkUnreachable when Flink was not reached) when the action failed.
    Returns the id Flink gave what the planner could not name beforehand (an upload, a disposal).

    In application mode (`app`), a start, a cluster's removal and an in-place rescale's TaskManager count
    go to the Kubernetes API: a failure there is a FlinkError too, its detail saying which call on which
    object failed."""
    if isinstance(action, SubmitJob) and action.deployment.cluster is not None:
        _on_its_cluster(action, app, lambda acts: acts.start(action))
        return None
    if isinstance(action, DeleteCluster):
        _on_its_cluster(action, app, lambda acts: acts.delete(action))
        return None
    if isinstance(action, RescaleInPlace) and action.taskmanagers is not None:
        taskmanagers = action.taskmanagers
        _on_its_cluster(action, app, lambda acts: acts.scale(taskmanagers))  # the slots first: a count, idempotent
    if client is None:
        raise FlinkUnreachable(action.describe(), "the job's cluster", "its JobManager does not answer")
    if isinstance(action, UploadJar):
        return client.upload_jar(action.local_path, cluster_name(action.sha256, action.uri))
    elif isinstance(action, TriggerSavepoint):
        if action.mode == "stop":
            client.stop_with_savepoint(
                action.job_id, trigger_id=action.trigger_id, target_directory=action.directory, drain=action.drain
            )
        else:
            client.trigger_savepoint(
                action.job_id,
                trigger_id=action.trigger_id,
                target_directory=action.directory,
                cancel_job=action.mode == "cancel",
            )
    elif isinstance(action, CancelJob):
        client.cancel_job(action.job_id)
    elif isinstance(action, SubmitJob):
        d = action.deployment
        client.run_jar(
            action.jar_id,
            job_id=action.job_id,
            parallelism=d.parallelism,
            entry_class=d.entry_class,
            args=list(d.args),
            savepoint_path=action.savepoint_path,
            allow_non_restored_state=action.allow_non_restored_state,
        )
    elif isinstance(action, DeleteJar):
        client.delete_jar(action.jar_id)
    elif isinstance(action, RescaleInPlace):
        client.set_resource_requirements(action.job_id, dict(action.upper_bounds))
    elif isinstance(action, DisposeSavepoint):
        return client.dispose_savepoint(action.path)
    return None


def _on_its_cluster(action: Action, app: AppClusterActs | None, call: Callable[[AppClusterActs], None]) -> None:
    """A call on the job's own cluster through the Kubernetes API. A call that cannot succeed (an object
    not this FlinkJob's) fails the action; one that may succeed later is retried by the next pass, as
    when Flink does not answer."""
    if app is None:
        raise FlinkError(action.describe(), "the Kubernetes API", "the operator was given no access to it")
    try:
        call(app)
    except AppClusterError as exc:
        failed = FlinkError if exc.permanent else FlinkUnreachable
        raise failed(action.describe(), "the Kubernetes API", str(exc)) from exc
