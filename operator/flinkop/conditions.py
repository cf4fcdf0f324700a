"""The kstatus conditions (`Ready`, `Reconciling`, `Stalled`) derived from a status.

`Ready`: the job runs the current generation's spec. `Reconciling`: a deploy, upgrade or rollback
is under way. `Stalled`: the current spec cannot be reached without a person; reason says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flinkop.status import Status


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
        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")
        if changed or old is None
        else old.get("lastTransitionTime"),
    }


def derive_conditions(
    status: Status, desired_fingerprint: str | None, generation: int, now: datetime
) -> tuple[Mapping[str, Any], ...]:
    failure = status.failure
    stalled = failure is not None and failure.fingerprint in (None, desired_fingerprint)
    running_desired = (
        status.phase == "Running"
        and status.upgrade is None
        and status.deployed is not None
        and status.deployed.fingerprint == desired_fingerprint
    )
    ready = running_desired and not stalled
    reconciling = (
        not stalled
        and not ready
        and (status.upgrade is not None or status.phase in ("Pending", "Deploying", "Upgrading", "RollingBack"))
    )
    if ready:
        ready_reason = "Running"
    elif stalled and failure is not None:
        ready_reason = failure.reason
    elif status.upgrade is not None:
        ready_reason = status.upgrade.step
    else:
        ready_reason = status.phase
    message = status.message
    step = f"{status.upgrade.kind}: {status.upgrade.step}" if status.upgrade else status.phase
    return (
        _condition("Ready", ready, ready_reason, message, generation, now, status),
        _condition(
            "Reconciling",
            reconciling,
            (status.upgrade.kind.capitalize() if status.upgrade else status.phase) if reconciling else "Idle",
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
