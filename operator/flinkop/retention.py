"""Which recorded savepoints may be disposed of: a pure rule over the status and the spec.

Never a restore point: the last savepoint (what a resume, a restart or a rollback starts from),
the savepoint an upgrade in flight uses, or a savepoint the user gave (`initialSavepointPath`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flinkop.spec import FlinkJobSpec
from flinkop.status import Status
from flinkop.times import parse_time

_GONE_MARKERS = ("FileNotFoundException", "Cannot find meta data", "does not exist", "No such file")


def protected_paths(status: Status, spec: FlinkJobSpec) -> set[str]:
    paths = {p for p in (spec.initial_savepoint_path,) if p}
    if status.last_savepoint is not None:
        paths.add(status.last_savepoint.path)
    if status.upgrade is not None and status.upgrade.savepoint_path:
        paths.add(status.upgrade.savepoint_path)
    if status.deployed is not None and status.deployed.cluster is not None and status.started_from:
        # Application mode: without high availability its JobManager, if its pod restarts, runs the job
        # again from the savepoint on its command line.
        paths.add(status.started_from)
    return paths


def _parse(t: str) -> datetime | None:
    try:
        return parse_time(t)
    except ValueError:
        return None


def disposable(status: Status, spec: FlinkJobSpec, now: datetime) -> list[str]:
    """Savepoints past `savepointHistoryLimit` or older than `savepointMaxAgeSeconds`, oldest first."""
    protected = protected_paths(status, spec)
    history = status.savepoint_history
    over_limit = {s.path for s in history[spec.savepoint_history_limit :]}
    too_old: set[str] = set()
    if spec.savepoint_max_age_seconds is not None:
        cutoff = now.replace(tzinfo=None) - timedelta(seconds=spec.savepoint_max_age_seconds)
        too_old = {s.path for s in history if (t := _parse(s.time)) is not None and t < cutoff}
    return [s.path for s in reversed(history) if s.path in over_limit | too_old and s.path not in protected]


def disposable_on_delete(status: Status, spec: FlinkJobSpec) -> list[str]:
    """With `disposeSavepointsOnDelete`: every recorded savepoint but the final one (and the user's)."""
    protected = protected_paths(status, spec)
    return [s.path for s in reversed(status.savepoint_history) if s.path not in protected]


def already_gone(failure: str | None) -> bool:
    """A disposal that failed because the savepoint is not there any more has nothing left to do."""
    return failure is not None and any(marker in failure for marker in _GONE_MARKERS)
