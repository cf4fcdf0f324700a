"""Which uploaded jar each FlinkJob runs from, per cluster, so that a jar shared by several FlinkJobs
(the same digest uploaded once to one cluster) is deleted only when the last of them moves off it.

Built from each pass's status (`status.jarId`) and kept in memory: after a restart it fills as each
FlinkJob's first pass runs, so until then a shared jar may still be deleted; the FlinkJob that needs
it again uploads it again (the planner checks the cluster's jars before every submission).
"""

from __future__ import annotations

import threading


class JarUsers:
    def __init__(self) -> None:
        self._by_uid: dict[str, tuple[str, str]] = {}  # uid -> (cluster identity, jar id)
        self._lock = threading.Lock()

    def record(self, uid: str, cluster: str, jar_id: str | None) -> None:
        with self._lock:
            if jar_id:
                self._by_uid[uid] = (cluster, jar_id)
            else:
                self._by_uid.pop(uid, None)

    def used_elsewhere(self, uid: str, cluster: str) -> frozenset[str]:
        """The jars on `cluster` that FlinkJobs other than `uid` run from."""
        with self._lock:
            return frozenset(jar for other, (c, jar) in self._by_uid.items() if other != uid and c == cluster)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)
