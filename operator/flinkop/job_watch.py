"""One observer per Flink cluster: reads its job list and wakes the FlinkJobs whose job changed.

A FlinkJob at rest (no step in flight, nothing due) has no pass of its own: its last pass left here
what it saw of its job (state, and whether every task ran). Every `interval` seconds the cluster's
`GET /jobs/overview` (answered live, one call for all its jobs) is read once, shared with the passes
through `JobsOverviews`, and each FlinkJob whose job now looks different is woken. A cluster that
cannot be read wakes its FlinkJobs once, so their status says so; they then come back on their own.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flinkop.flink_client import FlinkClient, FlinkError, JobInfo
from flinkop.observation import JobView

log = logging.getLogger("flinkop")

# (job state or MISSING, every task running, Flink's start-time of the job): a JobManager that restarted
# and ran the job again between two looks shows only in the start-time.
Signature = tuple[str, bool, int]
MISSING: Signature = ("MISSING", False, 0)


def signature_of(info: JobInfo | None) -> Signature:
    return MISSING if info is None else (info.state, info.all_vertices_running, info.start_time_ms)


def seen(view: JobView | None) -> Signature:
    """What a pass saw of its job, comparable with a job list's entry."""
    return signature_of(view.info if view is not None else None)


@dataclass
class _Tracked:
    cluster: str
    job_id: str
    signature: Signature


@dataclass
class _Cluster:
    client: FlinkClient
    reachable: bool = True
    reading: bool = False


ReadFn = Callable[[FlinkClient], dict[str, JobInfo]]


class JobWatch:
    """Tracks FlinkJobs at rest by cluster and wakes them (`wake(uid)`) when their job changes."""

    def __init__(
        self,
        read: ReadFn,
        wake: Callable[[str], None],
        interval: float = 10.0,
        readers: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._wake = wake
        self.interval = interval
        self._clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._members: dict[str, set[str]] = {}  # cluster identity -> uids
        self._clusters: dict[str, _Cluster] = {}
        self._heap: list[tuple[float, int, str, _Cluster]] = []  # one entry per watched cluster
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="flinkop-jobwatch")
        self._paused = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="flinkop-jobwatch", daemon=True)
        self._thread.start()

    def track(self, uid: str, client: FlinkClient, job_id: str, signature: Signature) -> None:
        """`uid` is at rest with `job_id` on `client`'s cluster, last seen as `signature`."""
        key = client.identity
        with self._cond:
            old = self._tracked.get(uid)
            if old is not None and old.cluster != key:
                self._leave(uid, old.cluster)
            self._tracked[uid] = _Tracked(key, job_id, signature)
            self._members.setdefault(key, set()).add(uid)
            if key not in self._clusters:
                cluster = self._clusters[key] = _Cluster(client)
                heapq.heappush(self._heap, (self._clock() + self.interval, next(self._seq), key, cluster))
                self._cond.notify()

    def untrack(self, uid: str) -> None:
        with self._cond:
            old = self._tracked.pop(uid, None)
            if old is not None:
                self._leave(uid, old.cluster)

    def pause(self, paused: bool) -> None:
        with self._cond:
            self._paused = paused

    @property
    def clusters(self) -> int:
        with self._cond:
            return len(self._clusters)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _leave(self, uid: str, cluster: str) -> None:
        members = self._members.get(cluster)
        if members is not None:
            members.discard(uid)
            if not members:
                del self._members[cluster]
                self._clusters.pop(cluster, None)  # its heap entry is dropped when it comes up

    def _loop(self) -> None:
        while True:
            picked: tuple[str, _Cluster] | None = None
            with self._cond:
                while not self._stopped:
                    now = self._clock()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, key, cluster = heapq.heappop(self._heap)
                        if self._clusters.get(key) is not cluster:
                            # No FlinkJob of it is at rest any more (or it left and came back, with
                            # an entry of its own): this entry ends here, so each cluster has one.
                            continue
                        heapq.heappush(self._heap, (now + self.interval, next(self._seq), key, cluster))
                        if cluster.reading or self._paused:
                            continue
                        cluster.reading = True
                        picked = (key, cluster)
                        break
                    self._cond.wait(max(0.0, self._heap[0][0] - now) if self._heap else None)
                if self._stopped or picked is None:
                    return
            self._pool.submit(self._look, *picked)

    def _look(self, key: str, cluster: _Cluster) -> None:
        try:
            jobs: dict[str, JobInfo] | None = self._read(cluster.client)
        except FlinkError as exc:
            jobs = None
            if cluster.reachable:
                log.warning("cannot read the job list of %s: %s", key.split("#")[0], exc)
        except Exception:  # a bug must not end the watch of every other cluster
            log.exception("reading the job list of %s failed", key.split("#")[0])
            jobs = None
        woken: list[str] = []
        with self._cond:
            cluster.reading = False
            was_reachable, cluster.reachable = cluster.reachable, jobs is not None
            for uid in list(self._members.get(key, ())):
                tracked = self._tracked[uid]
                if jobs is None:
                    if was_reachable:
                        woken.append(uid)  # its status says Flink is unreachable; it retries on its own
                elif signature_of(jobs.get(tracked.job_id)) != tracked.signature:
                    woken.append(uid)
        if woken and jobs is not None:
            log.info("%s: the jobs of %d FlinkJob(s) changed; looking at them", key.split("#")[0], len(woken))
        for uid in woken:
            self._wake(uid)
