"""Act: carry out the one side effect the planner chose, on the Flink cluster."""

from __future__ import annotations

from flinkop.actions import (
    Action,
    CancelJob,
    DeleteJar,
    DisposeSavepoint,
    RescaleInPlace,
    SubmitJob,
    TriggerSavepoint,
    UploadJar,
)
from flinkop.flink_client import FlinkClient
from flinkop.jars import cluster_name


def perform(client: FlinkClient, action: Action) -> str | None:
    """Raises FlinkError (FlinkUnreachable when Flink was not reached) when the action failed.
    Returns the id Flink gave what the planner could not name beforehand (an upload, a disposal)."""
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
