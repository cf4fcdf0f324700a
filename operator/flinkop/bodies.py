"""The latest known version of each FlinkJob, as much of it as a pass reads.

Kept from the watch's events and from the operator's own writes (a patch answers with the object),
so a pass woken by a timer or by its job's cluster plans from the newest version without a read.
Only what a pass uses is kept (not managedFields, annotations nor labels), as compact JSON: a
FlinkJob's spec and status are a few KB that way, against several times that as Python objects,
and with many FlinkJobs they are most of what the operator holds per FlinkJob. A pass decodes it.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from typing import Any

from flinkop import ANNOTATION_PREFIX

_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp", "finalizers")


def compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a FlinkJob a pass reads, as plain data of its own (a copy)."""
    meta = body.get("metadata") or {}
    kept: dict[str, Any] = {"metadata": {k: copy.deepcopy(meta[k]) for k in _METADATA if meta.get(k) is not None}}
    ours = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(f"{ANNOTATION_PREFIX}/")}
    if ours:
        kept["metadata"]["annotations"] = ours  # what kopf wrote for earlier versions, to remove
    kept["spec"] = copy.deepcopy(dict(body.get("spec") or {}))
    if body.get("status"):
        kept["status"] = copy.deepcopy(dict(body["status"]))
    return kept


def _version(body: Mapping[str, Any]) -> int | None:
    rv = str((body.get("metadata") or {}).get("resourceVersion", ""))
    return int(rv) if rv.isdigit() else None


class Bodies:
    """uid -> the newest compact body seen (by resourceVersion, which only grows on kube-apiserver)."""

    def __init__(self) -> None:
        self._bodies: dict[str, tuple[int | None, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, body: Mapping[str, Any]) -> bool:
        """Keeps `body` unless a newer version is kept already; whether it was kept."""
        uid = str(body["metadata"]["uid"])
        new = compact(body)
        version = _version(new)
        encoded = json.dumps(new, separators=(",", ":")).encode()
        with self._lock:
            old = self._bodies.get(uid)
            if old is not None and old[0] is not None and version is not None and version < old[0]:
                return False
            self._bodies[uid] = (version, encoded)
            return True

    def get(self, uid: str) -> dict[str, Any] | None:
        """A copy of its own of the kept body (None: not known)."""
        with self._lock:
            kept = self._bodies.get(uid)
        if kept is None:
            return None
        body: dict[str, Any] = json.loads(kept[1])
        return body

    def uids(self) -> list[str]:
        with self._lock:
            return list(self._bodies)

    def drop(self, uid: str) -> None:
        with self._lock:
            self._bodies.pop(uid, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._bodies)
