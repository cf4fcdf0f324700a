"""When each FlinkJob's next pass runs: one scheduler thread, a pool of pass workers.

Every reason to look at a FlinkJob is a wake-up: a watch event (its spec changed), its cluster's
job list showing its job changed (job_watch), or work due at a time (the planner's `requeue_after`:
a savepoint poll, a retry's backoff, a periodic savepoint, a stability deadline). A wake-up is
kept in memory only; no Kubernetes write or watch event is needed to come back to a resource.

Passes for one FlinkJob never overlap: a wake-up that comes while its pass runs is kept and runs
right after it (so a change made during a pass is never missed). Work is never waited for by
blocking a thread: a pass returns when it would wait, and says when to come back.
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

log = logging.getLogger("flinkop")

PassFn = Callable[[str], "float | None"]  # runs one FlinkJob's pass; returns when to come back (seconds) or None


@dataclass
class _Entry:
    due: float | None = None  # monotonic time of the next pass; None: none planned
    running: bool = False


class PassScheduler:
    """Runs `run(uid)` when a FlinkJob is woken, at most one at a time per FlinkJob, on `workers`
    threads. `run` returns the delay until the FlinkJob's next pass (None: until something wakes it)."""

    def __init__(self, run: PassFn, workers: int = 16, clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flinkop-pass")
        self._paused = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="flinkop-scheduler", daemon=True)
        self._thread.start()

    def wake(self, uid: str, delay: float = 0.0) -> None:
        """A pass for `uid` within `delay` seconds (an earlier wake-up already planned stands)."""
        at = self._clock() + max(0.0, delay)
        with self._cond:
            entry = self._entries.setdefault(uid, _Entry())
            if entry.due is not None and entry.due <= at:
                return
            entry.due = at
            heapq.heappush(self._heap, (at, next(self._seq), uid))
            self._cond.notify()

    def forget(self, uid: str) -> None:
        """The FlinkJob is gone: nothing more is run for it (a pass running now finishes)."""
        with self._cond:
            self._entries.pop(uid, None)

    def pause(self, paused: bool) -> None:
        """While paused (another operator replica is active), no pass starts; wake-ups wait."""
        with self._cond:
            self._paused = paused
            self._cond.notify()

    def due(self, uid: str) -> float | None:
        """Seconds until `uid`'s next planned pass (None: none planned), for tests and metrics."""
        with self._cond:
            entry = self._entries.get(uid)
            return None if entry is None or entry.due is None else max(0.0, entry.due - self._clock())

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while True:
            ready: str | None = None
            with self._cond:
                while not self._stopped:
                    now = self._clock()
                    ready = self._pop_ready(now) if not self._paused else None
                    if ready is not None:
                        break
                    timeout = None if self._paused or not self._heap else max(0.0, self._heap[0][0] - now)
                    self._cond.wait(timeout)
                if self._stopped or ready is None:
                    return
            self._pool.submit(self._run_one, ready)

    def _pop_ready(self, now: float) -> str | None:
        """The next FlinkJob whose pass is due and not running (marked running), or None."""
        while self._heap and self._heap[0][0] <= now:
            at, _, uid = heapq.heappop(self._heap)
            entry = self._entries.get(uid)
            if entry is None or entry.due is None or entry.due != at:
                continue  # forgotten, or replaced by an earlier wake-up
            if entry.running:
                continue  # runs again when its pass ends (its due time stays set)
            entry.due = None
            entry.running = True
            return uid
        return None

    def _run_one(self, uid: str) -> None:
        delay: float | None = None
        try:
            delay = self._run(uid)
        except Exception:  # the pass logs its own failures; a bug here must not stop the others
            log.exception("pass for FlinkJob %s failed", uid)
            delay = 5.0
        with self._cond:
            entry = self._entries.get(uid)
            if entry is None:
                return
            entry.running = False
            if entry.due is not None:
                # Woken while its pass ran: due again now (or when planned), whatever the pass said.
                at = entry.due
                heapq.heappush(self._heap, (at, next(self._seq), uid))
                self._cond.notify()
        if delay is not None:
            self.wake(uid, delay)
