"""What an action's outcome does to the status: a refusal by Flink, or an id Flink chose."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from flinkop.actions import (
    Action,
    DisposeSavepoint,
    SubmitJob,
    TriggerSavepoint,
)
from flinkop.plan.common import retry_time
from flinkop.status import Status
from flinkop.times import format_time


def record_action_failure(status: Status, action: Action, error: str, now: datetime) -> Status:
    """The status after an action that Flink refused (not one that did not reach Flink): the
    next pass decides from it (retry a savepoint later, or treat a refused start as failed)."""
    if isinstance(action, DisposeSavepoint) and status.disposal is not None:
        dis = status.disposal
        attempts = dis.attempts + 1
        retry = format_time(retry_time(now, attempts))
        return replace(
            status, disposal=replace(dis, trigger_id=None, attempts=attempts, retry_at=retry, last_error=error)
        )
    up = status.upgrade
    if up is None:
        return replace(status, message=f"Could not {action.describe()}: {error}")
    attempts = up.attempts + 1
    if isinstance(action, TriggerSavepoint):
        retry_at = retry_time(now, attempts)
        message = f"Could not {action.describe()}: {error}; the job keeps running; retrying at {format_time(retry_at)}."
        new_up = replace(up, attempts=attempts, trigger_id=None, retry_at=format_time(retry_at), last_error=error)
        return replace(status, upgrade=new_up, message=message)
    if isinstance(action, SubmitJob):
        if jar_missing(error):
            # The recorded jar was deleted from the cluster meanwhile: not the new version's failure.
            # The next pass lists the cluster's jars, uploads it again and submits.
            new_up = replace(up, target_jar_id=None)
            message = f"Could not {action.describe()}: {error}; uploading the jar again."
            return replace(status, upgrade=new_up, message=message)
        new_up = replace(up, attempts=attempts, last_error=error)
        return replace(status, upgrade=new_up, message=f"Could not {action.describe()}: {error}")
    return replace(status, upgrade=replace(up, last_error=error), message=f"Could not {action.describe()}: {error}")


def jar_missing(error: str) -> bool:
    """Whether Flink refused a run because the jar is not on the cluster (Flink 2.3 answers HTTP 500
    with its RestHandlerException "Jar file <path> does not exist")."""
    return "jar file" in error.lower() and "does not exist" in error.lower()


def record_action_result(status: Status, action: Action, result: str | None) -> Status | None:
    """The status after an action whose id Flink chose (a disposal's trigger id); None: no change."""
    if isinstance(action, DisposeSavepoint) and result and status.disposal is not None:
        return replace(status, disposal=replace(status.disposal, trigger_id=result))
    return None
