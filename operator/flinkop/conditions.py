"""The kstatus conditions (`Ready`, `Reconciling`, `Stalled`) derived from a status.

`Ready`: the job runs the current generation's spec. `Reconciling`: a deploy, upgrade or rollback
is under way. `Stalled`: the current spec cannot be reached without a person; reason says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flinkop.status import SAVEPOINT, Status
from flinkop.times import format_time


def _condition(
    kind: str, true: bool, reason: str, message: str, generation: int, now: datetime, previous: Status
) -> dict[str, Any]:
    value = "True" if true else "False"
    old = next((c for c in previous.conditions if c.get("type") == kind), None)
    changed = old is None or old.get("status") != value
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": format_time(now) if changed or old is None else old.get("lastTransitionTime"),
    }


def derive_conditions(
    status: Status,
    desired_fingerprint: str | None,
    generation: int,
    now: datetime,
    suspended: bool = False,
    failure_key: str | None = None,
) -> tuple[Mapping[str, Any], ...]:
    """`suspended`: the spec asks for the job to be suspended (then reaching Suspended is Ready).
    `failure_key`: what a failure of the wanted spec under its current policies is recorded with
    (`FlinkJobSpec.attempt_key`); a failure recorded with another key no longer stalls it."""
    failure = status.failure
    stalled = failure is not None and failure.fingerprint in (None, failure_key or desired_fingerprint)
    # A savepoint that keeps the job running (manual, periodic) changes neither Ready nor Reconciling.
    work = status.upgrade if status.upgrade is not None and status.upgrade.kind != SAVEPOINT else None
    running_desired = (
        not suspended
        and status.phase == "Running"
        and work is None
        and status.deployed is not None
        and status.deployed.fingerprint == desired_fingerprint
    )
    suspended_reached = suspended and status.phase == "Suspended" and work is None
    ready = (running_desired or suspended_reached) and not stalled
    # The spec changed and its upgrade has not started yet (jar upload, an upgrade slot, a rescale interval).
    pending = (
        work is None
        and not suspended
        and desired_fingerprint is not None
        and status.deployed is not None
        and status.deployed.fingerprint != desired_fingerprint
    )
    # Neither Ready nor Stalled is Reconciling (kstatus): whatever is not reached yet is being worked on.
    reconciling = not stalled and not ready
    if ready:
        ready_reason = "Suspended" if suspended_reached else "Running"
    elif stalled and failure is not None:
        ready_reason = failure.reason
    elif work is not None:
        ready_reason = work.step
    else:
        ready_reason = status.phase
    if work is not None:
        reconciling_reason, step = work.kind.capitalize(), f"{work.kind}: {work.step}"
    elif suspended:
        reconciling_reason, step = "Suspend", "suspending"
    elif pending:
        reconciling_reason, step = "UpgradePending", "the spec changed; the upgrade has not started yet"
    elif status.phase == "Suspended":
        reconciling_reason, step = "Resume", "resuming from the suspend savepoint"
    else:
        reconciling_reason, step = status.phase or "Pending", status.phase or "starting"
    return (
        _condition("Ready", ready, ready_reason, status.message, generation, now, status),
        _condition(
            "Reconciling",
            reconciling,
            reconciling_reason if reconciling else "Idle",
            step if reconciling else "",
            generation,
            now,
            status,
        ),
        _condition(
            "Stalled",
            stalled,
            failure.reason if stalled and failure else "None",
            failure.message if stalled and failure else "",
            generation,
            now,
            status,
        ),
    )
