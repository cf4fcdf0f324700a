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
        self._users: dict[str, dict[str, int]] = {}  # cluster identity -> jar id -> how many run from it
        self._lock = threading.Lock()

    def record(self, uid: str, cluster: str, jar_id: str | None) -> None:
        with self._lock:
            self._drop(uid)
            if jar_id:
                self._by_uid[uid] = (cluster, jar_id)
                jars = self._users.setdefault(cluster, {})
                jars[jar_id] = jars.get(jar_id, 0) + 1

    def used_elsewhere(self, uid: str, cluster: str) -> frozenset[str]:
        """The jars on `cluster` that FlinkJobs other than `uid` run from."""
        with self._lock:
            own = self._by_uid.get(uid)
            jars = self._users.get(cluster, {})
            return frozenset(j for j, n in jars.items() if n > (1 if own == (cluster, j) else 0))

    def forget(self, uid: str) -> None:
        with self._lock:
            self._drop(uid)

    def _drop(self, uid: str) -> None:
        old = self._by_uid.pop(uid, None)
        if old is not None:
            jars = self._users[old[0]]
            jars[old[1]] -= 1
            if not jars[old[1]]:
                del jars[old[1]]
                if not jars:
                    del self._users[old[0]]
