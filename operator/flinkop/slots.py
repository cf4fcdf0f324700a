"""Upgrade slots: at most FLINKOP_MAX_CONCURRENT_UPGRADES upgrades and rescales in flight at once.

A pass reserves a slot before planning (the planner only learns whether one is free) and settles
it after: kept while the resource's status records an upgrade, rescale or rollback, released
otherwise, and released as soon as the new job runs every vertex and only the stability gate is
left (which can take until a checkpoint completes). A start that then fails the gate goes on
with its rollback without waiting for a slot. A resource that already holds a slot always gets it
again, so an upgrade in flight is never held up. The count lives in memory: after a restart it is
rebuilt as each resource's first pass runs, so until then a few more upgrades than the limit may
start.
"""

from __future__ import annotations

import threading

from flinkop import status as st
from flinkop.status import Status

_SLOT_KINDS = frozenset({st.UPGRADE, st.RESCALE, st.ROLLBACK})


def holds_slot(status: Status) -> bool:
    return status.upgrade is not None and status.upgrade.kind in _SLOT_KINDS


class UpgradeSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0 or less: no limit
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def reserve(self, uid: str) -> bool:
        """Whether `uid` may start (or go on with) an upgrade; when True the slot is held until settled."""
        with self._lock:
            if uid in self._held or self.limit <= 0 or len(self._held) < self.limit:
                self._held.add(uid)
                return True
            return False

    def settle(self, uid: str, status: Status, gate_only: bool = False) -> None:
        """`gate_only`: the upgrade's new job runs every vertex and only waits for the stability
        gate; its disruptive part is over, so its slot goes to the next one."""
        with self._lock:
            if holds_slot(status) and not gate_only:
                self._held.add(uid)
            else:
                self._held.discard(uid)

    def release(self, uid: str) -> None:
        """The resource is gone."""
        with self._lock:
            self._held.discard(uid)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._held)
